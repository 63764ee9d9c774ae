"""The venue's SoupBinTCP 3.00 replay server: serves a DayStore's messages over TCP for gap recovery.

Owns the serving of a session (the socket work is `soup_server`'s). A connection logs in ('L' → 'A' or 'J'),
then receives Sequenced Data as large slices of `store.soup` (one send per ≤ 1 MiB, no per-message
work) up to what the venue has published, Server Heartbeats while idle, and End of Session once the
venue has ended the session and everything was sent, after which the connection ends (FIN, the client's
last packets read until it closes: soup_server.end_session). Client Heartbeats and Logout are read between
sends; a client silent for `client_timeout` is dropped. `ReplayFault` makes a server misbehave on
purpose (reject every login, cut or stall a stream, announce another session) for the tests.
"""

import socket
import time
from dataclasses import dataclass

import numpy as np

from xdpfeed.multicast.exchange.soup_server import WAIT_SLICE, Closed, SoupConnection, SoupServer
from xdpfeed.multicast.wire import soupbintcp as sb

CHUNK_BYTES = 1 << 20  # most bytes handed to one send()
IDLE_POLL = 0.005  # seconds between looks at published() / ended() while a connection is idle


@dataclass(frozen=True)
class ReplayFault:
    """Deliberate misbehaviour. close_after / stall_after count messages within one connection."""

    reject_login: bool = False  # answer every login with 'J' 'A'
    close_after: int | None = None  # close the connection abruptly after this many messages
    stall_after: int | None = None  # after this many messages send nothing at all; keep the socket open
    session: bytes | None = None  # name this session in Login Accepted


class ReplayServer(SoupServer):
    """SoupBinTCP replay of `store` for the `users` (name → password). published() is the next sequence
    not yet published (default store.next_seq); ended() is True once the venue ended the session."""

    thread_name = "replay"

    def __init__(self, store, users: dict[str, str], published=None, ended=None, host: str = "127.0.0.1",
                 port: int = 0, heartbeat_interval: float = 1.0, client_timeout: float = 15.0,
                 fault: ReplayFault | None = None):
        super().__init__(users, host, port, heartbeat_interval, client_timeout, extra_keys=("messages_sent",))
        self.store = store
        self.published = published or (lambda: store.next_seq)
        self.ended = ended or (lambda: True)
        self.fault = fault or ReplayFault()

    def connection(self, sock: socket.socket) -> "_Connection":
        return _Connection(self, sock)


class _Connection(SoupConnection):
    """One client: login, then the stream loop."""

    def __init__(self, server: ReplayServer, sock: socket.socket):
        super().__init__(server, sock)
        self.store = server.store
        self.fault = server.fault
        self.sent = 0  # messages sent on this connection

    def serve(self) -> None:
        login = self.login(sb.normalize_session(self.store.session), reject=self.fault.reject_login)
        if login is not None:
            seq = login[2]
            start = seq if seq >= 1 else int(self.server.published())
            self.send(sb.encode_login_accepted(self.fault.session or self.store.session, start))
            self._stream(start)

    # ------------------------------------------------------------------------------------ stream
    def _limit(self) -> int | None:
        """Messages this connection may still send under the fault, None = no limit."""
        caps = [c - self.sent for c in (self.fault.close_after, self.fault.stall_after) if c is not None]
        return max(0, min(caps)) if caps else None

    def _chunk_end(self, first: int, top: int) -> int:
        """End (exclusive) of the next slice from `first`: at most CHUNK_BYTES (at least one message)."""
        offs = self.store.soup_offsets
        end = int(np.searchsorted(offs, offs[first - 1] + CHUNK_BYTES, side="right"))
        limit = self._limit()
        if limit is not None:
            top = min(top, first + limit)
        return max(first + 1, min(end, top))

    def _stream(self, nxt: int) -> None:
        hb = self.server.heartbeat_interval
        while True:
            self.take_input()
            if self.fault.close_after is not None and self.sent >= self.fault.close_after:
                self.sock.shutdown(socket.SHUT_RDWR)
                raise Closed("fault: close_after")
            if self.fault.stall_after is not None and self.sent >= self.fault.stall_after:
                self.wait(WAIT_SLICE)
                continue
            ended = self.server.ended()  # read before published(): the venue publishes, then ends
            top = min(int(self.server.published()), self.store.next_seq)
            if nxt < top:
                end = self._chunk_end(nxt, top)
                self.send(self.store.soup_bytes(nxt, end))
                self.sent += end - nxt
                self.server.count("messages_sent", end - nxt)
                nxt = end
                continue
            if ended:
                self.end_session()  # 'Z', then the connection ends once the client has read it
            if self.heartbeat_due():
                self.send_heartbeat()
            self.wait(min(IDLE_POLL, hb - (time.monotonic() - self.last_send)))
