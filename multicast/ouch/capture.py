"""OUCH order-entry sessions found in a capture: TCP streams → SoupBinTCP packets → OUCH messages.

Owns the offline view of order entry that `xdpfeed orders` and `xdpfeed decode` print. The TCP byte
streams of both directions come from `capture.tcp_stream` (retransmissions and out-of-order segments
placed; a hole ends the stream there and is reported). A connection is an OUCH session when one of its
directions walks as SoupBinTCP packets; the client is the side that sends the Login Request ('L'), or
failing that (a capture begun mid-session) the side that sends Unsequenced Data, Client Heartbeats or a
Logout. Sequenced Data is numbered from the Login Accepted sequence number (unknown without one). When
the capture began inside a packet, the walk starts at the first offset from which several packets in a
row parse cleanly (the bytes before it are counted as skipped).

The OUCH version is given or detected: each candidate decodes every message of every session, and
the one with fewer messages it cannot decode wins. Messages of both directions are merged in capture
order — a message counts as arrived with the segment that completed it — so a lifecycle sees each
request before its answer. Nothing is dropped silently: packets that are not OUCH data, messages that
do not decode and bytes after a hole or a broken packet are counted per direction.
"""

from dataclasses import dataclass, field

import numpy as np

from xdpfeed.capture.tcp_stream import Direction, reassemble_until_damage
from xdpfeed.multicast.ouch.decoder import OuchTables, decode_messages
from xdpfeed.multicast.ouch.reference import decode
from xdpfeed.multicast.ouch.schema import VERSIONS
from xdpfeed.multicast.wire import soupbintcp as sb

CLIENT_TYPES = {ord(t) for t in (sb.LOGIN_REQUEST, sb.UNSEQUENCED, sb.CLIENT_HEARTBEAT, sb.LOGOUT_REQUEST)}
SERVER_TYPES = {ord(t) for t in (sb.LOGIN_ACCEPTED, sb.LOGIN_REJECTED, sb.SEQUENCED, sb.SERVER_HEARTBEAT,
                                 sb.END_OF_SESSION)}
KNOWN_TYPES = CLIENT_TYPES | SERVER_TYPES | {ord(sb.DEBUG)}
_L, _A, _S, _U = (ord(t) for t in (sb.LOGIN_REQUEST, sb.LOGIN_ACCEPTED, sb.SEQUENCED, sb.UNSEQUENCED))
PACKET_NAMES = {ord(sb.LOGIN_REQUEST): "login_request", ord(sb.LOGIN_ACCEPTED): "login_accepted",
                ord(sb.LOGIN_REJECTED): "login_rejected", ord(sb.SEQUENCED): "sequenced",
                ord(sb.UNSEQUENCED): "unsequenced", ord(sb.SERVER_HEARTBEAT): "heartbeats",
                ord(sb.CLIENT_HEARTBEAT): "heartbeats", ord(sb.END_OF_SESSION): "end_of_session",
                ord(sb.LOGOUT_REQUEST): "logout", ord(sb.DEBUG): "debug"}


class DetectError(ValueError):
    """The OUCH version cannot be told from the capture."""


@dataclass
class Packet:
    ptype: int
    payload: bytes
    end: int  # stream offset just after the packet
    time_ns: int = 0


@dataclass
class Side:
    """One direction of a session: its packets and what could not be followed."""

    tcp: Direction
    packets: list = field(default_factory=list)
    missing_bytes: int = 0  # after a hole in the TCP stream
    skipped_bytes: int = 0  # before the first whole packet, when the capture began inside one
    partial_bytes: int = 0  # a packet cut off at the end of the stream
    broken: str = ""  # why the packet walk stopped early (a length of 0, a packet type no side sends)
    counts: dict = field(default_factory=dict)  # packet kind → packets

    @property
    def endpoint(self) -> str:
        return f"{self.tcp.src[0]}:{self.tcp.src[1]}"


