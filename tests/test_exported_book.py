"""The book's loops exported ahead of time (multicast.book.exported, export_build): an ExportedBook ends every input
with what an OrderBook builds from it (the same arrays, byte for byte, and the same events), through growth and
shards; `xdpfeed book` runs them without loading numba, exports them when this build has not, and says so when it
cannot."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_sharded_book import assert_same_books

from xdpfeed.capture import source_digest
from xdpfeed.multicast.book import export_build, exported, exported_loops, storage
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.book.sharded import ShardedBook
from xdpfeed.multicast.cli.main import main
from xdpfeed.multicast.exchange import deep_day, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def loops():
    """This build's exported loops: `make setup` exports them; after a change to the code, the first use does."""
    return exported_loops.load() or exported_loops.load(export_build.build())


@pytest.fixture(scope="module")
def days():
    wide, info = synthetic.generate(300_000, n_stocks=80, seed=41, peak_live_orders=20_000)
    assert set("AFECXDUPQBRHS") <= set(info["counts"])
    deep, dinfo = deep_day.generate(150_000, n_stocks=5, levels=150, seed=8)
    assert dinfo["dead_references"] > 0 and dinfo["over_executions"] > 0
    return {"wide": wide, "deep": deep}


def _events(batches):
    return np.concatenate(batches) if batches else np.zeros(0, storage.EVENT)


def _assert_identical(mine, theirs):
    """Every array of the two books' storage, byte for byte, and their event counts."""
    for a, b in zip(mine.storage(), theirs.storage(), strict=True):
        assert a.shape == b.shape and a.tobytes() == b.tobytes()
    assert mine.n_events == theirs.n_events and mine.stat() == theirs.stat()


@pytest.mark.parametrize("day", ["wide", "deep"])
def test_an_exported_book_builds_what_an_order_book_builds(loops, days, day):
    buf = days[day]
    got, want = [], []
    sizes = storage.Sizes(window=1 << 16, hash_orders=1 << 14, levels=1 << 14, events=1 << 10)
    mine = exported.ExportedBook(loops, storage.allocate(sizes), on_events=lambda e: got.append(e.copy()))
    theirs = OrderBook(*sizes, on_events=lambda e: want.append(e.copy()))
    half = buf.size // 2
    cut = mine.apply_stream(buf, 0, half)  # a record cut by `end`: both stop where it starts
    assert cut == theirs.apply_stream(buf, 0, half) < half
    assert mine.apply_stream(buf, cut) == theirs.apply_stream(buf, cut) == buf.size
    mine.flush_events()
    theirs.flush_events()
    _assert_identical(mine, theirs)
    assert mine.checksum() == theirs.checksum() and mine.live_orders > 0
    assert np.array_equal(_events(got), _events(want)) and len(got) > 1  # full batches handed out on the way
    assert mine.stat()["bbo_events"] == _events(got).size


def test_an_exported_book_grows_through_order_books_code(loops, days):
    """Storage far too small for the day: the loop stops, OrderBook's grow() enlarges it (hash, ladder, slab), the
    loop resumes, and the book ends as an OrderBook of the same sizes does."""
    sizes = storage.Sizes(window=1 << 10, hash_orders=1 << 4, levels=1 << 6, events=1 << 8)
    mine = exported.ExportedBook(loops, storage.allocate(sizes))
    theirs = OrderBook(*sizes)
    for buf in days.values():
        assert mine.apply_stream(buf) == theirs.apply_stream(buf) == buf.size
    _assert_identical(mine, theirs)
    st = mine.stat()
    assert st["hash_grows"] > 0 and st["pool_grows"] > 0 and mine.hash.size > sizes.hash_orders


def test_exported_shards_build_one_books_books(loops, days):
    one = OrderBook()
    sharded = ShardedBook(2, loops=loops)
    assert all(type(b) is exported.ExportedBook for b in sharded.books)
    buf = days["wide"]
    assert sharded.apply_stream(buf) == one.apply_stream(buf) == buf.size
    assert_same_books(one, sharded)


def test_the_exported_object_belongs_to_one_build_of_the_code(loops, monkeypatch):
    """It lives in the code's compiled folder, named by the processor: other code (another digest) finds none."""
    path = exported_loops.object_path()
    assert loops.path == path and os.path.dirname(os.path.dirname(path)) == source_digest.compiled_dir()
    assert os.path.basename(path) == f"book-{exported_loops.cpu_key()}.so"
    monkeypatch.setattr(source_digest, "_digest", "0" * 16)
    assert exported_loops.object_path() != path and exported_loops.load() is None


