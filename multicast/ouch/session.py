"""Non-blocking SoupBinTCP 3.00 order-entry client for OUCH 4.2 / 5.0, driven by the caller's event loop.

Owns the order-entry side of a `SoupBinClient` session: OUCH inbound messages out as Unsequenced Data
('U', queued while connecting and logging in, sent in order once logged in) and OUCH outbound messages
in as Sequenced Data ('S'), each handed to `on_message(seq, payload)` with its sequence number, counted
from the Login Accepted value (docs/protocols.md §3.3, trap 17). The client is payload-agnostic: it neither
encodes nor decodes OUCH (that is `ouch_encode` / `ouch_reference`).

`next_seq` is always the sequence number of the next message expected, so `reconnect()` (or a new client
given `next_seq=old.next_seq`) resumes without loss or duplicate. Inbound messages already handed to
the socket when a connection dies are not sent again (SoupBinTCP has no recovery for that direction:
the replayed outbound messages tell what the venue saw).
"""

import time

from xdpfeed.multicast.wire import soupbintcp as sb
from xdpfeed.multicast.wire.soupbin_client import READ_ROUNDS, S, SoupBinClient

VERSIONS = ("4.2", "5.0")
READ_BYTES = 1 << 16  # one recv


class OuchClient(SoupBinClient):
    """One OUCH session. States: connecting → login → active → done | failed (see `reason`).

    next_seq: the first sequence number to ask for (1 = the whole session, 0 = only new messages);
    afterwards the number of the next message expected."""

    def __init__(self, address: tuple[str, int], user: str, password: str, version: str, session: bytes | str = b"",
                 next_seq: int = 1, clock=time.monotonic, on_message=None, heartbeat_interval: float = 1.0,
                 server_timeout: float = 15.0, connect_timeout: float = 2.0):
        if version not in VERSIONS:
            raise ValueError(f"OUCH version must be one of {VERSIONS}, not {version!r}")
        super().__init__(address, user, password, session, next_seq, clock, heartbeat_interval, server_timeout,
                         connect_timeout)
        self.version = version
        self.on_message = on_message
        self.messages = 0  # Sequenced Data received (all connections)
        self.sent = 0  # Unsequenced Data handed to a socket (all connections)
        self._outbox: list[bytes] = []  # 'U' packets waiting for the login to complete
        self._connect()

    def send(self, payload: bytes) -> None:
        """Send one OUCH inbound message (queued until logged in). Raises RuntimeError once the session
        is over (call reconnect() first)."""
        pkt = sb.encode_unsequenced(payload)
        if self.state == self.ACTIVE:
            self._pending += pkt
            self.sent += 1
            self._flush()
        elif self.live:
            self._outbox.append(pkt)
        else:
            raise RuntimeError(f"OUCH session is {self.state} ({self.reason}): cannot send")

    def logout(self) -> None:
        """Send Logout Request (after anything still pending) and close: state "done", "logged out"."""
        if self.state in ("login", self.ACTIVE):
            self._end("done", "logged out", logout=True)
        elif self.state == "connecting":
            self._end("done", "logged out")

    def close(self) -> None:
        """Close without logging out; a live client ends as failed "closed"."""
        if self.live:
            self._end("failed", "closed")

    def reconnect(self) -> None:
        """Connect again after done / failed and log in for `next_seq` (resume without loss or duplicate).
        The session asked for becomes the one the last Login Accepted named."""
        if self.live:
            raise RuntimeError(f"OUCH session is {self.state}: close it before reconnecting")
        if self.session is not None:
            self._requested = self.session
        self._connect()

    def _connect(self) -> None:
        self._inbuf = bytearray()
        super()._connect()

    def _on_login(self) -> None:
        for pkt in self._outbox:
            self._pending += pkt
        self.sent += len(self._outbox)
        self._outbox.clear()

    # ---------------------------------------------------------------------------------- reading
    def _read(self) -> None:
        for _ in range(READ_ROUNDS):
            try:
                data = self._sock.recv(READ_BYTES)
            except BlockingIOError:
                return
            except OSError as e:
                self._recv_failed(e)
                return
            if not data:
                self._process()  # packets that came just before the close still count
                if self.live:
                    self._end("failed", "disconnected")
                return
            self._last_recv = self._clock()
            self._inbuf += data
            self._process()
            if not self.live:
                return

    def _process(self) -> None:
        """Handle the complete packets at the front of the receive buffer."""
        buf, pos = self._inbuf, 0
        try:
            while self.state in ("login", self.ACTIVE):
                pkt = sb.next_packet(buf, pos, len(buf))
                if pkt is None:
                    break
                ptype, start, length, pos = pkt
                payload = bytes(buf[start : start + length])
                if ptype == S and self.state == self.ACTIVE:
                    seq = self.next_seq
                    self.next_seq += 1
                    self.messages += 1
                    if self.on_message is not None:
                        self.on_message(seq, payload)
                else:
                    self._control(ptype, payload)
        except ValueError as e:
            self._end("failed", f"protocol error: {e}")
        del buf[:pos]
