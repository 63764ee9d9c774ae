"""Non-blocking SoupBinTCP 3.00 replay client for gap recovery, driven by the caller's event loop.

Owns the replay side of a `SoupBinClient` session: log in for a first sequence, then turn the
Sequenced Data stream into MoldUDP64 blocks (one compiled `sequenced_to_blocks` call per receive) and
hand them to `on_blocks`, until the wanted end is reached ("caught up": Logout, close), End of Session,
or a failure. `next_seq` says where a new client must resume (no loss, no duplicate).
"""

import numpy as np

from xdpfeed.multicast.wire import soupbintcp as sb
from xdpfeed.multicast.wire.soupbin_client import READ_ROUNDS, S, SoupBinClient

MIN_BUFFER = 1 << 17  # a whole maximal packet (2 + 65535 bytes) must fit after a partial one is moved up


class ReplayClient(SoupBinClient):
    """Replays sequences [first_seq, end_seq) of a session (end_seq None: until End of Session).

    on_blocks(buf, offset, count, first_seq): buf[offset:] is exactly `count` MoldUDP64 blocks, the
    first with sequence first_seq; the array is reused after the call returns. Blocks that arrive in
    the same receive as the end are delivered too (they may go past end_seq)."""

    ACTIVE = "streaming"

    def __init__(self, address: tuple[str, int], user: str, password: str, session: bytes, first_seq: int,
                 end_seq: int | None, clock, on_blocks, heartbeat_interval: float = 1.0,
                 server_timeout: float = 15.0, connect_timeout: float = 2.0, buffer_bytes: int = 4 << 20):
        if buffer_bytes < MIN_BUFFER:
            raise ValueError(f"buffer_bytes must be at least {MIN_BUFFER}, not {buffer_bytes}")
        super().__init__(address, user, password, session, first_seq, clock, heartbeat_interval, server_timeout,
                         connect_timeout)
        self._on_blocks = on_blocks
        self.first_seq = first_seq
        self.end_seq = end_seq
        self.messages = 0
        self._buf = np.empty(buffer_bytes, dtype=np.uint8)
        self._view = memoryview(self._buf)
        self._out = np.empty(buffer_bytes, dtype=np.uint8)  # blocks are 1 byte shorter than packets
        self._have = 0  # bytes of a partial packet at the front of _buf
        self._connect()

    def want(self, end_seq: int | None) -> None:
        """Change the wanted end (exclusive); None = until End of Session."""
        self.end_seq = end_seq
        self._check_caught_up()

    def close(self) -> None:
        """Log out (best effort) and close; a live client ends as failed "closed"."""
        if self.live:
            self._end("failed", "closed", logout=self.state == self.ACTIVE)

    def _connected(self) -> None:
        super()._connected()
        self._check_caught_up()

    def _check_caught_up(self) -> None:
        if self.end_seq is None or not self.live or self.next_seq < self.end_seq:
            return
        if self.state == self.ACTIVE or self.first_seq > 0:
            self._end("done", "caught up", logout=self.state == self.ACTIVE)

    # ---------------------------------------------------------------------------------- reading
    def _read(self) -> None:
        for _ in range(READ_ROUNDS):
            try:
                k = self._sock.recv_into(self._view[self._have:])
            except BlockingIOError:
                return
            except OSError as e:
                self._recv_failed(e)
                return
            if k == 0:
                self._end("failed", "disconnected")
                return
            self._last_recv = self._clock()
            end = self._have + k
            pos = self._process(end)
            if not self.live:
                return
            rest = end - pos
            if rest and pos:
                self._buf[:rest] = self._buf[pos:end]
            self._have = rest
            self._check_caught_up()
            if not self.live:
                return

    def _process(self, end: int) -> int:
        """Handle the complete packets in _buf[:end]; returns where the unfinished one starts."""
        pos = 0
        while self.state in ("login", self.ACTIVE):
            if self.state == self.ACTIVE:
                pos = self._deliver(pos, end)
            try:
                pkt = sb.next_packet(self._buf, pos, end)
            except ValueError as e:
                self._end("failed", f"protocol error: {e}")
                break
            if pkt is None:
                break
            ptype, start, length, nxt = pkt
            if ptype == S and self.state == self.ACTIVE:
                continue  # the block buffer was full: deliver again
            self._control(ptype, bytes(self._buf[start : start + length]))
            pos = nxt
        return pos

    def _deliver(self, pos: int, end: int) -> int:
        first = self.next_seq
        pos, out_pos, n = sb.sequenced_to_blocks(self._buf, pos, end, self._out, 0)
        if n:
            self.next_seq += n
            self.messages += n
            self._on_blocks(self._out[:out_pos], 0, n, first)
        return pos
