"""OUCH 4.2 / 5.0 codec: encoder, reference decoder and compiled decoder agree on every message type of
both versions and directions; damaged input is counted, never crashes (NUMBA_BOUNDSCHECK=1, conftest);
the real OUCH 5.0 captures and docs/protocols.md §6.7 decode to values read by hand from their bytes."""

import os
import random
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdpfeed.capture import jit
from xdpfeed.multicast.itch import decoder as itch_decoder
from xdpfeed.multicast.ouch import decoder as ouch
from xdpfeed.multicast.ouch import reference as R
from xdpfeed.multicast.ouch import schema as S
from xdpfeed.multicast.ouch.encode import encode

from conftest import PCAPS

ALL = [(v, d, t) for (v, d), msgs in S.MESSAGES.items() for t in msgs]
IDS = [f"{v}-{d}-{t}" for v, d, t in ALL]
UNKNOWN_TAGS = [n for n in range(256) if n not in S.TAGS]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def soup(ptype: bytes, msgs) -> bytes:
    return b"".join(struct.pack(">H", len(m) + 1) + ptype + m for m in msgs)


def run_index(v, d, msgs, capacity=64):
    """Compiled decoding of payloads given by offset/length: (dicts, counters)."""
    t = ouch.OuchTables(v, d, capacity)
    buf = np.frombuffer(b"".join(msgs) or b"\0", dtype=np.uint8)
    lens = np.array([len(m) for m in msgs], dtype=np.int64)
    offs = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64) if msgs else lens
    got, i = [], 0
    while True:
        i += ouch.decode_messages(buf, offs[i:], lens[i:], len(msgs) - i, t)
        got += t.to_dicts()
        t.clear()
        if i == len(msgs):
            return got, t.counts()


def run_stream(v, d, stream: bytes, capacity=64, chunk=None):
    """Compiled decoding of a SoupBinTCP byte stream, fed `chunk` bytes at a time: (dicts, counters, left)."""
    t = ouch.OuchTables(v, d, capacity)
    got, pending, data = [], b"", stream
    while True:
        piece, data = (data, b"") if chunk is None else (data[:chunk], data[chunk:])
        pending += piece
        buf = np.frombuffer(pending, dtype=np.uint8)
        pos = 0
        while True:
            pos = ouch.decode_soup_stream(buf, pos, buf.size, t, d)
            got += t.to_dicts()
            full = t.full
            t.clear()
            if not full:
                break
        pending = pending[pos:]
        if not data:
            return got, t.counts(), pending


# ------------------------------------------------------------------------------------- strategies
def field_value(f):
    if f.kind == "a":
        return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=f.size)
    if f.kind == "s4":
        return st.integers(-(2**31), 2**31 - 1)
    return st.integers(0, 2 ** (8 * f.size) - 1)


def shown(f, value):
    """What a decoder gives for `value` written into field f."""
    return value.rstrip(" ") if f.kind == "a" else value


@st.composite
def message(draw, v, d, t):
    """(encode keyword arguments, the dict decoding must give, number of unknown tags written)."""
    m = S.MESSAGES[(v, d)][t]
    kw = {f.name: draw(field_value(f)) for f in m.fields + m.ext}
    want = {"type": t, **{f.name: shown(f, kw[f.name]) for f in m.fields + m.ext}}
    unknown = 0
    if m.app is not None:
        want["appendage"] = {}
        if m.app == S.REQUIRED or draw(st.booleans()):
            names = draw(st.lists(st.sampled_from([x.name for x in S.TAGS.values()]), unique=True, max_size=6))
            app = {}
            for name in names:
                tag = next(x for x in S.TAGS.values() if x.name == name)
                app[name] = draw(field_value(tag))
                want["appendage"][name] = shown(tag, app[name])
            for n in draw(st.lists(st.sampled_from(UNKNOWN_TAGS), unique=True, max_size=3)):
                app[n] = draw(st.binary(max_size=12))
                unknown += 1
            keys = draw(st.permutations(list(app)))
            kw["appendage"] = {k: app[k] for k in keys}
    return kw, want, unknown


