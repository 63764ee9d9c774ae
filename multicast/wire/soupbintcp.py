"""SoupBinTCP 3.00 packets: encoders, control-packet decoders and the compiled Sequenced Data walk.

Owns the wire format only (docs/protocols.md §3): [uint16 BE length][type][payload] where the length
counts the type byte and the payload but not itself (trap 12). Control packets (Login, Heartbeats,
End of Session, Logout, Debug) are rare and handled in Python; runs of Sequenced Data ('S') packets
are turned into MoldUDP64 blocks ([uint16 BE message length][message]) by `sequenced_to_blocks`, one
compiled call per receive buffer, so no Python object is made per message.

Sessions are passed in and returned in the form `DayStore.session` and MoldUDP64 headers use: 10
bytes, right-padded with spaces (all spaces = "the current session"). On the wire they are left-padded
as the spec says; decoders accept padding on either side of sessions and numerics (trap 18).
"""

from xdpfeed.capture.byteorder import be16
from xdpfeed.capture.jit import njit

# Packet types (1 byte each).
DEBUG = b"+"  # either side: free text, ignored
LOGIN_ACCEPTED = b"A"  # server: session (10) + sequence of the next 'S' (20)
LOGIN_REJECTED = b"J"  # server: reason code (1), see REJECT_REASONS
SEQUENCED = b"S"  # server: one application message; sequence = Login Accepted value + count of earlier 'S'
SERVER_HEARTBEAT = b"H"  # server: nothing sent for ~1 s
END_OF_SESSION = b"Z"  # server: no more 'S' will follow in this session
LOGIN_REQUEST = b"L"  # client: username (6) password (10) session (10) sequence (20)
UNSEQUENCED = b"U"  # client: one application message
CLIENT_HEARTBEAT = b"R"  # client: nothing sent for ~1 s
LOGOUT_REQUEST = b"O"  # client: end the session; the server closes the connection

REJECT_REASONS = {b"A": "not authorized", b"S": "session not available"}

USERNAME_LEN = 6
PASSWORD_LEN = 10
SESSION_LEN = 10
SEQUENCE_LEN = 20
LOGIN_REQUEST_PAYLOAD = USERNAME_LEN + PASSWORD_LEN + SESSION_LEN + SEQUENCE_LEN  # 46
LOGIN_ACCEPTED_PAYLOAD = SESSION_LEN + SEQUENCE_LEN  # 30
MAX_PAYLOAD = 0xFFFF - 1  # the length field includes the type byte
BLANK_SESSION = b" " * SESSION_LEN

_S = ord(SEQUENCED)


