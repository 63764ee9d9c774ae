"""The venue's SoupBinTCP 3.00 replay server: serves a DayStore's messages over TCP for gap recovery.

Owns the listening socket and one thread per connection. A connection logs in ('L' → 'A' or 'J'),
then receives Sequenced Data as large slices of `store.soup` (one send per ≤ 1 MiB, no per-message
work) up to what the venue has published, Server Heartbeats while idle, and End of Session once the
venue has ended the session and everything was sent. Client Heartbeats and Logout are read between
sends; a client silent for `client_timeout` is dropped. `ReplayFault` makes a server misbehave on
purpose (reject every login, cut or stall a stream, announce another session) for the tests.
"""

import select
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np

from xdpfeed.multicast import soupbintcp as sb

CHUNK_BYTES = 1 << 20  # most bytes handed to one send()
IDLE_POLL = 0.005  # seconds between looks at published() / ended() while a connection is idle
WAIT_SLICE = 0.05  # longest single wait, so stop() is noticed quickly
STAT_KEYS = ("connections", "logins", "rejected", "messages_sent", "heartbeats_received", "logouts",
             "heartbeats_sent")


@dataclass(frozen=True)
class ReplayFault:
    """Deliberate misbehaviour. close_after / stall_after count messages within one connection."""

    reject_login: bool = False  # answer every login with 'J' 'A'
    close_after: int | None = None  # close the connection abruptly after this many messages
    stall_after: int | None = None  # after this many messages send nothing at all; keep the socket open
    session: bytes | None = None  # name this session in Login Accepted


class _Closed(Exception):
    """The connection is over (logout, client close, timeout, stop, protocol error)."""