# --------------------------------------------------------------------------------------- schema
def test_layouts_and_dtypes():
    S.check_layouts()
    assert S.snake("ClOrdID") == "cl_ord_id" and S.snake("Buy/Sell Indicator") == "buy_sell_indicator"
    assert S.snake("BBO Weight Indicator") == "bbo_weight_indicator" and S.snake("UserRefNum") == "user_ref_num"
    assert len(ALL) == 5 + 15 + 8 + 18
    block = np.dtype(S.tag_columns(), align=True)
    for v, d, t in ALL:
        m, dt = S.MESSAGES[(v, d)][t], S.DTYPES[(v, d)][t]
        assert dt.isalignedstruct and dt.itemsize % 8 == 0
        for f in m.fields + m.ext:
            off = dt.fields[f.name][1]
            assert off % (8 if f.size == S.COPY_WIDTH else f.size) == 0
        if m.app is not None:  # the tag block has the same layout in every table
            start = dt.fields[block.names[0]][1]
            assert all(dt.fields[n][1] - start == block.fields[n][1] for n in block.names) and start % 8 == 0
            assert dt.fields[S.TAG_BITS][0] == np.uint32 and dt.fields[S.TAG_PREFIX + "peg_offset"][0] == np.int32


# ----------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("v,d,t", ALL, ids=IDS)
@SETTINGS
@given(data=st.data())
def test_round_trip(v, d, t, data):
    kw, want, unknown = data.draw(message(v, d, t))
    payload = encode(v, d, t, **kw)
    assert payload[0] == ord(t)
    assert R.decode(v, d, payload) == want
    got, c = run_index(v, d, [payload])
    assert got == [want] and c["decoded"] == 1 and c["unknown_tags"] == unknown and c["bad_appendages"] == 0
    ptype = b"U" if d == "in" else b"S"
    got, c, left = run_stream(v, d, soup(ptype, [payload]))
    assert got == [want] and left == b"" and c["unknown_tags"] == unknown
    again = {k: x for k, x in want.items() if k != "type"}
    assert R.decode(v, d, encode(v, d, t, **again)) == want  # decoded dicts encode back


@pytest.mark.parametrize("v,d", list(S.MESSAGES))
def test_mixed_stream_in_pieces_and_batches(v, d):
    """300 messages of every type, fed 1..97 bytes at a time, tables of 7 rows: same as the reference."""
    rng = random.Random(f"{v}{d}")
    msgs = S.MESSAGES[(v, d)]
    payloads = []
    for _ in range(300):
        t = rng.choice(list(msgs))
        m = msgs[t]
        kw = {f.name: rng.choice(["", "A", "Z 9"])[: f.size] if f.kind == "a" else rng.getrandbits(8 * f.size)
              for f in m.fields + m.ext}
        if m.app is not None:
            tags = rng.sample(list(S.TAGS.values()), rng.randint(0, 3))
            kw["appendage"] = {x.name: "Q" if x.kind == "a" else -7 if x.kind == "s4" else rng.getrandbits(8 * x.size)
                               for x in tags}
        payloads.append(encode(v, d, t, **kw))
    ptype, other = (b"U", b"S") if d == "in" else (b"S", b"U")
    stream = b"".join(soup(ptype, [p]) + (b"\x00\x01H" if i % 50 == 0 else b"") for i, p in enumerate(payloads))
    stream += b"\x00\x05+text" + soup(other, [payloads[0]]) + b"\x00\x01Z"
    want = [R.decode(v, d, p) for p in payloads]
    for chunk in (None, 1, 97):
        got, c, left = run_stream(v, d, stream, capacity=7, chunk=chunk)
        assert got == want and left == b""
        assert (c["decoded"], c["packets"], c["heartbeats"], c["debug_packets"], c["wrong_direction"],
                c["end_of_session"]) == (300, 309, 6, 1, 1, 1)
    assert run_index(v, d, payloads, capacity=5)[0] == want


