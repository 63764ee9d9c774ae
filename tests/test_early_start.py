"""`xdpfeed book FILE` starting its book before numpy loads (multicast.book.early_start): the storage it lays out
itself is storage's, byte for byte; the book it builds is OrderBook's, through full event batches, growth, an End
of Session and a cut record; what is not a plain ITCH file is refused in detect()'s words after the run is joined."""

import json

import numpy as np
import pytest
from test_book import A, stream

from xdpfeed.capture.huge_region import HUGE_PAGE
from xdpfeed.multicast.book import early_start, exported_loops, storage
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.cli.main import main
from xdpfeed.multicast.exchange import synthetic


@pytest.fixture(scope="module")
def loops():
    from xdpfeed.multicast.book import export_build

    return exported_loops.load() or exported_loops.load(export_build.build())


def test_its_layout_is_storages():
    book = OrderBook()
    arrays = dict(zip(exported_loops.BOOK, book._args(), strict=True), stats=book.stats)
    assert set(arrays) == set(early_start.SHAPES)
    for name, a in arrays.items():
        assert early_start.SHAPES[name] == (a.shape, a.dtype.itemsize), name
    assert (early_start.SD_BEST, early_start.NO_LEVEL) == (storage.SD_BEST, storage.NO_LEVEL)
    assert (early_start.OK, early_start.NEED_EVENTS) == (storage.OK, storage.NEED_EVENTS)


def test_an_early_run_builds_an_order_books_book(loops, tmp_path):
    """More top-of-book events than a batch holds: the run starts the batch again, as a book without a listener
    does; every array ends as OrderBook's."""
    path = tmp_path / "day.itch"
    synthetic.generate_to_file(str(path), 400_000, seed=12, n_stocks=40, peak_live_orders=30_000)
    run = early_start.EarlyRun(loops, str(path))
    buf, arrays, state = run.views()
    pos, status, n_events = run.join()
    theirs = OrderBook()
    assert pos == theirs.apply_stream(np.fromfile(path, np.uint8), end_of_session=True) == buf.size
    assert status == storage.OK and theirs.stat()["bbo_events"] > storage.EVENTS
    for a, b in zip((*arrays[:2], state[0], *arrays[2:5], state[1], *arrays[5:], state[2]), theirs.storage(),
                    strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert n_events == theirs.n_events
    assert all(r.address % HUGE_PAGE == 0 for r in run.regions.values())


def _both(args, capsys):
    outs = []
    for loop in ("auto", "numba"):
        rc = main([*args, "--stats", "--loop", loop])
        cap = capsys.readouterr()
        outs.append((rc, cap.out, cap.err.splitlines()))
    (rc, out, err), (rc2, out2, err2) = outs
    assert rc == rc2 and out == out2 and err[0].endswith("; exported loop") and err2[0].endswith("; numba loop")
    assert err[1:] == err2[1:]
    return rc, out, err


def test_the_command_runs_early_and_prints_what_numba_prints(loops, tmp_path, capsys, monkeypatch):
    made = []
    init = early_start.EarlyRun.__init__
    monkeypatch.setattr(early_start.EarlyRun, "__init__", lambda self, *a: (made.append(self), init(self, *a))[1])
    path = tmp_path / "day.itch"
    synthetic.generate_to_file(str(path), 60_000, seed=3, n_stocks=12)
    rc, out, _ = _both(["book", str(path), "-T", "table", "--depth", "4"], capsys)
    assert rc == 0 and len(made) == 1 and "orders" in out
    for extra in (["--threads", "2"], ["--loop", "exported"]):  # --threads: the exported loops, not early
        assert main(["book", str(path), "-T", "table", "--depth", "4", *extra]) == 0
        assert capsys.readouterr().out == out
    assert len(made) == 2


def test_a_book_that_outgrows_the_early_storage_is_finished_by_an_exported_book(loops, tmp_path, capsys,
                                                                               monkeypatch):
    """The storage laid out far too small: the run stops for room, the ExportedBook grows it and applies the rest."""
    small = {"w": ((1 << 10,), 16), "h": ((1 << 4,), 24), "ladder": ((1 << 6,), 8), "levels": ((1 << 6,), 16),
             "lfree": ((1 << 6,), 8)}
    monkeypatch.setattr(early_start, "SHAPES", {**early_start.SHAPES, **small})
    path = tmp_path / "day.itch"
    synthetic.generate_to_file(str(path), 60_000, seed=6, n_stocks=12)
    docs = []
    for loop in ("auto", "numba"):  # numba's book has the default sizes: it never grows
        assert main(["book", str(path), "-T", "json", "--depth", "2", "--stats", "--loop", loop]) == 0
        cap = capsys.readouterr()
        assert cap.err.endswith(f"; {'exported' if loop == 'auto' else 'numba'} loop\n")
        docs.append(json.loads(cap.out))
    grown = {k: docs[0]["stats"].pop(k) for k in ("hash_grows", "pool_grows")}
    assert grown["hash_grows"] > 0 and grown["pool_grows"] > 0
    assert {k: docs[1]["stats"].pop(k) for k in ("hash_grows", "pool_grows")} == {"hash_grows": 0, "pool_grows": 0}
    assert docs[0] == docs[1]


def test_end_of_session_and_a_cut_record(loops, tmp_path, capsys, caplog):
    data = stream([A(1, "B", 100, 1000), A(2, "S", 50, 1010)]).tobytes()
    (tmp_path / "eos.itch").write_bytes(data + b"\x00\x00" + stream([A(3, "B", 7, 1001)]).tobytes())
    rc, out, _ = _both(["book", str(tmp_path / "eos.itch"), "-T", "json"], capsys)
    assert rc == 0 and json.loads(out)["stats"]["adds"] == 2
    assert caplog.text.count("end of session (a zero-length record) at byte 76: the 38 bytes after it") == 2
    (tmp_path / "cut.itch").write_bytes(data + stream([A(3, "B", 7, 1001)]).tobytes()[:-3])
    rc, out, err = _both(["book", str(tmp_path / "cut.itch"), "-T", "json"], capsys)
    assert rc == 1 and json.loads(out)["stats"]["live_orders"] == 2
    assert err[-1] == f"xdpfeed book: error: {tmp_path / 'cut.itch'}: truncated ITCH record at byte offset 76 " \
                      f"(file size {len(data) + 35})"


def test_what_is_not_itch_is_refused_after_the_run_is_joined(loops, tmp_path, capsys):
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
    assert main(["book", str(path)]) == 2
    assert capsys.readouterr().err == f"xdpfeed book: error: {path}: unknown format (not pcap, pcapng or a NASDAQ " \
                                      f"binary ITCH 5.0 file)\n"


def test_the_stats_clock_is_the_runs_not_the_commands_loading(loops, tmp_path, capsys, monkeypatch):
    """A small file's run is over before numpy has loaded: --stats counts the run, not the wait for the command to
    join it (here made 0.5 s longer)."""
    import re
    import time

    views = early_start.EarlyRun.views
    monkeypatch.setattr(early_start.EarlyRun, "views", lambda self: (time.sleep(0.5), views(self))[1])
    path = tmp_path / "day.itch"
    synthetic.generate_to_file(str(path), 2_000, seed=3, n_stocks=4)
    assert main(["book", str(path), "-T", "json", "--stats"]) == 0
    err = capsys.readouterr().err
    seconds = float(re.search(r"messages in ([\d.]+) s", err).group(1))
    assert err.endswith("; exported loop\n") and seconds < 0.25, err
