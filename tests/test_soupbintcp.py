"""SoupBinTCP 3.00 codec: exact bytes, round trips, padding on either side, framing split at every byte,
and the stopping rules of the compiled Sequenced Data → MoldUDP64 block walk."""

import string
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xdpfeed.multicast.wire import soupbintcp as sb

ALNUM = string.ascii_letters + string.digits
users = st.text(ALNUM, max_size=6)
passwords = st.text(ALNUM, max_size=10)
sessions = st.text(ALNUM, max_size=10).map(lambda s: s.encode().ljust(10))
seqs = st.integers(0, 10**20 - 1)
messages = st.lists(st.binary(min_size=1, max_size=60), max_size=30)


def arr(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.uint8).copy()


def blocks(msgs) -> bytes:
    return b"".join(struct.pack(">H", len(m)) + m for m in msgs)


# ------------------------------------------------------------------------------------- encoders
def test_fixed_packets():
    assert sb.SERVER_HEARTBEAT_PACKET == b"\x00\x01H"
    assert sb.CLIENT_HEARTBEAT_PACKET == b"\x00\x01R"
    assert sb.END_OF_SESSION_PACKET == b"\x00\x01Z"
    assert sb.LOGOUT_PACKET == b"\x00\x01O"
    assert [len(t) for t in (sb.DEBUG, sb.LOGIN_ACCEPTED, sb.LOGIN_REJECTED, sb.SEQUENCED, sb.SERVER_HEARTBEAT,
                             sb.END_OF_SESSION, sb.LOGIN_REQUEST, sb.UNSEQUENCED, sb.CLIENT_HEARTBEAT,
                             sb.LOGOUT_REQUEST)] == [1] * 10
    assert sb.REJECT_REASONS == {b"A": "not authorized", b"S": "session not available"}


def test_login_request_layout():
    pkt = sb.encode_login_request("bob", "secret", b"SES1      ", 42)
    assert len(pkt) == 49 and pkt[:3] == b"\x00\x2fL"  # length 47 counts the type byte (trap 12)
    assert pkt[3:9] == b"bob   " and pkt[9:19] == b"secret    "
    assert pkt[19:29] == b"      SES1"  # session left-padded on the wire
    assert pkt[29:49] == b" " * 18 + b"42"
    assert sb.encode_login_request("bob", "pw", b"", 1)[19:29] == b" " * 10  # blank = current session


def test_login_accepted_rejected_and_data_layout():
    assert sb.encode_login_accepted(b"XDPFEED001", 7) == b"\x00\x1fA" + b"XDPFEED001" + b" " * 19 + b"7"
    assert sb.encode_login_rejected(b"S") == b"\x00\x02JS"
    assert sb.encode_sequenced(b"Dxyz") == b"\x00\x05SDxyz"
    assert sb.encode_unsequenced(b"O1") == b"\x00\x03UO1"
    assert sb.encode_debug("hi") == b"\x00\x03+hi"


@pytest.mark.parametrize("call, field", [
    (lambda: sb.encode_login_request("toolong", "pw", b"", 1), "username"),
    (lambda: sb.encode_login_request("u", "x" * 11, b"", 1), "password"),
    (lambda: sb.encode_login_request("u", "pw", b"S" * 11, 1), "session"),
    (lambda: sb.encode_login_request("u", "pw", b"", 10**20), "sequence number"),
    (lambda: sb.encode_login_request("u", "pw", b"", -1), "sequence number"),
    (lambda: sb.encode_login_request("usé", "pw", b"", 1), "username"),
    (lambda: sb.encode_login_accepted(b"S" * 11, 1), "session"),
    (lambda: sb.encode_login_rejected(b"X"), "reject reason code"),
    (lambda: sb.encode_sequenced(b"x" * 65535), "payload"),
])
def test_bad_fields_raise_naming_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


# ------------------------------------------------------------------------------------- decoders
@given(users, passwords, sessions, seqs)
def test_login_request_round_trip(user, password, session, seq):
    pkt = sb.encode_login_request(user, password, session, seq)
    assert sb.next_packet(pkt, 0, len(pkt)) == (ord("L"), 3, 46, 49)
    assert sb.parse_login_request(pkt[3:]) == (user, password, session, seq)


@given(sessions, seqs)
def test_login_accepted_round_trip(session, seq):
    pkt = sb.encode_login_accepted(session, seq)
    assert sb.parse_login_accepted(pkt[3:]) == (session, seq)


@pytest.mark.parametrize("session, number", [
    (b"      SES1", b" " * 19 + b"5"),  # spec: left-padded
    (b"SES1      ", b"5" + b" " * 19),  # nasdaq-protocols: right-padded (trap 18)
    (b"   SES1   ", b"         5          "),
    (b"SES1      ", b"0" * 19 + b"5"),  # zero-filled
])
def test_padding_on_either_side(session, number):
    assert sb.parse_login_accepted(session + number) == (b"SES1      ", 5)
    assert sb.parse_login_request(b" alice" + b"pw        " + session + number) == ("alice", "pw", b"SES1      ", 5)


@pytest.mark.parametrize("number, why", [
    (b" " * 20, "not a decimal number"),
    (b" " * 17 + b"1x2", "not a decimal number"),
    (b" " * 18 + b"-1", "not a decimal number"),
    (b" " * 9 + b"1 2" + b" " * 8, "not a decimal number"),
])
def test_malformed_numerics(number, why):
    with pytest.raises(ValueError, match=why):
        sb.parse_login_accepted(b"SES1      " + number)