@SETTINGS
@given(rows=st.lists(st.dictionaries(st.sampled_from(["firm", "min_qty", "peg_offset", "display_price",
                                                      "bbo_weight_indicator", "group_id"]),
                                     st.integers(1, 1000), max_size=4), min_size=2, max_size=6))
def test_reused_rows_show_only_their_own_tags(rows):
    """After clear(), a row that held tags reads 0 in every tag its new message does not carry."""
    t = ouch.OuchTables("5.0", "out", 1)
    for app in rows:
        app = {k: ("AB" if k == "firm" else "1" if k == "bbo_weight_indicator" else x) for k, x in app.items()}
        t.clear()
        msg = encode("5.0", "out", "A", quantity=1, appendage=app)
        ouch.decode_messages(np.frombuffer(msg, np.uint8), np.array([0]), np.array([len(msg)]), 1, t)
        rec = t["A"][0]
        for tag in S.TAGS.values():
            if tag.name not in app:
                assert rec[S.TAG_PREFIX + tag.name] == 0
        assert rec[S.TAG_BITS] == sum(1 << x.number for x in S.TAGS.values() if x.name in app)
        assert t.to_dicts()[0]["appendage"] == R.decode("5.0", "out", msg)["appendage"]


# --------------------------------------------------------------------------------- damaged input
def fixed_fields(m, p):
    return {f.name: R._value(f.kind, p[f.offset : f.offset + f.size]) for f in m.fields}


def check_against_reference(v, d, payloads):
    """Compiled decoding of arbitrary payloads: never fails; counts add up; a message the reference decodes
    comes out equal; one whose appendage elements the reference rejects keeps its fixed fields, flagged."""
    got, c = run_index(v, d, payloads)
    assert c["decoded"] + c["unknown_types"] + c["bad_lengths"] == len(payloads)
    it = iter(got)
    for p in payloads:
        try:
            want = R.decode(v, d, p)
        except R.BadAppendage:
            g = next(it)
            assert g["appendage_malformed"] is True and g["type"] == chr(p[0])
            assert {k: g[k] for k in fixed_fields(S.MESSAGES[(v, d)][chr(p[0])], p)} == fixed_fields(
                S.MESSAGES[(v, d)][chr(p[0])], p)
        except ValueError as e:
            assert "\n" not in str(e)
        else:
            assert next(it) == want
    assert next(it, None) is None


@pytest.mark.parametrize("v,d", list(S.MESSAGES))
@SETTINGS
@given(data=st.data())
def test_random_bytes(v, d, data):
    letters = list(S.MESSAGES[(v, d)]) + ["z", "\x00"]
    payloads = []
    for _ in range(data.draw(st.integers(1, 12))):
        t = data.draw(st.sampled_from(letters))
        m = S.MESSAGES[(v, d)].get(t)
        if m is not None and m.app is not None and data.draw(st.booleans()):  # a consistent appendage length
            rest = data.draw(st.binary(max_size=40))
            body = data.draw(st.binary(min_size=m.app_offset - 1, max_size=m.app_offset - 1))
            payloads.append(t.encode("latin-1") + body + struct.pack(">H", len(rest)) + rest)
        else:
            size = data.draw(st.sampled_from([0, 1, 8, 30] + ([m.base - 1, m.app_offset] if m else [])))
            payloads.append(t.encode("latin-1") + data.draw(st.binary(min_size=size, max_size=size + 2)))
    check_against_reference(v, d, payloads)
    stream = data.draw(st.binary(max_size=200))
    try:
        run_stream(v, d, stream, capacity=3)
    except ValueError as e:
        assert "length 0" in str(e)


