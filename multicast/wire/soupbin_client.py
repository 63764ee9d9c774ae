"""The client half of a SoupBinTCP 3.00 session, shared by the replay client and the OUCH client.

Owns one non-blocking TCP connection and the session around it: connect (with a timeout), Login
Request for a session and sequence number, Login Accepted / Rejected checks, Client Heartbeats after
`heartbeat_interval` without sending, the server-silence timeout, Server Heartbeats and Debug packets,
End of Session and Logout. No sleeping and no thread on the session's path: the caller selects on `fileno()` (write
interest while `wants_write`) and calls `poll()`; time comes from the injected `clock`. Network and
protocol problems never raise out of `poll()`: the session ends in state "failed" with a one-line
`reason`; a logout or End of Session ends it in "done".

A subclass says what its logged-in state is called (`ACTIVE`), reads the socket (`_read`, which calls
`_control` for each packet that is not Sequenced Data) and may react to the login (`_on_login`).
A session that ends well is closed gracefully (Logout, FIN, the server's last bytes read: graceful_close).
`next_seq` is the sequence number of the next Sequenced Data packet expected (docs/protocols.md §3.3).
"""

import errno
import os
import socket

from xdpfeed.multicast.wire import soupbintcp as sb
from xdpfeed.multicast.wire.graceful_close import close_gracefully

H, DEBUG, A, J, S, Z = (ord(t) for t in (sb.SERVER_HEARTBEAT, sb.DEBUG, sb.LOGIN_ACCEPTED, sb.LOGIN_REJECTED,
                                         sb.SEQUENCED, sb.END_OF_SESSION))
READ_ROUNDS = 4  # one poll() reads at most this many times, so other sockets get their turn


class SoupBinClient:
    """States: connecting → login → ACTIVE → done | failed (see `reason`)."""

    ACTIVE = "active"

    def __init__(self, address: tuple[str, int], user: str, password: str, session: bytes | str, next_seq: int,
                 clock, heartbeat_interval: float = 1.0, server_timeout: float = 15.0, connect_timeout: float = 2.0):
        if next_seq < 0:
            raise ValueError(f"sequence number must be >= 0, not {next_seq}")
        sb.encode_login_request(user, password, session, next_seq)  # field checks up front
        self.address = tuple(address)
        self._user, self._password = user, password
        self._requested = sb.normalize_session(session)
        self._clock = clock
        self.heartbeat_interval = heartbeat_interval
        self.server_timeout = server_timeout
        self.connect_timeout = connect_timeout
        self.next_seq = next_seq
        self.session: bytes | None = None  # as named by Login Accepted
        self.server_heartbeats = 0
        self.connections = 0
        self.state, self.reason = "failed", "not connected"
        self._sock: socket.socket | None = None
        self._pending = bytearray()

    @property
    def live(self) -> bool:
        return self.state in ("connecting", "login", self.ACTIVE)

    # ------------------------------------------------------------------------------------ public
    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def wants_write(self) -> bool:
        return self.state == "connecting" or (self.live and bool(self._pending))

    def poll(self) -> None:
        """Do what can be done now without blocking."""
        if self.state == "connecting" and not self._finish_connect():
            return
        if not self.live or not self._flush():
            return
        self._read()
        if not self.live:
            return
        now = self._clock()
        if now - self._last_recv > self.server_timeout:
            self._end("failed", f"server silent for {float(self.server_timeout)} s")
            return
        if not self._pending and now - self._last_send >= self.heartbeat_interval:
            self._pending += sb.CLIENT_HEARTBEAT_PACKET
        self._flush()

    # ------------------------------------------------------------------------------- connection
    def _connect(self) -> None:
        """A new connection that logs in for `next_seq`."""
        self.connections += 1
        self.state, self.reason = "connecting", ""
        self._pending = bytearray()
        self._started = self._last_recv = self._last_send = self._clock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setblocking(False)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            err = self._sock.connect_ex(self.address)
        except OSError as e:
            self._end("failed", f"connect failed: {e}")
            return
        if err == 0:
            self._connected()
        elif err not in (errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._end("failed", f"connect failed: {os.strerror(err)}")

    def _finish_connect(self) -> bool:
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._end("failed", f"connect failed: {os.strerror(err)}")
            return False
        try:
            self._sock.getpeername()
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                self._end("failed", f"connect failed: {e.strerror}")
            elif self._clock() - self._started > self.connect_timeout:
                self._end("failed", "connect timeout")
            return False
        self._connected()
        return True

    def _connected(self) -> None:
        self.state = "login"
        self._login_seq = self.next_seq
        self._pending += sb.encode_login_request(self._user, self._password, self._requested, self.next_seq)
        self._last_recv = self._last_send = self._clock()

    def _flush(self) -> bool:
        """Send what is pending as far as the socket takes it; False when the connection failed."""
        while self._pending:
            try:
                n = self._sock.send(self._pending)
            except BlockingIOError:
                break
            except OSError:
                self._end("failed", "disconnected")
                return False
            del self._pending[:n]
            self._last_send = self._clock()
        return True

    def _end(self, state: str, reason: str, logout: bool = False) -> None:
        """Close and enter `state`. A session that ends well ("done", or `logout`: a Logout Request after
        whatever is pending) is closed gracefully in the background, so the server reads everything we
        sent; a failed one is closed at once."""
        if logout or state == "done":
            last = bytes(self._pending) + (sb.LOGOUT_PACKET if logout else b"")
            close_gracefully(self._sock, last)
        else:
            self._sock.close()
        self._pending.clear()
        self.state, self.reason = state, reason

    def _recv_failed(self, e: OSError) -> None:
        self._end("failed", "disconnected" if isinstance(e, ConnectionError) else f"socket error: {e}")

    # ---------------------------------------------------------------------------------- packets
    def _read(self) -> None:
        raise NotImplementedError

    def _on_login(self) -> None:
        """Called once Login Accepted was checked and the state is ACTIVE."""

    def _control(self, ptype: int, payload: bytes) -> None:
        """Every packet but Sequenced Data while ACTIVE."""
        if ptype == H:
            self.server_heartbeats += 1
        elif ptype == DEBUG:
            pass
        elif ptype == A and self.state == "login":
            self._accepted(payload)
        elif ptype == J and self.state == "login":
            why = sb.REJECT_REASONS.get(payload, f"reason code {payload!r}")
            self._end("failed", f"login rejected: {why}")
        elif ptype == Z and self.state == self.ACTIVE:
            self._end("done", "end of session")
        else:
            self._end("failed", f"protocol error: unexpected packet type {chr(ptype)!r} in state {self.state}")

    def _accepted(self, payload: bytes) -> None:
        try:
            session, seq = sb.parse_login_accepted(payload)
        except ValueError as e:
            self._end("failed", f"protocol error: {e}")
            return
        self.session = session
        if self._requested != sb.BLANK_SESSION and session != self._requested:
            wanted, got = sb.session_text(self._requested), sb.session_text(session)
            self._end("failed", f"session mismatch: wanted {wanted}, got {got}")
        elif self._login_seq > 0 and seq != self._login_seq:
            self._end("failed", f"server starts at sequence {seq}, wanted {self._login_seq}")
        else:
            self.next_seq = seq
            self.state = self.ACTIVE
            self._on_login()
