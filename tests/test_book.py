"""The compiled order book against hand-worked cases and the plain-Python reference book."""

import csv
import glob
import json
import os
import re
import struct

import numpy as np
import pytest

from xdpfeed.capture import huge_arrays
from xdpfeed.multicast.book import report as book_report
from xdpfeed.multicast.book import storage, view
from xdpfeed.multicast.book.order_book import ASK, BID, OrderBook
from xdpfeed.multicast.book.reference import ReferenceBook
from xdpfeed.multicast.cli.main import main
from xdpfeed.multicast.exchange import deep_day, synthetic
from xdpfeed.multicast.itch import reference as R
from xdpfeed.multicast.itch.pipeline import replay_into_book

from conftest import PCAPS


def _hdr(loc, ts):
    return struct.pack(">HH", loc, 0) + ts.to_bytes(6, "big")


def A(ref, side, shares, price, loc=1, ts=1, sym=b"TEST    "):
    return b"A" + _hdr(loc, ts) + struct.pack(">Q", ref) + side.encode() + struct.pack(">I", shares) + sym + \
        struct.pack(">I", price)


def F(ref, side, shares, price, loc=1, ts=1):
    return A(ref, side, shares, price, loc, ts).replace(b"A", b"F", 1) + b"MPID"


def E(ref, n, loc=1, ts=1):
    return b"E" + _hdr(loc, ts) + struct.pack(">QIQ", ref, n, 7)


def C(ref, n, price, loc=1, ts=1):
    return b"C" + _hdr(loc, ts) + struct.pack(">QIQ", ref, n, 8) + b"Y" + struct.pack(">I", price)


def X(ref, n, loc=1, ts=1):
    return b"X" + _hdr(loc, ts) + struct.pack(">QI", ref, n)


def D(ref, loc=1, ts=1):
    return b"D" + _hdr(loc, ts) + struct.pack(">Q", ref)


def U(old, new, shares, price, loc=1, ts=1):
    return b"U" + _hdr(loc, ts) + struct.pack(">QQII", old, new, shares, price)


def stream(msgs):
    return np.frombuffer(b"".join(struct.pack(">H", len(m)) + m for m in msgs), dtype=np.uint8)


def both(msgs, **kw):
    """(compiled book, its events, reference book) after the same messages."""
    events = []
    book = OrderBook(on_events=lambda e: events.extend(e.tolist()), **kw)
    book.apply_stream(stream(msgs))
    book.flush_events()
    ref = ReferenceBook()
    for m in msgs:
        ref.apply(R.decode(m))
    return book, events, ref


def same(book, events, ref):
    locs = sorted(set(book.locates()) | set(ref.locates()))
    for loc in locs:
        for side in (BID, ASK):
            assert book.depth(loc, side) == ref.depth(loc, side), (loc, side)
    assert events == ref.events
    st = book.stat()
    assert {k: v for k, v in ref.stats.items() if v} == {k: st[k] for k in ref.stats if ref.stats[k]}
    assert book.live_orders == len(ref.orders)
    live = book.live_orders_table()  # every stored order, window and hash, with its reference
    mine = {r: [loc, sd, p, q] for r, loc, sd, p, q in
            zip(*(live[f].tolist() for f in ("ref", "locate", "side", "price", "shares")), strict=True)}
    assert len(mine) == live.size and mine == ref.orders


def test_replace_of_a_replaced_order():
    book, ev, ref = both([A(1, "B", 100, 1000), U(1, 2, 80, 1010, ts=2), U(2, 3, 60, 990, ts=3), E(3, 10, ts=4)])
    assert book.depth(1, BID) == [[990, 50, 1]] and book.live_orders == 1
    assert book.stat()["replaces"] == 2 and book.stat()["unknown_refs"] == 0
    assert ev == [(0, 1, 100, 0, 1000, 0, 1), (0, 2, 80, 0, 1010, 0, 1), (0, 3, 60, 0, 990, 0, 1),
                  (0, 4, 50, 0, 990, 0, 1)]
    same(book, ev, ref)


def test_partial_executions_down_to_zero_remove_the_order():
    book, ev, ref = both([A(1, "S", 100, 500), A(2, "S", 10, 500), E(1, 30), E(1, 30), C(1, 40, 499)])
    assert book.depth(1, ASK) == [[500, 10, 1]] and book.stat()["executions"] == 3
    assert book.stat()["over_executions"] == 0
    same(book, ev, ref)