@pytest.mark.parametrize("v,d,t", ALL, ids=IDS)
def test_wrong_lengths_are_counted(v, d, t):
    m = S.MESSAGES[(v, d)][t]
    good = encode(v, d, t)
    bad = [good + b"\x00" * 4, good + b"\x00" * (2 if m.ext and m.app is None else 1)] + [good[:-1]] * (len(good) > 1)
    for p in bad:
        with pytest.raises(ValueError, match="expected"):
            R.decode(v, d, p)
    got, c = run_index(v, d, bad + [good, b"", b"?" + good[1:]])
    assert len(got) == 1 and (c["bad_lengths"], c["unknown_types"]) == (len(bad) + 1, 1)
    with pytest.raises(ValueError, match="unknown OUCH"):
        R.decode(v, d, b"?" + good[1:])


def test_malformed_appendages():
    base = encode("5.0", "out", "A", quantity=7, appendage={})[:-2]
    cases = {  # elements → (bad_appendages, unknown_tags, tags kept)
        b"\x05\x02LIME\x03\x02A": (1, 0, {"firm": "LIME"}),  # the second element runs past the end
        b"\x00\x02": (1, 0, {}),  # length 0
        b"\x02\x02A\x02\x12Z": (1, 0, {"bbo_weight_indicator": "Z"}),  # Firm with 1 byte, not 4
        b"\x03\x63ab\x02\x12Z": (0, 1, {"bbo_weight_indicator": "Z"}),  # unknown tag 99 skipped
    }
    for els, (nbad, nunknown, tags) in cases.items():
        p = base + struct.pack(">H", len(els)) + els
        got, c = run_index("5.0", "out", [p])
        assert got[0]["appendage"] == tags and (c["bad_appendages"], c["unknown_tags"]) == (nbad, nunknown)
        assert got[0].get("appendage_malformed", False) == bool(nbad)
        if nbad:
            with pytest.raises(R.BadAppendage):
                R.decode("5.0", "out", p)


def test_trap_21_u_depends_on_direction():
    replace = encode("4.2", "in", "U", existing_order_token="A1", replacement_order_token="A2", shares=100)
    replaced = encode("4.2", "out", "U", replacement_order_token="A2", previous_order_token="A1", shares=100)
    assert (len(replace), len(replaced)) == (47, 80)
    assert R.decode("4.2", "in", replace)["replacement_order_token"] == "A2"
    assert R.decode("4.2", "out", replaced)["previous_order_token"] == "A1"
    assert run_index("4.2", "out", [replace])[1]["bad_lengths"] == 1
    assert run_index("4.2", "in", [replaced])[1]["bad_lengths"] == 1


def test_trap_22_outbound_5_0_parsed_by_length():
    short = encode("5.0", "out", "C", user_ref_num=9, quantity=3, reason="U")
    long = encode("5.0", "out", "C", user_ref_num=9, quantity=3, reason="U", appendage={"user_ref_idx": 4})
    d31 = encode("5.0", "out", "D", user_ref_num=5, execution_price=10)
    d34 = encode("5.0", "out", "D", user_ref_num=5, execution_price=10, aiq_strategy="X")
    assert [len(x) for x in (short, long, d31, d34)] == [18, 23, 31, 34]
    got, c = run_index("5.0", "out", [short, long, d31, d34, short + b"\x00", d34[:-1]])
    assert [g["appendage"] for g in got] == [{}, {"user_ref_idx": 4}, {}, {}]
    assert [got[2]["aiq_strategy"], got[3]["aiq_strategy"]] == ["", "X"] and c["bad_lengths"] == 2
    d37, d38 = encode("4.2", "out", "D", decrement_shares=1), encode("4.2", "out", "D", aiq_strategy="Y")
    assert [g.get("aiq_strategy") for g in run_index("4.2", "out", [d37, d38])[0]] == ["", "Y"]


