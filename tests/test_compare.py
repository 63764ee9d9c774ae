"""`xdpfeed compare A B`: two recordings with injected differences (a changed field, a missing message, a
swapped pair, a shifted timestamp) are reported as exactly those; identical paths compare identical; captures
compare by sequence number with their receive times; DBN files record by record; bad input is one line."""

import json
import subprocess

import numpy as np
import pytest
from test_cli_run import REPO, XDPFEED, env

from xdpfeed.multicast.compare import diff, streams
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.feed.feed import Feed


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    path = str(d / "day.itch")
    synthetic.generate_to_file(path, 60_000, seed=13, pcap_path=str(d / "day.pcap"))
    return d


def records(path) -> list[bytes]:
    raw, out, i = open(path, "rb").read(), [], 0
    while i < len(raw):
        n = int.from_bytes(raw[i:i + 2], "big")
        out.append(raw[i:i + 2 + n])
        i += 2 + n
    return out


def compare(*args):
    r = subprocess.run(XDPFEED + ["compare", *map(str, args)], capture_output=True, text=True, env=env(), cwd=REPO,
                       timeout=300)
    return r.returncode, r.stdout, r.stderr


def test_injected_differences_are_reported_exactly(day, tmp_path):
    recs = records(day / "day.itch")
    b = list(recs)
    changed = bytearray(b[1000])
    changed[-1] ^= 1  # the last field of message 1001
    b[1000] = bytes(changed)
    del b[2000]  # message 2001 missing
    b[2999], b[3000] = b[3000], b[2999]  # messages 3001/3002 of A (positions after the missing one) swapped
    shifted = bytearray(b[3999])
    shifted[2 + 5 + 5] ^= 0x10  # the timestamp's last byte: 16 ns later or earlier
    b[3999] = bytes(shifted)
    (tmp_path / "b.itch").write_bytes(b"".join(b))
    code, out, err = compare(day / "day.itch", tmp_path / "b.itch", "-T", "json")
    assert code == 1, err
    r = json.loads(out)
    assert (r["identical"], r["missing"], r["extra"], r["different"]) == (False, 1, 0, 4)
    assert r["aligned_by"] == "position" and r["compared"] == len(recs) - 1
    t = lambda k: chr(recs[k][2])  # noqa: E731
    assert r["by_type"]["missing"] == {t(2000): 1}
    want = {}
    for k in (1000, 3000, 3001, 4000):
        want[t(k)] = want.get(t(k), 0) + 1
    assert r["by_type"]["different"] == want and r["by_type"]["extra"] == {}
    first = r["first_divergence"]
    assert first["seq"] == 1001 and first["a"]["type"] == t(1000) and len(first["fields"]) == 1
    assert first["a"][first["fields"][0]] != first["b"][first["fields"][0]]
    assert r["latency"] is None  # recordings carry no receive times


def test_books_differ_by_symbol(day, tmp_path):
    """An order still live at the end of the day, added with other shares on one side: that symbol's book
    differs, and only that one."""
    from xdpfeed.multicast.book.order_book import OrderBook

    recs = records(day / "day.itch")
    book = OrderBook()
    book.apply_stream(np.fromfile(day / "day.itch", dtype=np.uint8))
    live = set(book.live_orders_table()["ref"].tolist())
    k = next(k for k in range(len(recs) - 1, -1, -1)
             if recs[k][2] in b"AF" and int.from_bytes(recs[k][2 + 11:2 + 19], "big") in live)
    changed = bytearray(recs[k])
    changed[2 + 20:2 + 24] = (int.from_bytes(changed[2 + 20:2 + 24], "big") + 100).to_bytes(4, "big")  # shares
    (tmp_path / "b.itch").write_bytes(b"".join(recs[:k] + [bytes(changed)] + recs[k + 1:]))
    code, out, _ = compare(day / "day.itch", tmp_path / "b.itch", "-T", "json")
    r = json.loads(out)
    symbol = book.symbol(int.from_bytes(recs[k][3:5], "big"))
    assert code == 1 and r["different"] == 1 and r["first_divergence"]["fields"] == ["shares"]
    assert r["book"] == {"identical": False, "symbols": len(book.locates()), "symbols_different": 1,
                         "examples": [symbol]}


def test_the_same_stream_compares_identical(day):
    code, out, err = compare(f"itch:{day / 'day.itch'}", day / "day.itch")
    assert code == 0, err
    assert out.splitlines()[2].startswith("IDENTICAL") and "books: identical" in out


def test_captures_compare_by_sequence_with_receive_times(day, tmp_path):
    """A capture against itself: every message by sequence number, the same receive times; against its own
    recording: aligned by position, identical too."""
    code, out, err = compare(day / "day.pcap", f"pcap:{day / 'day.pcap'}", "-T", "json")
    assert code == 0, err
    r = json.loads(out)
    assert r["aligned_by"] == "sequence" and r["compared"] == 60_000 and r["identical"]
    lat = r["latency"]
    assert lat["messages"] == 60_000 and lat["same_time"] == 60_000 and lat["b_minus_a_ns"]["p50"] == 0
    code, out, _ = compare(day / "day.pcap", day / "day.itch", "-T", "json")
    assert code == 0 and json.loads(out)["aligned_by"] == "position"


