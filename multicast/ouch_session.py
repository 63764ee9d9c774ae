"""Non-blocking SoupBinTCP 3.00 order-entry client for OUCH 4.2 / 5.0, driven by the caller's event loop.

Owns one TCP connection to an order-entry gateway: connect, Login Request for a session and sequence
number, Login Accepted / Rejected, then OUCH inbound messages out as Unsequenced Data ('U', queued
while connecting and logging in, sent in order once logged in) and OUCH outbound messages in as
Sequenced Data ('S'), each handed to `on_message(seq, payload)` with its sequence number, counted from
the Login Accepted value (protocols.md 3.3, trap 17). The client is payload-agnostic: it neither
encodes nor decodes OUCH (that is `ouch_encode` / `ouch_reference`).

Same shape as `replay_client.ReplayClient`: no threads and no sleeping; the caller selects on
`fileno()` (write interest while `wants_write`) and calls `poll()`; time comes from the injected
`clock`, so tests drive client heartbeats ('R' after `heartbeat_interval` without sending), the
server-silence timeout and the connect timeout. Network and protocol problems never raise out of
`poll()`: they end in state "failed" with a one-line `reason`. `logout()` and End of Session end in
state "done". `next_seq` is always the sequence number of the next message expected, so `reconnect()`
(or a new client given `next_seq=old.next_seq`) resumes without loss or duplicate. Inbound messages
already handed to the socket when a connection dies are not sent again (SoupBinTCP has no recovery
for that direction: the replayed outbound messages tell what the venue saw).
"""

import errno
import os
import socket
import time

from xdpfeed.multicast import soupbintcp as sb

VERSIONS = ("4.2", "5.0")
LIVE = ("connecting", "login", "active")
READ_BYTES = 1 << 16  # one recv
READ_ROUNDS = 4  # one poll() reads at most this many times, so other sockets get their turn

_H, _DEBUG, _A, _J, _S, _Z = (ord(t) for t in (sb.SERVER_HEARTBEAT, sb.DEBUG, sb.LOGIN_ACCEPTED, sb.LOGIN_REJECTED,
                                               sb.SEQUENCED, sb.END_OF_SESSION))


