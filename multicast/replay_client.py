"""Non-blocking SoupBinTCP 3.00 replay client for gap recovery, driven by the caller's event loop.

Owns one TCP connection to a venue's replay server: connect, Login Request for a first sequence,
Login Accepted checks, then the Sequenced Data stream turned into MoldUDP64 blocks (one compiled
`sequenced_to_blocks` call per receive) and handed to `on_blocks`, until the wanted end is reached
("caught up": Logout, close), End of Session, or a failure. No threads and no sleeping: the caller
selects on `fileno()` (write interest while `wants_write`) and calls `poll()`; time comes from the
injected `clock`, so tests drive the heartbeat, silence and connect timeouts. Network and protocol
problems never raise out of `poll()`: they end in state "failed" with a one-line `reason`, and
`next_seq` says where a new client must resume (no loss, no duplicate).
"""

import errno
import os
import socket

import numpy as np

from xdpfeed.multicast import soupbintcp as sb

MIN_BUFFER = 1 << 17  # a whole maximal packet (2 + 65535 bytes) must fit after a partial one is moved up
READ_ROUNDS = 4  # one poll() reads at most this many buffers full, so other sockets get their turn
LIVE = ("connecting", "login", "streaming")

_H, _DEBUG, _A, _J, _S, _Z = (ord(t) for t in (sb.SERVER_HEARTBEAT, sb.DEBUG, sb.LOGIN_ACCEPTED, sb.LOGIN_REJECTED,
                                               sb.SEQUENCED, sb.END_OF_SESSION))


class ReplayClient:
    """Replays sequences [first_seq, end_seq) of a session (end_seq None: until End of Session).

    on_blocks(buf, offset, count, first_seq): buf[offset:] is exactly `count` MoldUDP64 blocks, the
    first with sequence first_seq; the array is reused after the call returns. Blocks that arrive in
    the same receive as the end are delivered too (they may go past end_seq)."""

    def __init__(self, address: tuple[str, int], user: str, password: str, session: bytes, first_seq: int,
                 end_seq: int | None, clock, on_blocks, heartbeat_interval: float = 1.0,
                 server_timeout: float = 15.0, connect_timeout: float = 2.0, buffer_bytes: int = 4 << 20):
        if buffer_bytes < MIN_BUFFER:
            raise ValueError(f"buffer_bytes must be at least {MIN_BUFFER}, not {buffer_bytes}")
        if first_seq < 0:
            raise ValueError(f"first_seq must be >= 0, not {first_seq}")
        self._login = sb.encode_login_request(user, password, session, first_seq)
        self._requested = sb.normalize_session(session)
        self._clock = clock
        self._on_blocks = on_blocks
        self.heartbeat_interval = heartbeat_interval
        self.server_timeout = server_timeout
        self.connect_timeout = connect_timeout
        self.first_seq = first_seq
        self.end_seq = end_seq
        self.next_seq = first_seq
        self.messages = 0
        self.server_heartbeats = 0
        self.session: bytes | None = None
        self.state = "connecting"
        self.reason = ""
        self._buf = np.empty(buffer_bytes, dtype=np.uint8)
        self._view = memoryview(self._buf)
        self._out = np.empty(buffer_bytes, dtype=np.uint8)  # blocks are 1 byte shorter than packets
        self._have = 0  # bytes of a partial packet at the front of _buf
        self._pending = bytearray()
        self._started = self._last_recv = self._last_send = clock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setblocking(False)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connect(address)

    # ------------------------------------------------------------------------------------ public
    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def wants_write(self) -> bool:
        return self.state == "connecting" or (self.state in LIVE and bool(self._pending))

    def want(self, end_seq: int | None) -> None:
        """Change the wanted end (exclusive); None = until End of Session."""
        self.end_seq = end_seq
        self._check_caught_up()

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

    def close(self) -> None:
        """Log out (best effort) and close; a live client ends as failed "closed"."""
        if self.state in LIVE:
            self._end("failed", "closed", logout=self.state == "streaming")
        self._sock.close()

    # ------------------------------------------------------------------------------- connection
    def _connect(self, address) -> None:
        try:
            err = self._sock.connect_ex(address)
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
        self._pending += self._login
        self._last_recv = self._last_send = self._clock()
        self._check_caught_up()

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
            try:
                self._sock.send(self._pending)
            except OSError:
                pass  # best effort: the server also ends the connection when we close
        self._pending.clear()
        self._sock.close()
        self.state = state
        self.reason = reason

    def _check_caught_up(self) -> None:
        if self.end_seq is None or self.state not in LIVE or self.next_seq < self.end_seq:
            return
        if self.state == "streaming" or self.first_seq > 0:
            self._end("done", "caught up", logout=self.state == "streaming")

    # ---------------------------------------------------------------------------------- reading
    def _read(self) -> None:
        for _ in range(READ_ROUNDS):
            try:
                k = self._sock.recv_into(self._view[self._have:])
            except BlockingIOError:
                return
            except OSError as e:
                self._end("failed", "disconnected" if isinstance(e, ConnectionError) else f"socket error: {e}")
                return
            if k == 0:
                self._end("failed", "disconnected")
                return
            self._last_recv = self._clock()
            end = self._have + k
            pos = self._process(end)
            if self.state not in LIVE:
                return
            rest = end - pos
            if rest and pos:
                self._buf[:rest] = self._buf[pos:end]
            self._have = rest
            self._check_caught_up()
            if self.state not in LIVE:
                return

    def _process(self, end: int) -> int:
        """Handle the complete packets in _buf[:end]; returns where the unfinished one starts."""
        pos = 0
        while self.state in ("login", "streaming"):
            if self.state == "streaming":
                pos = self._deliver(pos, end)
            try:
                pkt = sb.next_packet(self._buf, pos, end)
            except ValueError as e:
                self._end("failed", f"protocol error: {e}")
                break
            if pkt is None:
                break
            ptype, start, length, nxt = pkt
            if ptype == _S and self.state == "streaming":
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

    def _control(self, ptype: int, payload: bytes) -> None:
        if ptype == _H:
            self.server_heartbeats += 1
        elif ptype == _DEBUG:
            pass
        elif ptype == _A and self.state == "login":
            self._accepted(payload)
        elif ptype == _J and self.state == "login":
            why = sb.REJECT_REASONS.get(payload, f"reason code {payload!r}")
            self._end("failed", f"login rejected: {why}")
        elif ptype == _Z and self.state == "streaming":
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
        elif self.first_seq > 0 and seq != self.first_seq:
            self._end("failed", f"server started at {seq}, wanted {self.first_seq}")
        else:
            self.next_seq = seq
            self.state = "streaming"