def test_soup_framing():
    a = encode("5.0", "out", "S", timestamp=1, event_code="S")
    stream = b"\x00\x01H" + soup(b"S", [a]) + b"\x00\x1fA" + b" " * 30 + b"\x00\x01?" + soup(b"S", [a])
    got, c, left = run_stream("5.0", "out", stream + b"\x00\x0bS" + a[:4])
    assert len(got) == 2 and left == b"\x00\x0bS" + a[:4]
    assert (c["sequenced"], c["heartbeats"], c["login_packets"], c["unknown_packets"]) == (2, 1, 1, 1)
    t = ouch.OuchTables("5.0", "out", 1)
    buf = np.frombuffer(soup(b"S", [a, a]) + b"\x00\x00", np.uint8)
    assert ouch.decode_soup_stream(buf, 0, buf.size, t) == 13 and t.full  # stops when full
    t.clear()
    assert ouch.decode_soup_stream(buf, 13, buf.size, t) == 26 and t.full
    t.clear()
    with pytest.raises(ValueError, match="length 0 at byte 26"):
        ouch.decode_soup_stream(buf, 26, buf.size, t)
    assert t.count == 0 and t.counters[ouch.BAD_FRAMES] == 1 and t.counters[ouch.DECODED] == 2
    with pytest.raises(ValueError, match="direction"):
        ouch.decode_soup_stream(buf, 0, buf.size, t, "in")
    t = ouch.OuchTables("5.0", "out", 4)  # offsets outside the buffer are bad lengths, not crashes
    assert ouch.decode_messages(np.frombuffer(a, np.uint8), np.array([5, -1]), np.array([9, 2]), 2, t) == 2
    assert t.count == 0 and t.counters[ouch.BAD_LENGTHS] == 2


def test_encode_rejects_what_does_not_fit():
    for kw, field in (({"quantity": 2**32}, "quantity"), ({"quantity": -1}, "quantity"), ({"symbol": "TOOLONGSY"},
                      "symbol"), ({"cl_ord_id": "é"}, "cl_ord_id"), ({"price": 1.5}, "price"),
                      ({"bogus": 1}, "bogus"), ({"appendage": {"peg_offset": 2**31}}, "peg_offset"),
                      ({"appendage": {"nope": 1}}, "nope"), ({"quantity": True}, "quantity")):
        with pytest.raises(ValueError, match=field):
            encode("5.0", "in", "O", **kw)
    with pytest.raises(ValueError, match="appendage"):
        encode("4.2", "in", "O", appendage={})
    with pytest.raises(ValueError, match="message type"):
        encode("5.0", "in", "A")
    assert encode("5.0", "in", "X", user_ref_num=1) == b"X\x00\x00\x00\x01\x00\x00\x00\x00"
    assert encode("5.0", "in", "Q", appendage={}) == b"Q"  # optional appendage: short form when empty
    assert encode("5.0", "in", "Q", appendage={"user_ref_idx": 1}) == b"Q\x00\x03\x02\x1c\x01"


# -------------------------------------------------------------------------- real captures (§6.7)
def tcp_payload(path) -> bytes:
    """The TCP payload of a one-frame pcap: pcap record → Ethernet (802.1Q) → IPv4 total length → TCP."""
    raw = open(path, "rb").read()
    assert raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")  # little-endian µs / ns pcap
    caplen = struct.unpack_from("<I", raw, 24 + 8)[0]
    frame = raw[40 : 40 + caplen]
    l2 = 18 if frame[12:14] == b"\x81\x00" else 14
    ihl, total = (frame[l2] & 15) * 4, struct.unpack_from(">H", frame, l2 + 2)[0]
    tcp = l2 + ihl
    return frame[tcp + (frame[tcp + 12] >> 4) * 4 : l2 + total]  # frames may carry a 16-byte trailer


CAP = os.path.join(PCAPS, "omi", "ouch50", "Nasdaq.Nsm.Ouch.v5.0")