class OuchClient:
    """One OUCH session. States: connecting → login → active → done | failed (see `reason`).

    next_seq: the first sequence number to ask for (1 = the whole session, 0 = only new messages);
    afterwards the number of the next message expected."""

    def __init__(self, address: tuple[str, int], user: str, password: str, version: str, session: bytes | str = b"",
                 next_seq: int = 1, clock=time.monotonic, on_message=None, heartbeat_interval: float = 1.0,
                 server_timeout: float = 15.0, connect_timeout: float = 2.0):
        if version not in VERSIONS:
            raise ValueError(f"OUCH version must be one of {VERSIONS}, not {version!r}")
        if next_seq < 0:
            raise ValueError(f"next_seq must be >= 0, not {next_seq}")
        sb.encode_login_request(user, password, session, next_seq)  # field checks up front
        self.version = version
        self.address = tuple(address)
        self._user, self._password = user, password
        self._requested = sb.normalize_session(session)
        self._clock = clock
        self.on_message = on_message
        self.heartbeat_interval = heartbeat_interval
        self.server_timeout = server_timeout
        self.connect_timeout = connect_timeout
        self.next_seq = next_seq
        self.session: bytes | None = None  # as named by Login Accepted
        self.messages = 0  # Sequenced Data received (all connections)
        self.sent = 0  # Unsequenced Data handed to a socket (all connections)
        self.server_heartbeats = 0
        self.connections = 0
        self.state = "failed"
        self.reason = "not connected"
        self._outbox: list[bytes] = []  # 'U' packets waiting for the login to complete
        self._sock: socket.socket | None = None
        self._connect()

    # ------------------------------------------------------------------------------------ public
    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def wants_write(self) -> bool:
        return self.state == "connecting" or (self.state in LIVE and bool(self._pending))

    def send(self, payload: bytes) -> None:
        """Send one OUCH inbound message (queued until logged in). Raises RuntimeError once the session
        is over (call reconnect() first)."""
        pkt = sb.encode_unsequenced(payload)
        if self.state == "active":
            self._pending += pkt
            self.sent += 1
            self._flush()
        elif self.state in LIVE:
            self._outbox.append(pkt)
        else:
            raise RuntimeError(f"OUCH session is {self.state} ({self.reason}): cannot send")

    def poll(self) -> None:
        """Do what can be done now without blocking."""
        if self.state == "connecting" and not self._finish_connect():
            return
        if self.state not in LIVE or not self._flush():
            return
        self._read()
        if self.state not in LIVE:
            return
        now = self._clock()
        if now - self._last_recv > self.server_timeout:
            self._end("failed", f"server silent for {float(self.server_timeout)} s")
            return
        if not self._pending and now - self._last_send >= self.heartbeat_interval:
            self._pending += sb.CLIENT_HEARTBEAT_PACKET
        self._flush()

    def logout(self) -> None:
        """Send Logout Request (after anything still pending) and close: state "done", "logged out"."""
        if self.state in ("login", "active"):
            self._end("done", "logged out", logout=True)
        elif self.state == "connecting":
            self._end("done", "logged out")

    def close(self) -> None:
        """Close without logging out; a live client ends as failed "closed"."""
        if self.state in LIVE:
            self._end("failed", "closed")

    def reconnect(self) -> None:
        """Connect again after done / failed and log in for `next_seq` (resume without loss or duplicate).
        The session asked for becomes the one the last Login Accepted named."""
        if self.state in LIVE:
            raise RuntimeError(f"OUCH session is {self.state}: close it before reconnecting")
        if self.session is not None:
            self._requested = self.session
        self._connect()

    # ------------------------------------------------------------------------------- connection
    def _connect(self) -> None:
        self.connections += 1
        self.state, self.reason = "connecting", ""
        self._pending = bytearray()
        self._inbuf = bytearray()
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
        if logout:
            self._pending += sb.LOGOUT_PACKET
            self._sock.setblocking(True)  # best effort, bounded: the kernel takes a few bytes at once
            self._sock.settimeout(0.5)
            try:
                self._sock.sendall(self._pending)
            except OSError:
                pass  # the server also ends the connection when we close
        self._pending.clear()
        self._sock.close()
        self.state, self.reason = state, reason

    # ---------------------------------------------------------------------------------- reading
    def _read(self) -> None:
        for _ in range(READ_ROUNDS):
            try:
                data = self._sock.recv(READ_BYTES)
            except BlockingIOError:
                return
            except OSError as e:
                self._end("failed", "disconnected" if isinstance(e, ConnectionError) else f"socket error: {e}")
                return
            if not data:
                self._process()  # packets that came just before the close still count
                if self.state in LIVE:
                    self._end("failed", "disconnected")
                return
            self._last_recv = self._clock()
            self._inbuf += data
            self._process()
            if self.state not in LIVE:
                return

    def _process(self) -> None:
        """Handle the complete packets at the front of the receive buffer."""
        buf, pos = self._inbuf, 0
        try:
            while self.state in ("login", "active"):
                pkt = sb.next_packet(buf, pos, len(buf))
                if pkt is None:
                    break
                ptype, start, length, pos = pkt
                self._packet(ptype, bytes(buf[start : start + length]))
        except ValueError as e:
            self._end("failed", f"protocol error: {e}")
        del buf[:pos]

    def _packet(self, ptype: int, payload: bytes) -> None:
        if ptype == _S and self.state == "active":
            seq = self.next_seq
            self.next_seq += 1
            self.messages += 1
            if self.on_message is not None:
                self.on_message(seq, payload)
        elif ptype == _H:
            self.server_heartbeats += 1
        elif ptype == _DEBUG:
            pass
        elif ptype == _A and self.state == "login":
            self._accepted(payload)
        elif ptype == _J and self.state == "login":
            why = sb.REJECT_REASONS.get(payload, f"reason code {payload!r}")
            self._end("failed", f"login rejected: {why}")
        elif ptype == _Z and self.state == "active":
            self._end("done", "end of session")
        else:
            self._end("failed", f"protocol error: unexpected packet type {chr(ptype)!r} in state {self.state}")

    def _accepted(self, payload: bytes) -> None:
        session, seq = sb.parse_login_accepted(payload)  # ValueError → protocol error
        self.session = session
        if self._requested != sb.BLANK_SESSION and session != self._requested:
            wanted, got = sb.session_text(self._requested), sb.session_text(session)
            self._end("failed", f"session mismatch: wanted {wanted}, got {got}")
        elif self._login_seq > 0 and seq != self._login_seq:
            self._end("failed", f"server starts at sequence {seq}, wanted {self._login_seq}")
        else:
            self.next_seq = seq
            self.state = "active"
            for pkt in self._outbox:
                self._pending += pkt
            self.sent += len(self._outbox)
            self._outbox.clear()
