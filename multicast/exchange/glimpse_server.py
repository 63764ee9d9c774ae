"""The venue's GLIMPSE 5.0 server: at each login, a snapshot of the venue's state at that moment, over
SoupBinTCP 3.00, while publishing goes on (docs/snapshot.md).

A connection logs in for sequence 1 (GLIMPSE is served from the start of the snapshot; 0 is taken as 1);
the server takes the venue's published sequence at that moment, builds the snapshot of messages
1..published - 1 (multicast.exchange.glimpse), answers Login Accepted for sequence 1 and sends the
snapshot as Sequenced Data, End of Snapshot last; then Server Heartbeats until the client logs out or
goes silent. `GlimpseFault` makes it misbehave on purpose for the tests: reject every login, cut the
connection in the middle of a snapshot, or serve the snapshot of a fixed (old) sequence.
"""

import socket
import time
from dataclasses import dataclass

from xdpfeed.multicast.exchange.glimpse import SnapshotBuilder, to_soup
from xdpfeed.multicast.exchange.replay_server import CHUNK_BYTES, IDLE_POLL
from xdpfeed.multicast.exchange.soup_server import Closed, SoupConnection, SoupServer
from xdpfeed.multicast.wire import soupbintcp as sb


@dataclass(frozen=True)
class GlimpseFault:
    reject_login: bool = False  # answer every login with 'J' 'A'
    close_after: int | None = None  # close the connection abruptly after this many snapshot messages
    at_seq: int | None = None  # always serve the snapshot of messages 1..at_seq (an old one)


class GlimpseServer(SoupServer):
    """GLIMPSE of `store` for the `users` (name → password); published() is the next sequence not yet
    published (default: the whole store)."""

    thread_name = "glimpse"

    def __init__(self, store, users: dict[str, str], published=None, host: str = "127.0.0.1", port: int = 0,
                 heartbeat_interval: float = 1.0, client_timeout: float = 15.0, fault: GlimpseFault | None = None,
                 builder: SnapshotBuilder | None = None):
        super().__init__(users, host, port, heartbeat_interval, client_timeout,
                         extra_keys=("snapshots", "snapshot_messages"))
        self.store = store
        self.published = published or (lambda: store.next_seq)
        self.fault = fault or GlimpseFault()
        self.builder = builder or SnapshotBuilder(store)
        _warm()

    def connection(self, sock: socket.socket) -> "_Connection":
        return _Connection(self, sock)


class _Connection(SoupConnection):
    def serve(self) -> None:
        server, fault = self.server, self.server.fault
        if self.login(sb.normalize_session(server.store.session), reject=fault.reject_login) is None:
            return
        upto = fault.at_seq if fault.at_seq is not None else int(server.published()) - 1
        records, messages = server.builder.records(upto)
        soup = to_soup(records)
        self.send(sb.encode_login_accepted(server.store.session, 1))
        server.count("snapshots")
        self._send_snapshot(soup, messages, fault.close_after)
        while True:  # the client logs out once it has End of Snapshot
            if self.heartbeat_due():
                self.send_heartbeat()
            self.wait(min(IDLE_POLL * 20, self.server.heartbeat_interval - (time.monotonic() - self.last_send)))

    def _send_snapshot(self, soup, messages: int, close_after: int | None) -> None:
        if close_after is not None:  # the first close_after packets, then an abrupt close
            p = k = 0
            while k < close_after and p < soup.size:
                p += 2 + (int(soup[p]) << 8 | int(soup[p + 1]))
                k += 1
            self.send(soup[:p])
            self.server.count("snapshot_messages", k)
            self.sock.shutdown(socket.SHUT_RDWR)
            raise Closed("fault: close_after")
        for p in range(0, soup.size, CHUNK_BYTES):
            self.send(soup[p : p + CHUNK_BYTES])
        self.server.count("snapshot_messages", messages)


def _warm() -> None:
    """Compile (or load) the snapshot builder's code now, not at the first login."""
    from xdpfeed.multicast.exchange import synthetic
    from xdpfeed.multicast.exchange.store import DayStore

    records, _ = synthetic.generate(2000, 5, seed=1)
    to_soup(SnapshotBuilder(DayStore(records)).records(1500)[0])
