"""Books built on several cores (multicast.book.sharded): the shards end every input with what one OrderBook
builds, through growth, cut records, the End of Session and packet captures, and `xdpfeed book --threads N` prints
what one thread prints."""

import json

import numpy as np
import pytest
from test_book import A, D, E, stream

from xdpfeed.multicast.book.order_book import ASK, BID, OrderBook
from xdpfeed.multicast.book.sharded import ShardedBook
from xdpfeed.multicast.cli.main import main
from xdpfeed.multicast.exchange import deep_day, synthetic
from xdpfeed.multicast.itch.decoder import file_records_end
from xdpfeed.multicast.itch.pipeline import replay_into_book


def _prefix(buf, n_bytes):
    return buf[: file_records_end(buf, 0, n_bytes)[0]]


@pytest.fixture(scope="module")
def wide():
    buf, info = synthetic.generate(400_000, n_stocks=120, seed=31, peak_live_orders=30_000)
    assert set("AFECXDUPQBRHS") <= set(info["counts"])  # every message type the book reads, the system's too
    return buf


@pytest.fixture(scope="module")
def deep():
    buf, info = deep_day.generate(200_000, n_stocks=6, levels=200, seed=5)
    assert info["dead_references"] > 0 and info["over_executions"] > 0
    return buf


def assert_same_books(one: OrderBook, sharded: ShardedBook):
    """Every query a report makes gives the same answer."""
    locs = one.locates()
    assert len(locs) > 1 and sharded.locates() == locs
    storage = ("hash_grows", "pool_grows", "hash_orders")  # each shard's own store: where its orders sit, its growth
    mine, theirs = sharded.stat(), one.stat()
    assert {k: v for k, v in mine.items() if k not in storage} == {k: v for k, v in theirs.items() if k not in storage}
    assert mine.keys() == theirs.keys() and sharded.live_orders == one.live_orders
    assert sharded.checksum() == one.checksum()
    assert sharded.depths(locs) == one.depths(locs) and sharded.depths(locs, 2) == one.depths(locs, 2)
    for f in ("symbols", "trading_states", "stale_flags"):
        assert getattr(sharded, f)(locs) == getattr(one, f)(locs), f
    for loc in locs[:5]:
        assert sharded.bbo(loc) == one.bbo(loc) and sharded.symbol(loc) == one.symbol(loc)
        assert sharded.locate_of(one.symbol(loc)) == loc
        assert sharded.depth(loc, ASK, 3) == one.depth(loc, ASK, 3)
    assert sharded.system_event == one.system_event
    cols = ("ref", "price", "shares", "locate", "side")
    mine, theirs = sharded.live_orders_table(), one.live_orders_table()
    def rows(t):
        return sorted(zip(*(t[c].tolist() for c in cols), strict=True))

    assert rows(mine) == rows(theirs) and len(rows(mine)) == one.live_orders


@pytest.mark.parametrize("shards", [2, 4])
@pytest.mark.parametrize("day", ["wide", "deep"])
def test_shards_build_the_books_one_book_builds(request, day, shards):
    buf = request.getfixturevalue(day)
    one = OrderBook()
    one.apply_stream(buf)
    with ShardedBook(shards) as sharded:
        assert sharded.apply_stream(buf) == buf.size
        assert_same_books(one, sharded)
        # each shard holds its own stocks only, and applied only their messages
        for k, b in enumerate(sharded.books):
            assert b.locates() and all(loc % shards == k for loc in b.locates())
        assert sum(int(b.stats[0]) for b in sharded.books) == one.stat()["adds"]
        assert min(b.stat()["messages"] for b in sharded.books) > 0


def test_growth_in_every_shard_keeps_the_books_exact(wide):
    """Tiny stores: every shard slides its window, grows its hash and its ladder and fills its event batch, each
    resumed at the message it stopped before."""
    sizes = dict(window=512, hash_orders=16, levels=64, events=50)
    one = OrderBook(**sizes)
    one.apply_stream(wide)
    with ShardedBook(2, **sizes) as sharded:
        sharded.apply_stream(wide)
        assert_same_books(one, sharded)
        for b in sharded.books:
            st = b.stat()
            assert st["hash_grows"] >= 3 and st["pool_grows"] >= 1 and st["hash_orders"] > 0


@pytest.mark.parametrize("first_seq", [0, 1000])
def test_each_shards_events_are_one_books_events_of_its_stocks(wide, first_seq):
    """A shard's top-of-book events are exactly one book's events of its stocks, with the same sequence numbers
    (the shard counts the messages it steps over), through event batches filled over and over."""
    def collecting(**kw):
        got = []
        return got, OrderBook(events=64, on_events=lambda e: got.append(e.copy()), **kw)

    want, one = collecting()
    one.apply_stream(wide, first_seq=first_seq)
    one.flush_events()
    want = np.concatenate(want)
    assert want.size > 1000 and (first_seq == 0) == (want["seq"].max() == 0)
    for k in range(2):
        got, shard = collecting(shards=2, shard=k)
        shard.apply_stream(wide, first_seq=first_seq)
        shard.flush_events()
        mine = want[want["locate"] % 2 == k]
        assert np.array_equal(np.concatenate(got), mine)