# Read by hand from `xxd` of each file: byte offsets are file offsets (the TCP payload starts at 0x62 in
# EnterOrderMessage.pcap: 40 pcap bytes + 18 Ethernet/VLAN + 20 IPv4 + 20 TCP; at 0x5e in the others,
# which have no VLAN tag), read at the offsets of the OUCH 5.0 specification (docs/protocols.md §6.3).
ENTER = {  # 0x62: 00 36 = Soup length 54; 0x64: 'U'; 0x65: 4f 'O'
    "type": "O", "user_ref_num": 113,  # 0x66: 00 00 00 71
    "side": "T", "quantity": 225,  # 0x6a: 54; 0x6b: 00 00 00 e1
    "symbol": "CVLT", "price": 630_200,  # 0x6f: 43 56 4c 54 20×4; 0x77: 00 00 00 00 00 09 9d b8 ($63.0200)
    "time_in_force": "0", "display": "Y", "capacity": "A",  # 0x7f: 30; 0x80: 59; 0x81: 41
    "intermarket_sweep_eligibility": "N", "cross_type": "N",  # 0x82: 4e; 0x83: 4e
    "cl_ord_id": "H8FUB8IV",  # 0x84..0x91: 48 38 46 55 42 38 49 56 20×6
    "appendage": {"firm": "LIME"},  # 0x92: 00 06 = 6 bytes; 0x94: 05 (1 + 4) 02 (Firm) 4c 49 4d 45
}
ACCEPTED = {  # 0x5e: 00 4a = Soup length 74; 0x60: 'S'; 0x61: 41 'A'
    "type": "A", "timestamp": 44_647_483_486_087,  # 0x62: 00 00 28 9b 4d 64 af 87 (12:24:07.48)
    "user_ref_num": 7_682_701, "side": "B",  # 0x6a: 00 75 3a 8d; 0x6e: 42
    "quantity": 40, "symbol": "ADBE",  # 0x6f: 00 00 00 28; 0x73: 41 44 42 45 20×4
    "price": 4_777_800,  # 0x7b: 00 00 00 00 00 48 e7 48 ($477.7800)
    "time_in_force": "5", "display": "Y",  # 0x83: 35; 0x84: 59
    "order_reference_number": 257_340_661,  # 0x85: 00 00 00 00 0f 56 b4 f5
    "capacity": "A", "intermarket_sweep_eligibility": "N",  # 0x8d: 41; 0x8e: 4e
    "cross_type": "N", "order_state": "L",  # 0x8f: 4e; 0x90: 4c
    "cl_ord_id": "7682701",  # 0x91..0x9e: 37 36 38 32 37 30 31 20×7
    "appendage": {"firm": "MLRO", "bbo_weight_indicator": "0"},  # 0x9f: 00 09; 0xa1: 05 02 4d4c524f; 0xa7: 02 12 30
}
CANCELED = {  # 0x5e: 00 13 = Soup length 19; 0x60: 'S'; 0x61: 43 'C' — the short (2023 edition) 18-byte form
    "type": "C", "timestamp": 44_647_483_708_183,  # 0x62: 00 00 28 9b 4d 68 13 17
    "user_ref_num": 7_682_701, "quantity": 40, "reason": "U",  # 0x6a: 00 75 3a 8d; 0x6e: 00 00 00 28; 0x72: 55
    "appendage": {},
}
CANCEL = {"type": "X", "user_ref_num": 7_679_601, "quantity": 0,  # 0x5e: 00 0a; 0x60: 55 (U); 0x61: 58 (X);
          "appendage": {}}  # 0x62: 00 75 2e 71; 0x66: 00 00 00 00 — the short (9-byte) form


@pytest.mark.parametrize("name,direction,want", [
    ("EnterOrderMessage", "in", ENTER), ("OrderAcceptedMessage", "out", ACCEPTED),
    ("CanceledMessage", "out", CANCELED), ("CancelOrderMessage", "in", CANCEL),
])
def test_real_capture(name, direction, want):
    data = tcp_payload(os.path.join(CAP, name + ".pcap"))
    got, c, left = run_stream("5.0", direction, data)
    assert got == [want] and left == b"" and c["packets"] == 1 and c["unknown_tags"] == c["bad_appendages"] == 0
    assert R.decode("5.0", direction, data[3:]) == want
    assert soup(data[2:3], [encode("5.0", direction, **want)]) == data  # the encoder writes the same bytes