def test_execution_with_price_does_not_move_the_order():
    book, ev, ref = both([A(1, "B", 100, 1000), C(1, 10, 1234)])
    assert book.depth(1, BID) == [[1000, 90, 1]]
    same(book, ev, ref)


def test_cancel_larger_than_remaining_is_an_anomaly_and_removes():
    book, ev, ref = both([A(1, "B", 100, 1000), A(2, "B", 5, 999), X(1, 150)])
    assert book.depth(1, BID) == [[999, 5, 1]]
    assert book.stat()["over_cancels"] == 1 and book.stat()["cancels"] == 1
    same(book, ev, ref)


def test_duplicate_add_and_unknown_references_are_counted():
    book, ev, ref = both([A(1, "B", 100, 1000), F(1, "S", 7, 2000), D(42), E(43, 1), X(44, 1), U(45, 46, 1, 1)])
    st = book.stat()
    assert (st["duplicate_adds"], st["unknown_refs"], st["live_orders"]) == (1, 4, 1)
    assert book.depth(1, ASK) == []
    same(book, ev, ref)


def test_reference_zero_is_never_an_order():
    """0 marks empty slots inside the book: a message naming it must not find one."""
    book, ev, ref = both([A(1, "B", 100, 1000), D(0), E(0, 5), X(0, 1), C(0, 1, 1), U(0, 2, 5, 5), A(0, "S", 1, 1)])
    st = book.stat()
    assert (st["unknown_refs"], st["zero_refs"], st["live_orders"], st["deletes"], st["executions"]) == (5, 1, 1, 0, 0)
    same(book, ev, ref)


def test_levels_aggregate_and_sort_best_first():
    msgs = [A(i, "B", 10 * i, 1000 + (i % 5)) for i in range(1, 21)] + \
        [A(100 + i, "S", i, 2000 - (i % 7), loc=2) for i in range(1, 15)]
    book, ev, ref = both(msgs)
    assert [p for p, _, _ in book.depth(1, BID)] == [1004, 1003, 1002, 1001, 1000]
    assert book.depth(1, BID, 1) == [[1004, 10 * (4 + 9 + 14 + 19), 4]]
    assert [p for p, _, _ in book.depth(2, ASK)] == [1994, 1995, 1996, 1997, 1998, 1999, 2000]
    same(book, ev, ref)


def test_prefault_changes_no_value():
    """prefault() writes every page of the storage onto itself: the book, its empty sides' marks included, is as
    it was and goes on the same."""
    book, _, ref = both([A(1, "B", 100, 1000), A(2, "S", 50, 1010), D(1)])
    before = [a.copy() for a in book.storage()]
    book.prefault()
    assert all(np.array_equal(a, b) for a, b in zip(book.storage(), before, strict=True))
    book.apply_stream(stream([A(3, "B", 7, 999)]))
    assert book.depth(1, BID) == [[999, 7, 1]] and book.depth(1, ASK) == [[1010, 50, 1]]


def test_prefault_in_the_background_while_the_book_is_used(day):
    """A Feed's start-up populates its book from a thread while messages already arrive: the book ends the same as
    one that was never prefaulted."""
    end = whole_prefix(day, 2_000_000)
    quiet = OrderBook()
    quiet.apply_stream(day, 0, end)
    book = OrderBook()
    thread = book.prefault(background=True)
    book.apply_stream(day, 0, end)
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert book.stat() == quiet.stat() and book.stat()["messages"] > 50_000
    assert sorted(book.live_orders_table().tolist()) == sorted(quiet.live_orders_table().tolist())
    assert book.depths(book.locates()) == quiet.depths(quiet.locates())


def test_the_book_command_populates_the_storage_only_for_an_input_that_fills_it(tmp_path, monkeypatch, capsys):
    """Populating the whole storage pays for a day's file and costs a small one (cli/main.py has the numbers): the
    command populates it for an input at least as large as the storage, a file's from the start (the next test), a
    source's from a thread beside the loop, and not below."""
    path = tmp_path / "small.itch"
    synthetic.generate_to_file(str(path), 2_000, seed=3)
    calls, made = [], []
    monkeypatch.setattr(OrderBook, "prefault", lambda self, background=False: calls.append(background))
    monkeypatch.setattr(huge_arrays, "Prefaulting", lambda arrays: made.append(arrays))
    source = "pcap:" + os.path.join(PCAPS, "omi", "itch50", "Multiple.Packets.pcap")
    for given in (str(path), source):
        assert main(["book", given, "-T", "json"]) == 0
    assert calls == [] and made == [] and OrderBook().storage_bytes > 100 * os.path.getsize(path)
    monkeypatch.setattr(OrderBook, "storage_bytes", property(lambda self: 1))
    assert main(["book", source, "-T", "json"]) == 0
    assert calls == [True] and made == []
    capsys.readouterr()


