"""The server half of a SoupBinTCP 3.00 session, shared by the venue's replay server and OUCH gateway.

Owns the listening socket, the accept thread and one thread per connection (`SoupServer`), and per
connection (`SoupConnection`) the non-blocking socket, the receive buffer cut into packets, sends that
keep reading the client while its window is full, the Login Request with its answer ('A' after a check
of user, password and session, 'J' otherwise) and the ends of a connection: Logout, close or reset,
a client silent for `client_timeout`, the server stopping, or End of Session (FIN after the 'Z', then the
client's last bytes read until it closes). Subclasses serve the logged-in session.
"""

import select
import socket
import threading
import time

from xdpfeed.multicast.wire import soupbintcp as sb

WAIT_SLICE = 0.05  # longest single wait, so stop() is noticed quickly
READ_BYTES = 1 << 16
END_GRACE = 2.0  # seconds a client has, after End of Session, to read it and close
SERVER_KEYS = ("connections", "logins", "rejected_logins", "logouts", "heartbeats_received", "heartbeats_sent")
_L, _R, _O, _U, _DEBUG = (ord(t) for t in (sb.LOGIN_REQUEST, sb.CLIENT_HEARTBEAT, sb.LOGOUT_REQUEST,
                                           sb.UNSEQUENCED, sb.DEBUG))


class Closed(Exception):
    """The connection is over (logout, client close, timeout, stop, protocol error)."""


class SoupServer:
    """Listens on (host, port) for `users` (name → password); `connection(sock)` serves one client.
    `stats` counts SERVER_KEYS plus the subclass's `extra_keys`."""

    thread_name = "soup"

    def __init__(self, users: dict[str, str], host: str, port: int, heartbeat_interval: float, client_timeout: float,
                 extra_keys: tuple[str, ...] = ()):
        self.users = dict(users)
        self._names = {name.upper(): name for name in self.users}  # user names are case-insensitive
        self.heartbeat_interval = heartbeat_interval
        self.client_timeout = client_timeout
        self.stats = dict.fromkeys(SERVER_KEYS + extra_keys, 0)
        self.stopping = threading.Event()
        self._lock = threading.RLock()
        self._bind = (host, port)
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []  # acceptor first, then background, then connections

    def connection(self, sock: socket.socket) -> "SoupConnection":
        raise NotImplementedError

    def canonical_user(self, name: str) -> str | None:
        """The configured user a Login Request's name stands for, or None. User names are matched without
        regard to case (SoupBinTCP 3.00, Login Request Packet); the password must match exactly."""
        return self._names.get(name.upper())

    def background(self) -> dict:
        """Extra threads to run while started: name → target."""
        return {}

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError(f"{self.thread_name} server is not started")
        return self._listener.getsockname()[:2]

    def start(self):
        self._listener = socket.create_server(self._bind)
        self._listener.settimeout(WAIT_SLICE)
        for name, target in {f"{self.thread_name}-accept": self._accept_loop, **self.background()}.items():
            t = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._threads:
            self._threads[0].join()  # the acceptor first: once it has seen the flag it starts no more connections
        for t in list(self._threads):
            t.join()
        self._threads.clear()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.count("connections")
            t = threading.Thread(target=self.connection(sock).run, name=f"{self.thread_name}-conn", daemon=True)
            self._threads[:] = [x for x in self._threads if x.is_alive()] + [t]
            t.start()


