"""Non-blocking GLIMPSE 5.0 client: one SoupBinTCP session that downloads a snapshot, driven by the
caller's event loop (docs/snapshot.md).

Logs in for sequence 1 (the replay client's machinery: multicast.feed.replay_client), gathers the
snapshot's messages as [uint16 length][message] records in a buffer that grows as needed, and when End of
Snapshot arrives takes its ITCH sequence number and logs out: state "done", `records` (without the 'G'),
`messages` and `itch_seq` set. A connection that breaks, a login that is rejected, a server that goes
silent or sends End of Session before End of Snapshot end in "failed" with a one-line `reason`; whatever
arrived is then worth nothing (a partial snapshot is never used).
"""

import numpy as np

from xdpfeed.multicast.feed.replay_client import ReplayClient
from xdpfeed.multicast.wire.glimpse import END_OF_SNAPSHOT, count_records, find_type, parse_end_of_snapshot


class GlimpseClient(ReplayClient):
    ACTIVE = "snapshot"

    def __init__(self, address: tuple[str, int], user: str, password: str, session: bytes, clock,
                 heartbeat_interval: float = 1.0, server_timeout: float = 15.0, connect_timeout: float = 2.0):
        self.records = np.empty(1 << 20, dtype=np.uint8)
        self.nbytes = 0
        self.itch_seq: int | None = None
        super().__init__(address, user, password, session, 1, None, clock, self._blocks,
                         heartbeat_interval=heartbeat_interval, server_timeout=server_timeout,
                         connect_timeout=connect_timeout)

    def _blocks(self, buf, offset: int, count: int, first_seq: int) -> None:
        if self.itch_seq is not None:
            return  # nothing belongs to the snapshot after its end
        chunk = buf[offset:]
        g = int(find_type(chunk, 0, chunk.size, END_OF_SNAPSHOT))
        take = chunk if g < 0 else chunk[:g]
        if self.nbytes + take.size > self.records.size:
            grown = np.empty(max(2 * self.records.size, self.nbytes + take.size), dtype=np.uint8)
            grown[: self.nbytes] = self.records[: self.nbytes]
            self.records = grown
        self.records[self.nbytes : self.nbytes + take.size] = take
        self.nbytes += take.size
        if g >= 0:
            n = int(chunk[g]) << 8 | int(chunk[g + 1])
            try:
                self.itch_seq = parse_end_of_snapshot(chunk[g + 2 : g + 2 + n].tobytes())
            except ValueError as e:
                self._end("failed", f"protocol error: {e}")
                return
            self.want(first_seq + count)  # got everything: log out ("caught up")

    def _control(self, ptype: int, payload: bytes) -> None:
        super()._control(ptype, payload)
        if self.state == "done" and self.reason == "end of session" and self.itch_seq is None:
            self.state, self.reason = "failed", "end of session before End of Snapshot"

    @property
    def snapshot_messages(self) -> int:
        return int(count_records(self.snapshot))

    @property
    def snapshot(self) -> np.ndarray:
        return self.records[: self.nbytes]

    @property
    def complete(self) -> bool:
        return self.state == "done" and self.itch_seq is not None