def _run(args, env=None):
    code = ("import sys; from xdpfeed.multicast.cli.main import main; rc = main(sys.argv[1:]); "
            "print('numba loaded' if 'numba' in sys.modules else 'no numba', file=sys.stderr); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_the_book_command_runs_the_exported_loop_without_numba(loops, tmp_path):
    """A plain ITCH file goes through the exported loop and numba is never imported; the output is --loop numba's,
    which a capture and --queue go through."""
    path = str(tmp_path / "day.itch")
    synthetic.generate_to_file(path, 50_000, seed=9, n_stocks=20)
    fast = _run(["book", path, "-T", "json", "--depth", "3", "--stats"])
    slow = _run(["book", path, "-T", "json", "--depth", "3", "--stats", "--loop", "numba"])
    assert fast.returncode == slow.returncode == 0, fast.stderr + slow.stderr
    assert fast.stderr.endswith("; exported loop\nno numba\n") and slow.stderr.endswith("; numba loop\nnumba loaded\n")
    assert fast.stdout == slow.stdout and json.loads(fast.stdout)["stats"]["adds"] > 0
    sym = next(k for k in json.loads(fast.stdout) if k != "stats")
    queued = _run(["book", path, "-T", "json", "--symbol", sym, "--queue", "--stats"])
    assert queued.returncode == 0 and queued.stderr.endswith("; numba loop\nnumba loaded\n")


def test_the_book_command_exports_the_loop_when_this_build_has_not(loops, tmp_path, monkeypatch, capsys):
    path = str(tmp_path / "day.itch")
    synthetic.generate_to_file(path, 20_000, seed=4, n_stocks=10)
    assert main(["book", path, "-T", "json", "--loop", "numba"]) == 0
    want = capsys.readouterr().out
    target = str(tmp_path / "compiled" / "exported" / "book.so")
    monkeypatch.setattr(exported_loops, "object_path", lambda: target)
    assert main(["book", path, "-T", "json", "--stats"]) == 0
    cap = capsys.readouterr()
    assert os.path.isfile(target) and cap.out == want and cap.err.endswith("; exported loop\n")
    assert exported_loops.load(target).path == target


def test_when_the_loop_cannot_be_exported_the_command_says_so(tmp_path, monkeypatch, capsys):
    """No C compiler: auto runs through numba after one line saying why; --loop exported stops with it (exit 2)."""
    path = str(tmp_path / "day.itch")
    synthetic.generate_to_file(path, 20_000, seed=4, n_stocks=10)
    assert main(["book", path, "-T", "json", "--loop", "numba"]) == 0
    want = capsys.readouterr().out
    monkeypatch.setattr(exported_loops, "object_path", lambda: str(tmp_path / "nowhere" / "book.so"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert main(["book", path, "-T", "json", "--stats"]) == 0
    cap = capsys.readouterr()
    assert cap.out == want and cap.err.startswith("xdpfeed book: note: ") and "; the book runs through numba\n" in \
        cap.err and cap.err.endswith("; numba loop\n")
    assert main(["book", path, "--loop", "exported"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xdpfeed book: error: ") and "no-such-cc" in err and err.count("\n") == 1


def test_a_cache_folder_that_cannot_be_written_is_said_in_one_line(tmp_path, monkeypatch, capsys):
    path = str(tmp_path / "day.itch")
    synthetic.generate_to_file(path, 5_000, seed=4, n_stocks=5)
    monkeypatch.setattr(exported_loops, "object_path", lambda: "/proc/xdpfeed-cannot-be/exported/book.so")
    assert main(["book", path, "-T", "json", "--stats"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("xdpfeed book: note: cannot write /proc/xdpfeed-cannot-be/exported/book.so: ")
    assert err[0].endswith("; the book runs through numba") and err[1].endswith("; numba loop")
    assert main(["book", path, "--loop", "exported"]) == 2
    assert capsys.readouterr().err.startswith("xdpfeed book: error: cannot write /proc/xdpfeed-cannot-be/")


def test_loop_exported_reads_plain_itch_files_only(tmp_path, capsys):
    pcap = str(tmp_path / "day.pcap")
    synthetic.generate_to_file(str(tmp_path / "day.itch"), 2_000, seed=4, n_stocks=3, pcap_path=pcap)
    assert main(["book", pcap, "--loop", "exported"]) == 2
    err = capsys.readouterr().err
    assert err == f"xdpfeed book: error: --loop exported reads a plain NASDAQ binary ITCH file; {pcap} is not one\n"