@pytest.mark.parametrize("loop", ["exported", "numba"])
def test_the_book_command_faults_a_large_files_storage_in_while_its_code_loads(tmp_path, monkeypatch, capsys, loop):
    """For a file at least as large as the book's storage, the command makes the storage before it loads numba and the
    book's code, and has its pages faulted in meanwhile (capture.huge_arrays.Prefaulting), handed over before the
    book is used: the book, one per shard with --threads, is built in that storage and prints what it would have."""
    path = tmp_path / "day.itch"
    synthetic.generate_to_file(str(path), 20_000, seed=5)
    assert main(["book", str(path), "-T", "json", "--loop", loop]) == 0
    plain = capsys.readouterr().out
    made, books, init = [], [], view.BookView.__init__

    class Recording(huge_arrays.Prefaulting):
        def __init__(self, arrays):
            self.arrays, self.handed = arrays, False
            made.append(self)
            super().__init__(arrays)

        def handover(self):
            self.handed = True
            return super().handover()

    monkeypatch.setattr(huge_arrays, "Prefaulting", Recording)
    monkeypatch.setattr(view.BookView, "__init__", lambda self, *a, **k: (books.append(self), init(self, *a, **k))[1])
    monkeypatch.setattr(storage.Arrays, "nbytes", property(lambda self: 1))  # any file fills it
    for threads in ("1", "2"):
        assert main(["book", str(path), "-T", "json", "--threads", threads, "--loop", loop]) == 0
        assert capsys.readouterr().out == plain
    assert len(books) == 3 and all(type(b).__name__ == ("ExportedBook" if loop == "exported" else "OrderBook")
                                   for b in books)
    two = made[-1]
    assert two.handed and len(two.arrays) == 16
    assert two.arrays[0] is books[1].window and two.arrays[8] is books[2].window
    if loop == "exported":  # one book starts before numpy loads, on storage of its own (tests/test_early_start.py)
        assert len(made) == 1
        return
    one, b = made[0], books[0]
    assert len(made) == 2 and one.handed and len(one.arrays) == 8
    assert all(x is y for x, y in zip(one.arrays, [b.window, b.hash, b.ladder, b.levels, b.lfree, b.last, b.stocks,
                                                   b.events], strict=True))


def test_joined_mid_day_the_first_add_names_the_stock():
    """Without a directory message a stock is named by its first add, on either side; later adds do not rename it,
    a directory message does, and one seen before the adds is kept."""
    r = b"R" + _hdr(9, 1) + b"AAPL    " + b"Q" + b"N" + struct.pack(">I", 100) + b"N" + b"C" + b"Z " + \
        b"P" + b"N" + b"N" + b"1" + b"N" + struct.pack(">I", 1) + b"N"
    book = OrderBook()
    book.apply_stream(stream([A(1, "S", 10, 500, loc=3, sym=b"MSFT    "), A(2, "B", 10, 400, loc=3, sym=b"OTHER   "),
                              D(1, loc=3), A(3, "S", 10, 501, loc=3, sym=b"ANOTHER "),
                              A(4, "B", 10, 100, loc=5, sym=b"IBM     "), r, A(5, "B", 1, 1, loc=9, sym=b"NOTAAPL ")]))
    assert book.symbol(3) == "MSFT" and book.symbol(5) == "IBM" and book.symbol(9) == "AAPL"
    book.apply_stream(stream([r.replace(_hdr(9, 1), _hdr(3, 2)).replace(b"AAPL    ", b"MSFT.B  ")]))
    assert book.symbol(3) == "MSFT.B" and book.locate_of("MSFT") is None