def test_sequence_alignment_counts_missing_extra_and_different():
    """Two sides with sequence numbers: a gap on one side, one more message on the other, one changed."""
    def side(name, msgs, seqs):
        stream = np.frombuffer(b"".join(len(m).to_bytes(2, "big") + m for m in msgs), dtype=np.uint8).copy()
        return streams.Side(name, stream, streams.index(stream, name), np.array(seqs, dtype=np.int64),
                            np.arange(1, len(seqs) + 1, dtype=np.int64) * 1000)

    msg = [b"S" + bytes(10) + bytes([c]) for c in b"OSQABCDEFG"]
    a = side("a", msg[:8], [1, 2, 3, 4, 5, 6, 7, 8])
    b = side("b", [msg[0], msg[1], msg[3], b"S" + bytes(10) + b"X", msg[5], msg[6], msg[7], msg[8]],
             [1, 2, 4, 5, 6, 7, 8, 9])
    r = diff.compare(a, b, book=False)
    assert (r["aligned_by"], r["missing"], r["extra"], r["different"]) == ("sequence", 1, 1, 1)
    assert r["first_divergence"]["seq"] == 3 and r["first_divergence"]["b"] is None
    assert r["latency"]["messages"] == 6  # the equal ones: b's clock is ahead by one position after the gap


def test_overlap_cuts_both_sides_to_the_sequence_numbers_both_cover():
    """Two live handlers started and stopped at different moments: A has 3..10, B 1..8 with 6 changed. Cut to
    3..8, the edges are reported as outside, not as missing or extra, and the change is still found."""
    def side(name, seqs, changed=()):
        msgs = [b"S" + s.to_bytes(10, "big") + (b"X" if s in changed else b"O") for s in seqs]
        stream = np.frombuffer(b"".join(len(m).to_bytes(2, "big") + m for m in msgs), dtype=np.uint8).copy()
        return streams.Side(name, stream, streams.index(stream, name), np.array(seqs, dtype=np.int64),
                            np.array(seqs, dtype=np.int64) * 1000)

    a, b = side("a", list(range(3, 11))), side("b", list(range(1, 9)), changed={6})
    assert diff.compare(a, b, book=False)["missing"] == 2  # 9, 10 without the cut
    ca, cb, outside = streams.overlap(a, b)
    assert outside == {"first_seq": 3, "last_seq": 8, "a": 2, "b": 2}
    assert ca.seq.tolist() == cb.seq.tolist() == [3, 4, 5, 6, 7, 8] and ca.ts.tolist() == cb.ts.tolist()
    r = diff.compare(ca, cb, book=False)
    assert (r["missing"], r["extra"], r["different"], r["first_divergence"]["seq"]) == (0, 0, 1, 6)
    c = side("c", list(range(20, 25)))  # no overlap at all: nothing compared, everything outside
    ca, cc, outside = streams.overlap(a, c)
    assert ca.count == cc.count == 0 and (outside["a"], outside["b"]) == (8, 5)
    with pytest.raises(streams.CompareError, match="carries no sequence numbers"):
        streams.overlap(a, streams.Side("f", a.stream, a.offsets, None, None))


def test_dbn_files_compare_record_by_record(day, tmp_path):
    for name in ("a", "b"):
        with Feed(line_a=f"pcap:{day / 'day.pcap'}", outputs=[f"dbn:{tmp_path / name}.dbn"], metrics=None) as f:
            f.run()
    code, out, err = compare(f"dbn:{tmp_path / 'a.dbn'}", tmp_path / "b.dbn", "-T", "json")
    assert code == 0, err
    r = json.loads(out)
    assert r["identical"] and "book" not in r and r["latency"]["same_time"] == r["compared"] > 60_000
    raw = bytearray((tmp_path / "b.dbn").read_bytes())
    raw[-56 + 24] ^= 1  # the last record's price
    (tmp_path / "c.dbn").write_bytes(bytes(raw))
    code, out, _ = compare(tmp_path / "a.dbn", tmp_path / "c.dbn", "-T", "json")
    r = json.loads(out)
    assert code == 1 and (r["different"], r["missing"], r["extra"]) == (1, 0, 0)
    assert r["first_divergence"]["fields"] == ["price"]


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b"\x00\x0cS" + bytes(11) + b"\x00\x0cS"), "a record is cut at byte 14"),
    (lambda p: p.write_bytes(b"hello, world"), "neither an ITCH file nor a capture"),
])
def test_bad_input_is_one_line_and_exit_2(day, tmp_path, make, message):
    p = tmp_path / "x.itch"
    make(p)
    code, out, err = compare(day / "day.itch", p)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_itch_against_dbn_is_refused(day, tmp_path):
    with Feed(line_a=f"pcap:{day / 'day.pcap'}", outputs=[f"dbn:{tmp_path / 'a.dbn'}"], metrics=None) as f:
        f.run()
    code, _, err = compare(day / "day.itch", tmp_path / "a.dbn")
    assert code == 2 and "compare like with like" in err