def test_pieces_cut_records_and_the_end_of_session(wide):
    """Fed in pieces that cut records, the shards stop where one book stops (before the cut record) every time;
    an End of Session stops them all at it."""
    one = OrderBook()
    with ShardedBook(2) as sharded:
        pos_one = pos_sh = 0
        for cut in np.linspace(0, wide.size, 7)[1:].astype(int):
            pos_one = one.apply_stream(wide, pos_one, int(cut))
            pos_sh = sharded.apply_stream(wide, pos_sh, int(cut))
            assert pos_sh == pos_one
        assert pos_one == wide.size
        assert_same_books(one, sharded)
    tail = stream([A(1, "B", 100, 1000, loc=3), A(2, "S", 50, 1010, loc=4)]).tobytes()
    data = np.frombuffer(tail + b"\x00\x00" + stream([E(1, 10, loc=3), D(2, loc=4)]).tobytes(), np.uint8)
    with ShardedBook(2) as sharded:
        assert sharded.apply_stream(data, end_of_session=True) == len(tail)
        assert sharded.depth(3, BID) == [[1000, 100, 1]] and sharded.depth(4, ASK) == [[1010, 50, 1]]


def test_a_capture_through_the_shards(tmp_path):
    """A MoldUDP64 capture (the PacketIndex path): the shards build one book's books."""
    itch, pcap = str(tmp_path / "day.itch"), str(tmp_path / "day.pcap")
    synthetic.generate_to_file(itch, 60_000, seed=7, n_stocks=30, peak_live_orders=3_000, pcap_path=pcap)
    one = OrderBook()
    replay_into_book(pcap, one)
    with ShardedBook(2) as sharded:
        replay_into_book(pcap, sharded)
        assert one.stat()["messages"] == 60_000
        assert_same_books(one, sharded)


def test_each_shards_events_from_a_capture(tmp_path):
    """The PacketIndex path: a shard's top-of-book events are one book's events of its stocks, each with its
    message's MoldUDP64 sequence number, through event batches filled over and over."""
    itch, pcap = str(tmp_path / "day.itch"), str(tmp_path / "day.pcap")
    synthetic.generate_to_file(itch, 40_000, seed=9, n_stocks=20, peak_live_orders=2_000, pcap_path=pcap)

    def events_of(**kw):
        got = []
        book = OrderBook(events=64, on_events=lambda e: got.append(e.copy()), **kw)
        replay_into_book(pcap, book)
        return np.concatenate(got)

    want = events_of()
    assert want.size > 1000 and want["seq"].min() >= 1 and np.all(np.diff(want["seq"].astype(np.int64)) >= 0)
    for k in range(2):
        assert np.array_equal(events_of(shards=2, shard=k), want[want["locate"] % 2 == k])


def test_queues_from_the_shard_that_keeps_the_stock(wide):
    one = OrderBook()
    one.apply_stream(wide)
    with ShardedBook(2) as sharded:
        sharded.apply_stream(wide)
        shown = 0
        for loc in one.locates()[:6]:
            for price, _, _ in one.depth(loc, BID, 2):
                q = one.queue(loc, BID, price)
                assert np.array_equal(sharded.queue(loc, BID, price), q)
                assert sharded.queue_position(int(q["ref"][-1])) == one.queue_position(int(q["ref"][-1]))
                shown += q.size
        assert shown > 10 and sharded.queue_position(1 << 40) is None


def test_bad_shard_counts_are_refused():
    for bad in (1, 3, 6):
        with pytest.raises(ValueError, match="power of two"):
            ShardedBook(bad)
    with pytest.raises(ValueError, match="power of two"):
        OrderBook(shards=2, shard=2)


@pytest.mark.parametrize("kind", ["itch", "pcap"])
def test_cli_threads_print_what_one_thread_prints(tmp_path, capsys, kind):
    itch, pcap = str(tmp_path / "day.itch"), str(tmp_path / "day.pcap")
    synthetic.generate_to_file(itch, 80_000, seed=8, n_stocks=25, peak_live_orders=2_000, pcap_path=pcap)
    path = itch if kind == "itch" else pcap
    outs = []
    for threads in ("1", "2", "4"):
        assert main(["book", path, "-T", "json", "--depth", "3", "--threads", threads]) == 0
        outs.append(capsys.readouterr().out)
        assert main(["book", path, "--depth", "2", "--threads", threads]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[2] == outs[4] and outs[1] == outs[3] == outs[5]
    doc = json.loads(outs[0])
    assert len(doc) > 10 and doc["stats"]["adds"] > 1000


def test_cli_threads_errors(tmp_path, capsys):
    itch = str(tmp_path / "day.itch")
    synthetic.generate_to_file(itch, 2_000, seed=8, n_stocks=3, peak_live_orders=100)
    with pytest.raises(SystemExit) as e:
        main(["book", itch, "--threads", "3"])
    assert e.value.code == 2 and "--threads takes a power of two (1, 2, 4, ...), not '3'" in capsys.readouterr().err
    assert main(["book", itch, "--threads", "2", "--bbo-out", str(tmp_path / "bbo.csv")]) == 2
    assert capsys.readouterr().err == ("xdpfeed book: error: --bbo-out writes the top-of-book changes in the feed's "
                                       "order, which --threads does not keep across stocks: use one thread\n")
    assert not (tmp_path / "bbo.csv").exists()


def test_cli_threads_on_a_damaged_file(tmp_path, capsys):
    """A record cut by the file's end: with threads as with one, the books of what came before, then the one-line
    error and exit 1."""
    buf, _ = synthetic.generate(30_000, n_stocks=9, seed=4, peak_live_orders=500)
    path = tmp_path / "cut.itch"
    path.write_bytes(buf.tobytes()[:-5])
    outs = []
    for threads in ("1", "2"):
        assert main(["book", str(path), "-T", "json", "--threads", threads]) == 1
        outs.append(capsys.readouterr())
    assert outs[0] == outs[1] and "truncated ITCH record at byte offset" in outs[0].err
    assert json.loads(outs[0].out)["stats"]["adds"] > 1000