def test_directory_trading_state_and_stale_flag():
    r = b"R" + _hdr(9, 1) + b"AAPL    " + b"Q" + b"N" + struct.pack(">I", 100) + b"N" + b"C" + b"Z " + \
        b"P" + b"N" + b"N" + b"1" + b"N" + struct.pack(">I", 1) + b"N"
    h = b"H" + _hdr(9, 2) + b"AAPL    " + b"H" + b" " + b"T1  "
    s = b"S" + _hdr(0, 3) + b"Q"
    book = OrderBook()
    book.apply_stream(stream([r, h, s, A(1, "B", 1, 1, loc=9)]))
    assert book.locate_of("AAPL") == 9 and book.symbol(9) == "AAPL"
    assert book.trading_state(9) == "halted" and book.system_event == "Q"
    assert not book.is_stale(9)
    book.mark_stale(9)
    assert book.is_stale(9) and not book.is_stale(1)
    book.apply_stream(stream([A(2, "S", 5, 2, loc=1)]))
    table = book_report.as_table(book, [1, 9], None).splitlines()
    assert table[0] == "TEST  (locate 1, unknown)" and table[3] == "AAPL  (locate 9, halted)  STALE"


def replay_with_checkpoints(buf, checkpoints, **kw):
    """Apply buf in pieces, comparing all levels of all stocks with the reference after each piece."""
    events = []
    book = OrderBook(on_events=lambda e: events.extend(e.tolist()), **kw)
    ref = ReferenceBook()
    data = buf.tobytes()
    records = R.iter_file(data)
    pos = 0
    for cut in np.linspace(0, buf.size, checkpoints + 1)[1:].astype(int):
        end = book.apply_stream(buf, pos, int(cut))
        while pos < end:
            m = next(records)
            ref.apply(R.decode(m))
            pos += 2 + len(m)
        book.flush_events()
        same(book, events, ref)
    assert pos == buf.size
    return book


@pytest.fixture(scope="module")
def day():
    buf, info = synthetic.generate(2_000_000, n_stocks=200, seed=11, peak_live_orders=100_000)
    assert info["peak_live"] >= 99_000 and set("AFECXDUPQB") <= set(info["counts"])
    return buf


def test_generated_day_equals_reference(day):
    """Two million messages of every type; every level of every stock equal at 5 checkpoints."""
    book = replay_with_checkpoints(day, 5)
    for loc in book.locates():  # the generator keeps bids below and offers above each stock's mid
        bid, _, ask, _ = book.bbo(loc)
        assert not (bid and ask) or bid < ask, (loc, bid, ask)
    st = book.stat()
    assert st["unknown_refs"] == st["over_executions"] == st["over_cancels"] == st["duplicate_adds"] == 0
    assert st["hash_grows"] == st["pool_grows"] == 0


def test_whole_book_reads_equal_the_per_stock_ones(day):
    """depths(), symbols() and trading_states() (one pass for a whole book's report) give what depth(), symbol()
    and trading_state() give stock by stock, a stock without orders included."""
    book = OrderBook()
    book.apply_stream(day[: whole_prefix(day, 300_000)])
    locs = book.locates() + [65535]
    assert len(locs) > 100 and any(len(book.depth(loc, BID)) > 5 for loc in locs)
    for n in (None, 1, 5):
        assert book.depths(locs, n) == [(book.depth(loc, BID, n), book.depth(loc, ASK, n)) for loc in locs]
    assert book.symbols(locs) == [book.symbol(loc) for loc in locs] and book.symbols(locs)[0]
    assert book.trading_states(locs) == [book.trading_state(loc) for loc in locs]
    book.mark_stale(locs[1])
    assert book.stale_flags(locs) == [book.is_stale(loc) for loc in locs] and sum(book.stale_flags(locs)) == 1
    assert book.depths([], 5) == book.symbols([]) == []


def test_growth_and_window_migration_keep_the_book_exact(day):
    """Tiny stores force window slides, hash growth and level-pool compaction all day long."""
    book = replay_with_checkpoints(day[: whole_prefix(day, 400_000)], 4, window=512, hash_orders=16, levels=64,
                                   events=50)
    st = book.stat()
    assert st["hash_grows"] >= 5 and st["pool_grows"] >= 2 and st["hash_orders"] > 0