def test_real_heartbeats():
    for name, direction, key in (("ServerHeartbeatPacket", "out", "heartbeats"),
                                 ("ClientHeartbeatPacket", "in", "heartbeats")):
        data = tcp_payload(os.path.join(CAP, name + ".pcap"))
        assert data in (b"\x00\x01H", b"\x00\x01R")
        got, c, _ = run_stream("5.0", direction, data)
        assert got == [] and c[key] == c["packets"] == 1


def test_protocols_md_6_7_vectors():
    enter = bytes.fromhex("4f 00000071 54 000000e1 43564c5420202020 0000000000099db8 30 59 41 4e 4e"
                          " 4838465542384956202020202020 0006 05024c494d45")
    accepted = bytes.fromhex("41 0000289b4d64af87 00753a8d 42 00000028 4144424520202020 000000000048e748 35 59"
                             " 000000000f56b4f5 41 4e 4e 4c 3736383237303120202020202020 0009 05024d4c524f 021230")
    assert (len(enter), len(accepted)) == (53, 73)  # Soup length fields 54 and 74
    assert R.decode("5.0", "in", enter) == run_index("5.0", "in", [enter])[0][0] == ENTER
    assert R.decode("5.0", "out", accepted) == run_index("5.0", "out", [accepted])[0][0] == ACCEPTED


def test_ouch42_vectors_by_hand():
    """OUCH 4.2 bytes laid out by hand from the OUCH 4.2 specification (docs/protocols.md §5.2), not by the schema."""
    accepted = bytes.fromhex(
        "41" "0000289b4d64af87" + b"ABC123".hex() + "2020202020202020" "42" "00000064"  # @0 'A', @1 ts, @9 token,
        + b"AAPL    ".hex() + "0016e360" "0001869e" + b"LIME".hex() + "59"  # @23 B, @24 100, @28 stock, @36 price
        "0000000000000539" "41" "4e" "000000c8" "4e" "4c" "31")  # @40 TIF @44 firm @48 Y @49 ref @57 .. @65 BBO
    executed = bytes.fromhex("45" "0000289b4d681317" + b"ABC123".hex() + "2020202020202020" "00000032" "0016e360"
                             "52" "00000000000f4240")  # @23 shares 50, @27 price, @31 'R', @32 match 1000000
    assert (len(accepted), len(executed)) == (66, 40)
    want_a = {"type": "A", "timestamp": 44_647_483_486_087, "order_token": "ABC123", "buy_sell_indicator": "B",
              "shares": 100, "stock": "AAPL", "price": 1_500_000, "time_in_force": 99_998, "firm": "LIME",
              "display": "Y", "order_reference_number": 1337, "capacity": "A", "intermarket_sweep_eligibility": "N",
              "minimum_quantity": 200, "cross_type": "N", "order_state": "L", "bbo_weight_indicator": "1"}
    want_e = {"type": "E", "timestamp": 44_647_483_708_183, "order_token": "ABC123", "executed_shares": 50,
              "execution_price": 1_500_000, "liquidity_flag": "R", "match_number": 1_000_000}
    assert run_index("4.2", "out", [accepted, executed])[0] == [want_a, want_e]
    assert [R.decode("4.2", "out", x) for x in (accepted, executed)] == [want_a, want_e]
    assert encode("4.2", "out", **want_a) == accepted and encode("4.2", "out", **want_e) == executed


def test_walks_compile_from_memory_where_the_cache_cannot_be_written(monkeypatch):
    monkeypatch.setattr(jit.numba.config, "CACHE_DIR", "/proc/xdpfeed-cannot-write-here")
    ns = jit.load_generated("ouch_walk", ouch.generate_source)
    assert all(callable(ns[ouch.walk_name(v, d)]) for v, d in S.MESSAGES)
    itch_ns = jit.load_generated("itch_walk", itch_decoder.generate_source)  # the ITCH decoder's, likewise
    assert all(callable(itch_ns[f]) for f in ("decode_index", "decode_stream", "decode_numbered"))