def test_wrong_payload_lengths():
    with pytest.raises(ValueError, match="login accepted payload is 29 bytes, not 30"):
        sb.parse_login_accepted(b"x" * 29)
    with pytest.raises(ValueError, match="login request payload is 51 bytes, not 46"):
        sb.parse_login_request(b"x" * 51)
    with pytest.raises(ValueError, match="username"):
        sb.parse_login_request(b"\xff" * 6 + b" " * 20 + b"1".rjust(20))


# ---------------------------------------------------------------------------------------- framing
def test_next_packet_incomplete_and_zero_length():
    pkt = sb.encode_sequenced(b"hello")
    for cut in range(len(pkt)):
        assert sb.next_packet(pkt, 0, cut) is None
    assert sb.next_packet(arr(b"xx" + pkt), 2, 2 + len(pkt)) == (ord("S"), 5, 5, 10)
    with pytest.raises(ValueError, match="length 0 at byte 3"):
        sb.next_packet(b"\x00\x01H\x00\x00", 3, 5)


def walk(pieces, out_size=1 << 16):
    """What the replay client does with a byte stream arriving in `pieces`: events in order, with runs
    of 'S' converted to blocks, partial packets carried to the next piece."""
    buf = np.zeros(1 << 16, dtype=np.uint8)
    out = np.zeros(out_size, dtype=np.uint8)
    have, events = 0, []
    for piece in pieces:
        buf[have : have + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
        end, pos = have + len(piece), 0
        while True:
            pos, out_pos, n = sb.sequenced_to_blocks(buf, pos, end, out, 0)
            if n:
                events.append(("blocks", n, bytes(out[:out_pos])))
            pkt = sb.next_packet(buf, pos, end)
            if pkt is None:
                break
            ptype, start, length, nxt = pkt
            if ptype != ord("S"):
                events.append((chr(ptype), bytes(buf[start : start + length])))
                pos = nxt
        have = end - pos
        buf[:have] = buf[pos:end].copy()
    return events, have


def merged(events):
    """Adjacent block runs joined (a split only changes where runs are cut)."""
    out = []
    for e in events:
        if e[0] == "blocks" and out and out[-1][0] == "blocks":
            out[-1] = ("blocks", out[-1][1] + e[1], out[-1][2] + e[2])
        else:
            out.append(e)
    return out


def test_split_at_every_byte():
    msgs = [b"A" * 36, b"D" * 19, b"", b"P" * 44]
    stream = (sb.encode_login_accepted(b"S1", 1) + b"".join(map(sb.encode_sequenced, msgs[:2]))
              + sb.SERVER_HEARTBEAT_PACKET + sb.encode_debug("x") + b"".join(map(sb.encode_sequenced, msgs[2:]))
              + sb.END_OF_SESSION_PACKET)
    want = [("A", b"        S1" + b"1".rjust(20)), ("blocks", 2, blocks(msgs[:2])), ("H", b""), ("+", b"x"),
            ("blocks", 2, blocks(msgs[2:])), ("Z", b"")]
    assert walk([stream]) == (want, 0)
    for cut in range(len(stream) + 1):
        events, left = walk([stream[:cut], stream[cut:]])
        assert (merged(events), left) == (want, 0), cut


@given(messages, st.data())
def test_blocks_equal_moldudp64_framing(msgs, data):
    soup = b"".join(map(sb.encode_sequenced, msgs))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(soup)), max_size=4)))
    pieces = [soup[a:b] for a, b in zip([0] + cuts, cuts + [len(soup)], strict=True)]
    events, left = walk(pieces)
    assert left == 0
    assert b"".join(e[2] for e in events) == blocks(msgs)
    assert sum(e[1] for e in events) == len(msgs)


def test_sequenced_to_blocks_stopping_rules():
    s1, s2 = sb.encode_sequenced(b"abc"), sb.encode_sequenced(b"defgh")
    buf = arr(s1 + s2 + sb.SERVER_HEARTBEAT_PACKET + s1)
    out = np.zeros(64, dtype=np.uint8)
    # stops at the first non-'S' packet
    assert sb.sequenced_to_blocks(buf, 0, buf.size, out, 0) == (14, 12, 2)
    assert bytes(out[:12]) == blocks([b"abc", b"defgh"])
    # an incomplete packet (cut anywhere) is left for later
    for cut in range(6, 14):
        assert sb.sequenced_to_blocks(buf, 0, cut, out, 0) == (6, 5, 1)
    # nothing to do at a heartbeat; the packet after it converts from its own position
    assert sb.sequenced_to_blocks(buf, 14, buf.size, out, 0) == (14, 0, 0)
    assert sb.sequenced_to_blocks(buf, 17, buf.size, out, 7) == (23, 12, 1)
    assert bytes(out[7:12]) == blocks([b"abc"])
    # no room for the next block in `out`: stop before it
    assert sb.sequenced_to_blocks(buf, 0, buf.size, out, 64 - 5) == (6, 64, 1)
    assert sb.sequenced_to_blocks(buf, 0, buf.size, out, 64 - 4) == (0, 60, 0)
    assert sb.sequenced_to_blocks(buf, 0, buf.size, np.zeros(11, dtype=np.uint8), 0) == (6, 5, 1)
    # a zero length field stops the walk (next_packet reports it)
    zero = arr(s1 + b"\x00\x00" + s1)
    assert sb.sequenced_to_blocks(zero, 0, zero.size, out, 0) == (6, 5, 1)


def test_sequenced_to_blocks_long_and_empty_messages():
    msgs = [b"", b"x" * 65534, b"y"]
    soup = arr(b"".join(map(sb.encode_sequenced, msgs)))
    out = np.zeros(70000, dtype=np.uint8)
    pos, out_pos, n = sb.sequenced_to_blocks(soup, 0, soup.size, out, 0)
    assert (pos, n) == (soup.size, 3) and bytes(out[:out_pos]) == blocks(msgs)