def test_deep_day_equals_reference():
    """A narrow, deep day (multicast.exchange.deep_day): 5 stocks with about 300 levels a side, flow touching
    every depth, dead references and over-executions; every level of every stock equal at 4 checkpoints,
    and the book's anomaly counters are exactly what the generator put in."""
    buf, info = deep_day.generate(300_000, n_stocks=5, levels=300, seed=3)
    book = replay_with_checkpoints(buf, 4)
    st = book.stat()
    assert info["dead_references"] > 1000 and info["over_executions"] > 100
    assert st["unknown_refs"] == info["dead_references"] and st["over_executions"] == info["over_executions"]
    assert st["live_orders"] == info["live_at_end"] and st["duplicate_adds"] == st["over_cancels"] == 0
    depth = [len(book.depth(loc, side)) for loc in book.locates() for side in (BID, ASK)]
    assert min(depth) > 250, depth  # deep: nearly every one of the 300 ticks holds orders


def whole_prefix(buf, n_bytes):
    from xdpfeed.multicast.itch.decoder import file_records_end

    return file_records_end(buf, 0, n_bytes)[0]


@pytest.mark.slow
def test_large_generated_day_equals_reference():
    buf, _ = synthetic.generate(10_000_000, seed=5, peak_live_orders=1_000_000)
    replay_with_checkpoints(buf, 10)


OMI = sorted(glob.glob(os.path.join(PCAPS, "omi", "*", "*.pcap")))


@pytest.mark.parametrize("path", OMI, ids=os.path.basename)
def test_real_captures_have_no_anomaly_but_unknown_references(path):
    book = OrderBook()
    replay_into_book(path, book)
    st = book.stat()
    assert st["messages"] > 0
    assert all(st[k] == 0 for k in ("duplicate_adds", "over_executions", "over_cancels", "bad_side", "zero_refs",
                                    "unknown_types", "bad_lengths"))