@dataclass
class Session:
    client: Side | None  # None when the capture holds the server's direction only
    server: Side | None  # None when it holds the client's only
    login: dict | None = None  # user, session, sequence asked for
    accepted: tuple | None = None  # (session, first sequence number) of Login Accepted

    @property
    def sides(self) -> tuple:
        return tuple(x for x in (self.client, self.server) if x is not None)

    @property
    def name(self) -> str:
        """client ip:port>server ip:port"""
        if self.client is not None:
            (ci, cp), (si, sp) = self.client.tcp.src, self.client.tcp.dst
        else:
            (si, sp), (ci, cp) = self.server.tcp.src, self.server.tcp.dst
        return f"{ci}:{cp}>{si}:{sp}"


@dataclass
class Message:
    """One OUCH message of a session in capture order."""

    time_ns: int
    direction: str  # "in" (client → venue, 'U') or "out" (venue → client, 'S')
    seq: int | None  # SoupBinTCP sequence number of an outbound message, when known
    payload: bytes
    fields: dict | None = None  # decoded; None when it does not decode (see error)
    error: str = ""


RESYNC_PACKETS = 8  # packets in a row that must walk cleanly from a guessed start
RESYNC_SCAN = 1 << 17  # bytes searched for that start


def _chain(data: bytes, pos: int) -> int:
    """How many SoupBinTCP packets of known types follow each other from `pos` (up to RESYNC_PACKETS),
    or -1 when the walk hits a bad length or type before the end of the data."""
    n = 0
    while n < RESYNC_PACKETS:
        if pos == len(data):
            return n
        if pos + 3 > len(data):
            return n  # a packet cut by the end of the stream: judged by what came before
        length = (data[pos] << 8) | data[pos + 1]
        if length == 0 or data[pos + 2] not in KNOWN_TYPES:
            return -1
        pos += 2 + length
        if pos > len(data):
            return n
        n += 1
    return n


def resync(data: bytes) -> int:
    """Where the first whole packet starts in a stream whose capture began inside a packet: the first
    offset from which RESYNC_PACKETS packets (or all to the end) walk cleanly; 0 when none does."""
    for start in range(min(len(data), RESYNC_SCAN)):
        if _chain(data, start) > 0:  # > 0: no bad packet among the first RESYNC_PACKETS, or up to the end
            return start
    return 0


def _walk(d: Direction) -> Side:
    data, missing = d.assemble()
    side = Side(d, missing_bytes=missing)
    arrival = d.arrival()
    k, t = 0, 0
    pos = resync(data) if d.mid_connection else 0
    side.skipped_bytes = d.skipped_at_start + pos
    while True:
        try:
            pkt = sb.next_packet(data, pos, len(data))
        except ValueError as e:
            side.broken = str(e)
            break
        if pkt is None:
            side.partial_bytes = len(data) - pos
            break
        ptype, start, length, nxt = pkt
        if ptype not in KNOWN_TYPES:
            side.broken = f"packet type {chr(ptype)!r} at byte {pos} is not SoupBinTCP"
            break
        while k < len(arrival) and arrival[k][0] < nxt:
            k += 1
        t = max(t, arrival[k][1] if k < len(arrival) else 0)  # read in stream order: never before earlier bytes
        side.packets.append(Packet(ptype, data[start : start + length], nxt, t))
        kind = PACKET_NAMES[ptype]
        side.counts[kind] = side.counts.get(kind, 0) + 1
        pos = nxt
    if side.broken:
        side.partial_bytes = len(data) - pos
    return side


def _client_score(side: Side) -> float:
    """> 0: sends what clients send (a Login Request first settles it); < 0: what servers send."""
    if side.packets and side.packets[0].ptype == _L:
        return float("inf")
    return sum(p.ptype in CLIENT_TYPES for p in side.packets) - sum(p.ptype in SERVER_TYPES for p in side.packets)


def _roles(a: Side, b: Side | None) -> tuple[Side | None, Side | None]:
    """(client, server) of a connection; a capture may hold one direction only."""
    if b is None:
        return (a, None) if _client_score(a) >= 0 else (None, a)
    return (a, b) if _client_score(a) >= _client_score(b) else (b, a)