class SoupConnection:
    """One client. `serve()` runs the session; `packet(type, payload)` handles what the client sends after
    login (Client Heartbeat and Logout are handled here; Unsequenced Data goes to `unsequenced`)."""

    def __init__(self, server: SoupServer, sock: socket.socket):
        self.server = server
        self.sock = sock
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.inbuf = bytearray()
        self.last_recv = self.last_send = time.monotonic()

    def run(self) -> None:
        try:
            self.serve()
        except (Closed, OSError):
            pass  # the normal ends of a connection
        finally:
            self.sock.close()

    def serve(self) -> None:
        raise NotImplementedError

    def unsequenced(self, payload: bytes) -> None:
        """Unsequenced Data after login: ignored unless the subclass uses it."""

    # ------------------------------------------------------------------------------------- input
    def _receive(self) -> str | None:
        """Take what the client sent without blocking; returns why the connection is over, or None.
        Bytes that came before a close or reset are kept, so a Logout just before it is still seen."""
        while True:
            try:
                data = self.sock.recv(READ_BYTES)
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
        if self.server.stopping.is_set():
            return "server stopping"
        return None

    def _packets(self):
        """Complete packets received so far, as (type byte, payload); raises Closed on a zero length."""
        pos = 0
        try:
            while (pkt := sb.next_packet(self.inbuf, pos, len(self.inbuf))) is not None:
                ptype, start, length, pos = pkt
                yield ptype, bytes(self.inbuf[start : start + length])
        except ValueError as e:
            raise Closed(str(e)) from None
        finally:
            del self.inbuf[:pos]

    def take_input(self) -> None:
        """Read and handle client packets; raises Closed when the connection is over."""
        over = self._receive()
        for ptype, payload in self._packets():
            if ptype == _R:
                self.server.count("heartbeats_received")
            elif ptype == _O:
                self.server.count("logouts")
                raise Closed("logout")
            elif ptype == _U:
                self.unsequenced(payload)
            elif ptype != _DEBUG:
                raise Closed(f"unexpected packet type {chr(ptype)!r} after login")
        if over:
            raise Closed(over)

    def wait(self, timeout: float, writing: bool = False) -> None:
        """Wait until the socket is readable (or writable) or `timeout` passes; handle client input."""
        self.poller.modify(self.sock, select.POLLIN | (select.POLLOUT if writing else 0))
        self.poller.poll(max(0.0, min(timeout, WAIT_SLICE)) * 1000)
        self.take_input()

    # ------------------------------------------------------------------------------------ output
    def send(self, data) -> None:
        """All of `data`, reading the client meanwhile (a Logout or a silent client ends the send)."""
        view = memoryview(data)
        while view.nbytes:
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                self.wait(WAIT_SLICE, writing=True)
                continue
            view = view[n:]
        self.last_send = time.monotonic()

    def end_session(self) -> None:
        """Send End of Session and end the connection as NASDAQ's servers do: FIN right after the 'Z', the
        client's last packets read (a Logout, heartbeats) until it closes or END_GRACE passes, so it is
        never reset before it has read the 'Z'. Raises Closed."""
        self.send(sb.END_OF_SESSION_PACKET)
        self.sock.shutdown(socket.SHUT_WR)
        end = time.monotonic() + END_GRACE
        while (left := end - time.monotonic()) > 0:
            self.wait(left)  # raises Closed once the client logs out or closes
        raise Closed("end of session: the client did not close")

    def heartbeat_due(self) -> bool:
        return time.monotonic() - self.last_send >= self.server.heartbeat_interval

    def send_heartbeat(self) -> None:
        self.send(sb.SERVER_HEARTBEAT_PACKET)
        self.server.count("heartbeats_sent")

    # ------------------------------------------------------------------------------------- login
    def login(self, session: bytes, reject: bool = False) -> tuple[str, bytes, int] | None:
        """Wait for the Login Request and check it against the users and `session` (10 bytes, the one
        this server serves). Returns (user, session asked for, sequence asked for) to accept, after which
        the caller sends Login Accepted; or None once Login Rejected was sent (all of them when `reject`)."""
        while True:
            self.poller.poll(WAIT_SLICE * 1000)
            over = self._receive()
            for ptype, payload in self._packets():
                if ptype != _L:
                    raise Closed(f"packet type {chr(ptype)!r} before login")
                return self._check_login(payload, session, reject)
            if over:
                raise Closed(over)

    def _check_login(self, payload: bytes, session: bytes, reject: bool):
        try:
            user, password, asked, seq = sb.parse_login_request(payload)
        except ValueError as e:
            raise Closed(str(e)) from None
        code = None
        user = self.server.canonical_user(user)
        if reject or user is None or self.server.users[user] != password:
            code = b"A"
        elif asked not in (sb.BLANK_SESSION, sb.normalize_session(session)):
            code = b"S"
        if code is not None:
            self.server.count("rejected_logins")
            self.send(sb.encode_login_rejected(code))
            return None
        self.server.count("logins")
        return user, asked, seq