class ReplayServer:
    """SoupBinTCP replay of `store` for the `users` (name → password). published() is the next sequence
    not yet published (default store.next_seq); ended() is True once the venue ended the session."""

    def __init__(self, store, users: dict[str, str], published=None, ended=None, host: str = "127.0.0.1",
                 port: int = 0, heartbeat_interval: float = 1.0, client_timeout: float = 15.0,
                 fault: ReplayFault | None = None):
        self.store = store
        self.users = dict(users)
        self.published = published or (lambda: store.next_seq)
        self.ended = ended or (lambda: True)
        self.heartbeat_interval = heartbeat_interval
        self.client_timeout = client_timeout
        self.fault = fault or ReplayFault()
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        self._bind = (host, port)
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._threads: list[threading.Thread] = []  # connections (only the acceptor changes the list)
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError("replay server is not started")
        return self._listener.getsockname()[:2]

    def start(self) -> "ReplayServer":
        self._listener = socket.create_server(self._bind)
        self._listener.settimeout(WAIT_SLICE)
        self._acceptor = threading.Thread(target=self._accept_loop, name="replay-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join()  # first: once it has seen the flag it starts no more connections
            self._acceptor = None
        for t in self._threads:
            t.join()
        self._threads.clear()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> "ReplayServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.count("connections")
            conn = _Connection(self, sock)
            t = threading.Thread(target=conn.run, name=f"replay-conn-{self.stats['connections']}", daemon=True)
            self._threads[:] = [x for x in self._threads if x.is_alive()] + [t]
            t.start()


class _Connection:
    """One client: login, then the stream loop."""

    def __init__(self, server: ReplayServer, sock: socket.socket):
        self.server = server
        self.store = server.store
        self.fault = server.fault
        self.sock = sock
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.inbuf = bytearray()
        self.last_recv = self.last_send = time.monotonic()
        self.sent = 0  # messages sent on this connection

    def run(self) -> None:
        try:
            start = self._login()
            if start is not None:
                self._stream(start)
        except (_Closed, ConnectionError):
            pass  # the normal ends of a connection
        finally:
            self.sock.close()

    # ------------------------------------------------------------------------------------- input
    def _packets(self):
        """Complete packets received so far, as (type byte, payload); raises _Closed on a zero length."""
        pos = 0
        try:
            while (pkt := sb.next_packet(self.inbuf, pos, len(self.inbuf))) is not None:
                ptype, start, length, pos = pkt
                yield ptype, bytes(self.inbuf[start : start + length])
        except ValueError as e:
            raise _Closed(str(e)) from None
        finally:
            del self.inbuf[:pos]

    def _receive(self) -> str | None:
        """Take what the client sent without blocking; returns why the connection is over, or None.
        Bytes that came before a close or reset are kept, so a Logout just before it is still seen."""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            except ConnectionError:
                return "connection reset"
            if not data:
                return "client closed the connection"
            self.inbuf += data
            self.last_recv = time.monotonic()
        if time.monotonic() - self.last_recv > self.server.client_timeout:
            return "client silent"
        if self.server._stopping.is_set():
            return "server stopping"
        return None

    def _take_input(self) -> None:
        """Read and handle client packets; raises _Closed when the connection is over."""
        over = self._receive()
        self._handle_client_packets()
        if over:
            raise _Closed(over)

    def _handle_client_packets(self) -> None:
        for ptype, _ in self._packets():
            if ptype == ord(sb.CLIENT_HEARTBEAT):
                self.server.count("heartbeats_received")
            elif ptype == ord(sb.LOGOUT_REQUEST):
                self.server.count("logouts")
                raise _Closed("logout")
            elif ptype not in (ord(sb.DEBUG), ord(sb.UNSEQUENCED)):
                raise _Closed(f"unexpected packet type {chr(ptype)!r} after login")

    def _wait(self, timeout: float, writing: bool = False) -> None:
        """Wait until the socket is readable (or writable) or `timeout` passes; handle client input."""
        self.poller.modify(self.sock, select.POLLIN | (select.POLLOUT if writing else 0))
        self.poller.poll(max(0.0, min(timeout, WAIT_SLICE)) * 1000)
        self._take_input()

    # ------------------------------------------------------------------------------------ output
    def _send(self, data) -> None:
        view = memoryview(data)
        while view.nbytes:
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                self._wait(WAIT_SLICE, writing=True)
                continue
            view = view[n:]
        self.last_send = time.monotonic()

    # ------------------------------------------------------------------------------------- login
    def _login(self) -> int | None:
        """Read and answer the Login Request; returns the first sequence to serve, None if rejected."""
        while True:
            self.poller.poll(WAIT_SLICE * 1000)
            over = self._receive()
            for ptype, payload in self._packets():
                if ptype != ord(sb.LOGIN_REQUEST):
                    raise _Closed(f"packet type {chr(ptype)!r} before login")
                return self._answer_login(payload)
            if over:
                raise _Closed(over)

    def _answer_login(self, payload: bytes) -> int | None:
        try:
            user, password, session, seq = sb.parse_login_request(payload)
        except ValueError as e:
            raise _Closed(str(e)) from None
        code = None
        if self.fault.reject_login or self.server.users.get(user) != password:
            code = b"A"
        elif session != sb.BLANK_SESSION and session != sb.normalize_session(self.store.session):
            code = b"S"
        if code is not None:
            self.server.count("rejected")
            self._send(sb.encode_login_rejected(code))
            return None
        self.server.count("logins")
        start = seq if seq >= 1 else int(self.server.published())
        self._send(sb.encode_login_accepted(self.fault.session or self.store.session, start))
        return start

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
        sent_end = False
        while True:
            self._take_input()
            if self.fault.close_after is not None and self.sent >= self.fault.close_after:
                self.sock.shutdown(socket.SHUT_RDWR)
                raise _Closed("fault: close_after")
            if self.fault.stall_after is not None and self.sent >= self.fault.stall_after:
                self._wait(WAIT_SLICE)
                continue
            ended = self.server.ended()  # read before published(): the venue publishes, then ends
            top = min(int(self.server.published()), self.store.next_seq)
            if nxt < top:
                end = self._chunk_end(nxt, top)
                self._send(self.store.soup_bytes(nxt, end))
                self.sent += end - nxt
                self.server.count("messages_sent", end - nxt)
                nxt = end
                continue
            if not sent_end and ended:
                self._send(sb.END_OF_SESSION_PACKET)
                sent_end = True
            elif not sent_end and time.monotonic() - self.last_send >= hb:
                self._send(sb.SERVER_HEARTBEAT_PACKET)
                self.server.count("heartbeats_sent")
            wait = WAIT_SLICE if sent_end else min(IDLE_POLL, hb - (time.monotonic() - self.last_send))
            self._wait(wait)
