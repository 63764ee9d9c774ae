"""The compiled ITCH decoder agrees with the plain-Python reference on every type and every value."""

import struct

import numpy as np
import pytest

from xdpfeed.multicast.itch import output
from xdpfeed.multicast.itch import reference as itch_reference
from xdpfeed.multicast.itch.decoder import ItchTables, decode_stream
from xdpfeed.multicast.itch.schema import HEADER, MESSAGES, TYPES, check_layouts, snake
from xdpfeed.multicast.wire import counters as C

from helpers import ALL


def decode_bytes(stream: bytes, capacity=4096):
    buf = np.frombuffer(stream, dtype=np.uint8)
    out, cnt, msgs, pos = ItchTables(capacity), C.new(), [], 0
    while True:
        out.clear()
        pos, n, cut = decode_stream(buf, pos, buf.size, np.uint16(0xFFFF), out.tables, out.rows,
                                    out.order_type, out.order_row, 0, cnt)
        out.count = n
        msgs += list(output.messages(out, [], False, ALL, float("inf")))
        if n < capacity:
            return msgs, cnt, pos, cut


def framed(msgs):
    return b"".join(struct.pack(">H", len(m)) + m for m in msgs)


def test_layouts_tile_each_message():
    check_layouts()
    assert len(TYPES) == 23 and set(TYPES) == set(MESSAGES)
    assert snake("Buy/Sell Indicator") == "buy_sell_indicator" and snake("Issue Sub-Type") == "issue_sub_type"


@pytest.mark.parametrize("t", list(TYPES))
def test_agrees_with_reference_on_random_bytes(t):
    rng = np.random.default_rng(ord(t))
    size = MESSAGES[t][1]
    msgs = []
    for fill in (0x00, 0xFF, 0x20):
        msgs.append(t.encode() + bytes([fill]) * (size - 1))
    for _ in range(200):
        msgs.append(t.encode() + rng.integers(0, 256, size - 1, dtype=np.uint8).tobytes())
    got, cnt, _, _ = decode_bytes(framed(msgs))
    want = [itch_reference.decode(m) for m in msgs]
    # The reference decodes alpha as ASCII; compare bytes-for-bytes with latin-1 for non-ASCII noise.
    for g, w, m in zip(got, want, msgs, strict=True):
        for f in HEADER + MESSAGES[t][2]:
            raw = m[f.offset : f.offset + f.size]
            exp = raw.rstrip(b" ").decode("latin-1") if f.kind == "a" else int.from_bytes(raw, "big")
            assert g[f.name] == exp, (t, f.name)
            if f.kind != "a" or raw.isascii():
                assert w[f.name] == exp
        assert g["type"] == w["type"] == t
    assert cnt[C.DECODED] == len(msgs) and cnt[C.UNKNOWN_TYPES] == cnt[C.BAD_LENGTH_MESSAGES] == 0


def test_unknown_types_and_wrong_lengths_are_counted_and_skipped():
    d = b"D" + bytes(18)
    msgs, cnt, pos, cut = decode_bytes(framed([d, b"z" * 7, d[:-1], b"", d + b"\x00", d]))
    assert [m["type"] for m in msgs] == ["D", "D"]
    assert (cnt[C.UNKNOWN_TYPES], cnt[C.BAD_LENGTH_MESSAGES], cnt[C.MESSAGES]) == (1, 3, 6)
    assert cut == 0


def test_cut_record_is_reported():
    stream = framed([b"D" + bytes(18)]) + b"\x00\x13D\x00"
    msgs, cnt, pos, cut = decode_bytes(stream)
    assert len(msgs) == 1 and cut == 1 and pos == 21


def test_batches_preserve_order_across_types():
    msgs = [(t.encode() + bytes(MESSAGES[t][1] - 1)) for t in TYPES] * 50
    got, cnt, _, _ = decode_bytes(framed(msgs), capacity=37)
    assert [m["type"] for m in got] == list(TYPES) * 50