def packet(ptype: bytes, payload: bytes = b"") -> bytes:
    """One packet: length (type + payload), type, payload."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"SoupBinTCP payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return (len(payload) + 1).to_bytes(2, "big") + ptype + payload


SERVER_HEARTBEAT_PACKET = packet(SERVER_HEARTBEAT)
CLIENT_HEARTBEAT_PACKET = packet(CLIENT_HEARTBEAT)
END_OF_SESSION_PACKET = packet(END_OF_SESSION)
LOGOUT_PACKET = packet(LOGOUT_REQUEST)


# ------------------------------------------------------------------------------------------- fields
def _ascii(field: str, value: str | bytes, secret: bool = False) -> bytes:
    if not isinstance(value, str):
        return bytes(value)
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{field} {'' if secret else repr(value) + ' '}is not ASCII") from None


def _alpha(field: str, value: str, width: int, secret: bool = False) -> bytes:
    """A right-padded alpha field; a `secret` value is never quoted in the error."""
    raw = _ascii(field, value, secret)
    if len(raw) > width:
        raise ValueError(f"{field} {'' if secret else repr(raw) + ' '}is longer than {width} characters")
    return raw.ljust(width, b" ")


def _numeric(field: str, value: int) -> bytes:
    if not 0 <= value < 10**SEQUENCE_LEN:
        raise ValueError(f"{field} {value} does not fit {SEQUENCE_LEN} decimal digits")
    return str(value).encode("ascii").rjust(SEQUENCE_LEN, b" ")


def normalize_session(session: bytes | str) -> bytes:
    """A session id as 10 bytes right-padded with spaces (blank = b" " * 10), whatever its padding."""
    raw = _ascii("session", session).strip(b" ")
    if len(raw) > SESSION_LEN:
        raise ValueError(f"session {raw!r} is longer than {SESSION_LEN} characters")
    return raw.ljust(SESSION_LEN, b" ")


def session_text(session: bytes | None) -> str:
    """A session id for messages: stripped ASCII, '(blank)' when all spaces."""
    if session is None:
        return "(none)"
    return session.strip(b" ").decode("ascii", "replace") or "(blank)"


def _wire_session(session: bytes | str) -> bytes:
    return normalize_session(session).strip(b" ").rjust(SESSION_LEN, b" ")


def _parse_numeric(field: str, raw: bytes) -> int:
    text = bytes(raw).strip(b" ")
    if not text or not text.isdigit():
        raise ValueError(f"{field} field {bytes(raw)!r} is not a decimal number")
    return int(text)


def _parse_alpha(field: str, raw: bytes) -> str:
    try:
        return bytes(raw).strip(b" ").decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{field} field {bytes(raw)!r} is not ASCII") from None


# ----------------------------------------------------------------------------------------- encoders
def encode_login_request(user: str, password: str, session: bytes, seq: int) -> bytes:
    """'L': username and password right-padded; session left-padded (blank = current); sequence."""
    payload = (_alpha("username", user, USERNAME_LEN) + _alpha("password", password, PASSWORD_LEN, secret=True)
               + _wire_session(session) + _numeric("sequence number", seq))
    return packet(LOGIN_REQUEST, payload)


def encode_login_accepted(session: bytes, seq: int) -> bytes:
    """'A': the session logged into and the sequence number of the next Sequenced Data packet."""
    return packet(LOGIN_ACCEPTED, _wire_session(session) + _numeric("sequence number", seq))


def encode_login_rejected(code: bytes) -> bytes:
    """'J' with reason code b"A" (not authorized) or b"S" (session not available)."""
    if code not in REJECT_REASONS:
        raise ValueError(f"reject reason code {code!r} is not one of {sorted(REJECT_REASONS)}")
    return packet(LOGIN_REJECTED, code)


def encode_sequenced(msg: bytes) -> bytes:
    return packet(SEQUENCED, bytes(msg))


def encode_unsequenced(msg: bytes) -> bytes:
    return packet(UNSEQUENCED, bytes(msg))


def encode_debug(text: str) -> bytes:
    return packet(DEBUG, _ascii("debug text", text))


# ----------------------------------------------------------------------------------------- decoders
def parse_login_request(payload: bytes) -> tuple[str, str, bytes, int]:
    """(username, password, session as 10 right-padded bytes, requested sequence) of an 'L' payload."""
    p = bytes(payload)
    if len(p) != LOGIN_REQUEST_PAYLOAD:
        raise ValueError(f"login request payload is {len(p)} bytes, not {LOGIN_REQUEST_PAYLOAD}")
    user = _parse_alpha("username", p[:6])
    password = _parse_alpha("password", p[6:16])
    session = normalize_session(p[16:26])
    return user, password, session, _parse_numeric("sequence number", p[26:46])


def parse_login_accepted(payload: bytes) -> tuple[bytes, int]:
    """(session as 10 right-padded bytes, sequence of the next 'S') of an 'A' payload."""
    p = bytes(payload)
    if len(p) != LOGIN_ACCEPTED_PAYLOAD:
        raise ValueError(f"login accepted payload is {len(p)} bytes, not {LOGIN_ACCEPTED_PAYLOAD}")
    return normalize_session(p[:10]), _parse_numeric("sequence number", p[10:30])


def next_packet(buf, pos: int, end: int) -> tuple[int, int, int, int] | None:
    """(type byte, payload start, payload length, position after the packet) of the packet at buf[pos],
    or None when buf[pos:end] does not hold all of it yet. A zero length field raises ValueError."""
    if pos + 2 > end:
        return None
    length = (int(buf[pos]) << 8) | int(buf[pos + 1])
    if length == 0:
        raise ValueError(f"SoupBinTCP packet with length 0 at byte {pos}")
    if pos + 2 + length > end:
        return None
    return int(buf[pos + 2]), pos + 3, length - 1, pos + 2 + length


@njit(cache=True)
def sequenced_to_blocks(buf, pos, end, out, out_pos):
    """Copy the consecutive complete 'S' packets at buf[pos:end] into out[out_pos:] as MoldUDP64 blocks
    ([uint16 BE message length][message]). Stops at an incomplete packet, a packet of another type (or
    length 0), or when the next block does not fit in `out`. Returns (pos, out_pos, messages)."""
    n = 0
    cap = out.size
    while pos + 3 <= end:
        length = be16(buf, pos)
        if length == 0 or pos + 2 + length > end or buf[pos + 2] != _S:
            break
        m = length - 1
        if out_pos + 2 + m > cap:
            break
        out[out_pos] = m >> 8
        out[out_pos + 1] = m & 0xFF
        src = pos + 3
        dst = out_pos + 2
        for k in range(m):
            out[dst + k] = buf[src + k]
        pos += 2 + length
        out_pos += 2 + m
        n += 1
    return pos, out_pos, n