def find_sessions(path: str) -> tuple[list[Session], int, Exception | None]:
    """The OUCH/SoupBinTCP sessions of a capture, how many other TCP connections it holds, and the
    CorruptInput error when the capture is damaged part-way (the sessions are then what came before)."""
    dirs, damage = reassemble_until_damage(path)
    by_key = {(d.src, d.dst): d for d in dirs}
    seen, sessions, other = set(), [], 0
    for d in dirs:
        if (d.src, d.dst) in seen:
            continue
        back = by_key.get((d.dst, d.src))
        seen.update({(d.src, d.dst), (d.dst, d.src)})
        a, b = _walk(d), (_walk(back) if back is not None else None)
        if not a.packets and (b is None or not b.packets):
            other += 1
            continue
        client, server = _roles(a, b)
        s = Session(client, server)
        for p in client.packets if client is not None else ():
            if p.ptype == _L:
                try:
                    user, _, sess, seq = sb.parse_login_request(p.payload)
                    s.login = {"user": user, "session": sb.session_text(sess), "sequence": seq}
                except ValueError:
                    pass
                break
        for p in server.packets if server is not None else ():
            if p.ptype == _A:
                try:
                    s.accepted = sb.parse_login_accepted(p.payload)
                except ValueError:
                    pass
                break
        sessions.append(s)
    return sessions, other, damage


DETECT_MESSAGES = 20_000  # messages looked at to tell the version


def _decodes(version: str, sessions: list[Session]) -> tuple[int, int]:
    good = bad = 0
    for s in sessions:
        for side, direction, ptype in ((s.client, "in", _U), (s.server, "out", _S)):
            for p in side.packets if side is not None else ():
                if p.ptype != ptype:
                    continue
                if good + bad >= DETECT_MESSAGES:
                    return good, bad
                try:
                    decode(version, direction, p.payload)
                    good += 1
                except ValueError:
                    bad += 1
    return good, bad


def detect_version(sessions: list[Session]) -> str | None:
    """The OUCH version under which the messages decode best; None when there is no OUCH message at all
    (only SoupBinTCP control packets); DetectError when the versions cannot be told apart."""
    scores = {v: _decodes(v, sessions) for v in VERSIONS}
    total = sum(scores[VERSIONS[0]])
    if total == 0:
        return None
    ranked = sorted(VERSIONS, key=lambda v: scores[v][1])
    best, second = ranked[0], ranked[1]
    if scores[best][1] == scores[second][1]:
        if _only_system_events(sessions):
            return VERSIONS[-1]  # System Events look the same in both: any choice decodes them
        raise DetectError(f"OUCH {best} and {second} decode this capture equally well "
                          f"({scores[best][0]} of {total} messages): give --ouch 4.2|5.0")
    return best


def _only_system_events(sessions: list[Session]) -> bool:
    return all(p.ptype != _U and (p.ptype != _S or p.payload[:1] == b"S")
               for s in sessions for side in s.sides for p in side.packets)


def messages(s: Session, version: str) -> list[Message]:
    """The session's OUCH messages, both directions, in capture order (inbound first on equal times)."""
    seq = s.accepted[1] if s.accepted is not None else None
    out = [Message(p.time_ns, "in", None, p.payload) for p in (s.client.packets if s.client else ()) if p.ptype == _U]
    _decode_all(version, "in", out)
    outbound = []
    for p in s.server.packets if s.server is not None else ():
        if p.ptype == _S:
            outbound.append(Message(p.time_ns, "out", seq, p.payload))
            seq = None if seq is None else seq + 1
    _decode_all(version, "out", outbound)
    out += outbound
    out.sort(key=lambda m: (m.time_ns, m.direction != "in"))  # stable: stream order within a direction
    return out


def _decode_all(version: str, direction: str, msgs: list[Message]) -> None:
    """Decode with the compiled decoder in one call; when some message does not decode, find which with
    the reference decoder (same results, tested) so that each one gets its own error."""
    if not msgs:
        return
    lengths = np.fromiter((len(m.payload) for m in msgs), dtype=np.int64, count=len(msgs))
    offsets = np.zeros(len(msgs), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    tables = OuchTables(version, direction, capacity=len(msgs))
    decode_messages(b"".join(m.payload for m in msgs), offsets, lengths, len(msgs), tables)
    if tables.count == len(msgs):
        for m, d in zip(msgs, tables.to_dicts(), strict=True):
            m.fields = d
        return
    for m in msgs:
        try:
            m.fields = decode(version, direction, m.payload)
        except ValueError as e:
            m.error = str(e)