def test_cli_json_and_bbo_csv(tmp_path, capsys):
    path = tmp_path / "day.itch"
    buf, _ = synthetic.generate(20_000, n_stocks=5, seed=2, peak_live_orders=500)
    path.write_bytes(buf.tobytes())
    out_csv = tmp_path / "bbo.csv"
    rc = main(["book", str(path), "-T", "json", "--depth", "3", "--bbo-out", str(out_csv)])
    doc = json.loads(capsys.readouterr().out)
    ref = ReferenceBook()
    for m in R.iter_file(buf.tobytes()):
        ref.apply(R.decode(m))
    assert rc == 0
    for loc in ref.locates():
        sym = ref.symbols[loc]
        assert doc[sym] == {"bids": ref.depth(loc, BID, 3), "asks": ref.depth(loc, ASK, 3)}
    assert doc["stats"]["live_orders"] == len(ref.orders) and doc["stats"]["adds"] == ref.stats["adds"]
    rows = list(csv.DictReader(open(out_csv)))
    assert len(rows) == len(ref.events) == doc["stats"]["bbo_events"]
    last = rows[-1]
    seq, ts, bq, aq, bp, ap, loc = ref.events[-1]
    assert (int(last["timestamp"]), int(last["locate"]), last["symbol"], int(last["bid_price"]),
            int(last["bid_shares"]), int(last["ask_price"]), int(last["ask_shares"])) == \
        (ts, loc, ref.symbols[loc], bp, bq, ap, aq)
    rc = main(["book", str(path), "--symbol", ref.symbols[ref.locates()[0]], "--depth", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith(ref.symbols[ref.locates()[0]] + "  (locate ")


def test_cli_book_stops_at_the_end_of_session_and_reports_a_cut_record(tmp_path, capsys, caplog):
    """A NASDAQ binary file's zero-length record ends the session: the book holds what came before, what follows
    is named in a warning and never applied. A record cut short by the file's end: the book of what came before is
    printed, then one line with the record's offset and exit 1."""
    before = [A(1, "B", 100, 1000), A(2, "S", 50, 1010)]
    data = stream(before).tobytes()
    (tmp_path / "eos.itch").write_bytes(data + b"\x00\x00" + stream([A(3, "B", 7, 1001)]).tobytes())
    rc = main(["book", str(tmp_path / "eos.itch"), "-T", "json", "--stats"])
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert rc == 0 and doc["TEST"] == {"bids": [[1000, 100, 1]], "asks": [[1010, 50, 1]]}
    assert doc["stats"]["adds"] == 2 and doc["stats"]["live_orders"] == 2 and " 2 messages in " in cap.err
    assert "end of session (a zero-length record) at byte 76: the 38 bytes after it are not read" in caplog.text
    (tmp_path / "cut.itch").write_bytes(data + stream([A(3, "B", 7, 1001)]).tobytes()[:-3])
    rc = main(["book", str(tmp_path / "cut.itch"), "-T", "json"])
    cap = capsys.readouterr()
    assert rc == 1 and json.loads(cap.out)["stats"]["live_orders"] == 2
    assert cap.err == f"xdpfeed book: error: {tmp_path / 'cut.itch'}: truncated ITCH record at byte offset 76 " \
                      f"(file size {len(data) + 35})\n"


@pytest.mark.parametrize("kind", ["itch", "pcap"])
def test_cli_stats_line(tmp_path, capsys, kind):
    """`book --stats`: one stderr line with what the book applied, how long it took and what it holds."""
    itch, pcap = str(tmp_path / "day.itch"), str(tmp_path / "day.pcap")
    info = synthetic.generate_to_file(itch, 200_000, seed=3, n_stocks=5, peak_live_orders=500, pcap_path=pcap)
    rc = main(["book", itch if kind == "itch" else pcap, "-T", "json", "--stats"])
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    m = re.fullmatch(r"xdpfeed book: ([\d,]+) messages in ([\d.]+) s \(([\d.]+)M msg/s\); ([\d,]+) live orders, "
                     r"([\d,]+) top-of-book events; (exported|numba) loop\n", cap.err)
    assert rc == 0 and m, cap.err
    assert m.group(6) == ("exported" if kind == "itch" else "numba")  # a capture goes through numba
    n, seconds, rate, live, events = (float(g.replace(",", "")) for g in m.groups()[:5])
    assert n == info["n_messages"] and live == doc["stats"]["live_orders"]
    assert events == doc["stats"]["bbo_events"] > 0 and seconds > 0
    # the rate is n / seconds, both printed rounded (seconds to 1 ms, the rate to 0.01M msg/s)
    low, high = (rate - 0.005) * 1e6 * (seconds - 0.0005), (rate + 0.005) * 1e6 * (seconds + 0.0005)
    assert low * (1 - 1e-9) <= n <= high * (1 + 1e-9), (low, n, high)


def test_cli_errors(tmp_path, capsys):
    assert main(["book", "/no/such.pcap"]) == 2
    assert "No such file" in capsys.readouterr().err
    multi = os.path.join(PCAPS, "omi", "itch50", "Multiple.Packets.pcap")
    assert main(["book", multi, "--symbol", "NOPE"]) == 2
    assert "never appeared" in capsys.readouterr().err


def test_bbo_parquet(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is a test dependency; make test installs it")
    path = tmp_path / "day.itch"
    buf, _ = synthetic.generate(5_000, n_stocks=3, seed=4, peak_live_orders=100)
    path.write_bytes(buf.tobytes())
    assert main(["book", str(path), "--bbo-out", str(tmp_path / "b.parquet")]) == 0
    table = pq.read_table(tmp_path / "b.parquet").to_pydict()
    main(["book", str(path), "--bbo-out", str(tmp_path / "b.csv")])
    rows = list(csv.DictReader(open(tmp_path / "b.csv")))
    assert table["symbol"] == [r["symbol"] for r in rows] and table["bid_price"] == [int(r["bid_price"]) for r in rows]
    assert len(rows) > 100


def test_bbo_parquet_without_pyarrow_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    multi = os.path.join(PCAPS, "omi", "itch50", "Multiple.Packets.pcap")
    assert main(["book", multi, "--bbo-out", str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err
    assert "needs pyarrow" in err and err.count("\n") == 1 and not (tmp_path / "x.parquet").exists()


# -- queues: time priority within a level ------------------------------------------------------------------
def test_queue_keeps_time_priority_through_reductions_and_replaces():
    book, _, _ = both([A(1, "B", 100, 1000), A(2, "B", 200, 1000), A(3, "B", 300, 1000), A(4, "B", 50, 999),
                       X(2, 50), U(1, 5, 120, 1000), E(3, 30)])
    q = book.queue(1, BID, 1000)
    # a partial cancel and a partial execution keep their places; the replace goes to the back
    assert q.tolist() == [(2, 150), (3, 270), (5, 120)]
    assert book.queue_position(5) == (2, 420) and book.queue_position(2) == (0, 0)
    assert book.queue_position(4) == (0, 0) and book.queue_position(1) is None  # 1 was replaced
    assert book.queue(1, BID, 998).size == 0 and book.queue(1, ASK, 1000).size == 0
    book.apply_stream(stream([D(2), E(3, 270)]))  # the first two leave: the last one is first in line
    assert book.queue(1, BID, 1000).tolist() == [(5, 120)] and book.queue_position(5) == (0, 0)


@pytest.mark.parametrize("day", ["wide", "deep"])
def test_queues_equal_arrival_order(day):
    """Every sampled level's queue is its live orders in the order they arrived (the reference book keeps them in
    arrival order: a dict, added at the back, replaced to the back), on a day with dead references and
    over-executions too."""
    if day == "wide":
        buf, _ = synthetic.generate(200_000, n_stocks=40, seed=21, peak_live_orders=20_000)
    else:
        buf, _ = deep_day.generate(200_000, n_stocks=5, levels=50, seed=21)
    book = OrderBook()
    book.apply_stream(buf)
    ref = ReferenceBook()
    for m in R.iter_file(buf.tobytes()):
        ref.apply(R.decode(m))
    arrival = {}
    for r, (loc, side, price, shares) in ref.orders.items():
        arrival.setdefault((loc, side, price), []).append((r, shares))
    levels = sorted(arrival, key=lambda k: -len(arrival[k]))
    sample = levels[:20] + levels[len(levels) // 2 : len(levels) // 2 + 20]  # the longest queues and some others
    assert len(sample) == 40 and len(arrival[levels[0]]) >= 5
    for loc, side, price in sample:
        assert book.queue(loc, side, price).tolist() == arrival[(loc, side, price)], (loc, side, price)
    r, shares = arrival[levels[0]][-1]
    ahead = arrival[levels[0]][:-1]
    assert book.queue_position(r) == (len(ahead), sum(s for _, s in ahead))


def test_queue_refuses_a_side_whose_references_do_not_rise():
    """Only the side where a reference went back is refused: references may rise per stock (or per side) and not
    across the feed."""
    book, _, _ = both([A(5, "B", 100, 1000), A(7, "S", 10, 1010), A(3, "B", 100, 1000), A(2, "S", 10, 1020, loc=2)])
    assert book.stat()["refs_out_of_order"] == 1
    with pytest.raises(ValueError, match="1 add\\(s\\) to stock locate 1's bid side came with a reference below"):
        book.queue(1, BID, 1000)
    assert book.queue(1, ASK, 1010).tolist() == [(7, 10)] and book.queue(2, ASK, 1020).tolist() == [(2, 10)]


def test_cli_queue_lists_each_levels_orders_in_time_priority(tmp_path, capsys):
    path = tmp_path / "day.itch"
    path.write_bytes(stream([A(1, "B", 100, 1000), A(2, "B", 200, 1000), A(3, "S", 50, 1010), X(1, 40),
                             U(2, 4, 250, 1000)]).tobytes())
    assert main(["book", str(path), "--symbol", "TEST", "--queue", "-T", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)["TEST"]
    assert doc["bids"] == [[1000, 310, 2]] and doc["bid_queues"] == [[[1, 60], [4, 250]]]
    assert doc["ask_queues"] == [[[3, 50]]]
    assert main(["book", str(path), "--symbol", "TEST", "--queue"]) == 0
    out = capsys.readouterr().out
    assert "  bid 1000 queue: 1:60 4:250" in out.splitlines() and "  ask 1010 queue: 3:50" in out.splitlines()
    assert main(["book", str(path), "--queue"]) == 2
    assert "--queue lists the orders of each level shown: name the stocks with --symbol" in capsys.readouterr().err


def test_cli_queue_says_why_a_side_is_not_known(tmp_path, capsys):
    path = tmp_path / "day.itch"
    path.write_bytes(stream([A(5, "B", 100, 1000), A(3, "B", 100, 1000), A(6, "S", 10, 1010)]).tobytes())
    assert main(["book", str(path), "--symbol", "TEST", "--queue", "-T", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)["TEST"]
    assert doc["bid_queues"] is None and "references do not follow arrival" in doc["bid_queues_unknown"]
    assert doc["ask_queues"] == [[[6, 10]]] and "ask_queues_unknown" not in doc
