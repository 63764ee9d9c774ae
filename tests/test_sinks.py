"""Outputs: on a day with loss on both lines and both kinds of recovery, what each sink holds equals the
venue's day: byte for byte for itch: and for what ipc: subscriber processes receive (one started late,
one killed half-way), field by field for parquet:, and for dbn: read back with databento's reader and
replayed into a book that equals xdpfeed's. A failing sink is reported, counted and detached while the
feed goes on; a bad URI is one line."""

import collections
import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from xdpfeed.multicast.book.order_book import ASK, BID, OrderBook
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.itch.decoder import ItchTables, decode_stream
from xdpfeed.multicast.itch.schema import MESSAGES, TYPES
from xdpfeed.multicast.sinks.parquet import TOB_FILE, file_stem
from xdpfeed.multicast.wire import counters as C

from conftest import REPO
from helpers import eventually, venue_and_feed

HERE = os.path.dirname(os.path.abspath(__file__))
XDPFEED = [sys.executable, "-m", "xdpfeed.multicast.cli"]
LOSSY = {"loss_a": 0.1, "loss_b": 0.1, "burst_loss": 3000, "bursts": 2, "seed": 4, "rate": 100_000}


@pytest.fixture(scope="module")
def day():
    return DayStore(synthetic.generate(60_000, seed=29)[0], "SINKTEST01")


def env():
    e = dict(os.environ)
    e.pop("NUMBA_BOUNDSCHECK", None)  # subprocesses use the production build and cache
    e.pop("NUMBA_CACHE_DIR", None)
    return e


def decode_day(records: np.ndarray) -> ItchTables:
    tables, cnt = ItchTables(records.size // 12), C.new()
    _, n, _ = decode_stream(records, 0, records.size, np.uint16(0), tables.tables, tables.rows, tables.order_type,
                            tables.order_row, 0, cnt)
    tables.count = n
    return tables


def dbn_levels(path: str) -> tuple[dict, dict]:
    """Replay a DBN MBO file the standard way (A adds, C cancels the size, M modifies, R clears, T and F
    leave the book alone): {(instrument, side, price4): [shares, orders]}, and the symbology."""
    import databento as db

    store = db.DBNStore.from_file(path)
    recs = store.to_ndarray()
    orders: dict = {}
    for r in recs:
        action, side, oid = _char(r["action"]), _char(r["side"]), int(r["order_id"])
        if action == "A":
            orders[oid] = [int(r["instrument_id"]), side, int(r["price"]), int(r["size"])]
        elif action == "C":
            o = orders[oid]
            o[3] -= int(r["size"])
            if o[3] <= 0:
                del orders[oid]
        elif action == "M":
            orders[oid][2:4] = [int(r["price"]), int(r["size"])]
        elif action == "R":
            orders = {k: v for k, v in orders.items() if v[0] != int(r["instrument_id"])}
    levels = collections.defaultdict(lambda: [0, 0])
    for inst, side, price, size in orders.values():
        lv = levels[(inst, side, price // 100_000)]
        lv[0] += size
        lv[1] += 1
    symbology = {sym: int(iv[0]["symbol"]) for sym, iv in store.metadata.mappings.items()}
    return dict(levels), symbology


def _char(v) -> str:
    return v.decode() if isinstance(v, bytes) else chr(int(v))


def book_levels(book: OrderBook) -> dict:
    return {(loc, s, p): [sh, n] for loc in book.locates() for side, s in ((BID, "B"), (ASK, "A"))
            for p, sh, n in book.depth(loc, side)}


def start_subscriber(name: str, out: str, die_after: int = 0):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "ipc_subscriber.py"), name, out, str(die_after)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
    line = p.stderr.readline()
    assert line.strip() == "ready", line + p.stderr.read()
    return p


@pytest.mark.parametrize("subscribers", [2, 4])
def test_every_sink_holds_the_venues_day(day, tmp_path, subscribers):
    name = f"t{uuid.uuid4().hex[:12]}"
    outs = [f"itch:{tmp_path}/day.itch", f"dbn:{tmp_path}/day.dbn", f"parquet:{tmp_path}/pq",
            f"ipc:{name}?history=4"]
    with venue_and_feed(day, rerequest_max=1000, outputs=outs, venue=LOSSY) as (venue, feed):
        ipc = feed.sinks[-1]
        # 2: one from the start and one late; 4: two from the start, one killed half-way, one late
        subs = [start_subscriber(name, f"{tmp_path}/sub{i}") for i in range(1 if subscribers == 2 else 2)]
        killed = start_subscriber(name, f"{tmp_path}/killed", die_after=20_000) if subscribers == 4 else None
        eventually(lambda: ipc.subscribers == len(subs) + (killed is not None))
        venue.start()
        while feed.state.delivered < day.count // 2:  # this test owns the loop: half the day first
            feed.step(0.05)
        late = start_subscriber(name, f"{tmp_path}/late")  # half-way through: history, then live
        # once connected it gets the history at once (the publisher serves new subscribers while it idles too)
        eventually(lambda: feed.step(0.01) >= 0 and os.path.getsize(f"{tmp_path}/late") > 0)
        why = feed.run(until_eos=True, idle_timeout=60)
    s = feed.summary()  # once closed: what every output wrote, to its end
    assert why == "complete" and s["lost"] == 0 and s["filled_replay"] >= 6000 and s["filled_rerequest"] > 0
    assert not s["outputs_failed"] and all(o["messages"] == day.count for o in s["outputs"].values())
    records = bytes(day.records)
    # itch: byte for byte
    assert open(f"{tmp_path}/day.itch", "rb").read() == records
    # ipc: every subscriber from the start got the day byte for byte, every seq once and in order
    for p, path in [(p, f"{tmp_path}/sub{i}") for i, p in enumerate(subs)]:
        stats = json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1])
        assert open(path, "rb").read() == records
        assert (np.fromfile(path + ".seq", "<i8") == np.arange(1, day.count + 1)).all()
        assert stats["gaps"] == 0 and stats["missed"] == 0 and stats["messages"] == day.count
    # the late one: the last samples before it joined (history), then live: a gapless suffix of the day
    stats = json.loads(late.communicate(timeout=120)[0].strip().splitlines()[-1])
    seqs = np.fromfile(f"{tmp_path}/late.seq", "<i8")
    assert 1 < seqs[0] and (seqs == np.arange(seqs[0], day.count + 1)).all() and stats["gaps"] == 0
    starts = np.concatenate([[0], np.cumsum(2 + _lengths(day))])  # where message k (from 0) starts
    assert open(f"{tmp_path}/late", "rb").read() == records[int(starts[seqs[0] - 1]):]
    if killed is not None:  # killed half-way holding its samples: the feed went on (checked above) regardless
        killed.communicate(timeout=60)
        assert killed.returncode == -9
        got = open(f"{tmp_path}/killed", "rb").read()
        assert len(got) > 0 and records.startswith(got)
    # dbn: databento's reader, replayed the standard way, ends at xdpfeed's book
    levels, symbology = dbn_levels(f"{tmp_path}/day.dbn")
    book = OrderBook()
    book.apply_stream(day.records)
    assert levels == book_levels(book) and len(levels) > 100
    assert symbology and all(book.symbol(loc) == sym for sym, loc in symbology.items())
    # parquet: field by field, seq and receive time per row
    check_parquet(f"{tmp_path}/pq", day)


def _lengths(day) -> np.ndarray:
    """Length of every record of the day, in order."""
    out, p, b = [], 0, day.records
    while p < b.size:
        n = (int(b[p]) << 8) | int(b[p + 1])
        out.append(n)
        p += 2 + n
    return np.asarray(out, dtype=np.int64)


def check_parquet(directory: str, day) -> None:
    import duckdb
    import pandas
    import polars
    import pyarrow.parquet as pq

    tables = decode_day(day.records)
    positions = {}  # (type code, row) -> 1-based position in the day
    for pos, (code, row) in enumerate(zip(tables.order_type[: tables.count], tables.order_row[: tables.count],
                                          strict=True)):
        positions[(int(code), int(row))] = pos + 1
    for code, t in enumerate(TYPES):
        want = tables[t]
        path = os.path.join(directory, file_stem(t) + ".parquet")
        if not len(want):
            assert not os.path.exists(path)
            continue
        got = pq.read_table(path).to_pydict()
        assert got["seq"] == [positions[(code, r)] for r in range(len(want))]  # the day's sequence numbers
        assert all(v > 0 for v in got["receive_ns"]) and set(got["session"]) == {"SINKTEST01"}
        for f in MESSAGES[t][2]:
            col = want[f.name].tolist()
            if f.kind == "a":
                col = [v.to_bytes(f.size, "big").rstrip(b" ").decode("latin-1") for v in col]
            assert got[f.name] == col, (t, f.name)
    a = os.path.join(directory, file_stem("A") + ".parquet")
    n = len(tables["A"])
    assert len(pandas.read_parquet(a)) == n and polars.read_parquet(a).height == n
    assert duckdb.sql(f"select count(*) from '{a}'").fetchall()[0][0] == n
    tob = pq.read_table(os.path.join(directory, TOB_FILE + ".parquet"))
    tob_df = pandas.read_parquet(os.path.join(directory, TOB_FILE + ".parquet"))
    assert tob.num_rows > 0 and tob_df["seq"].is_monotonic_increasing


def test_a_failing_output_is_reported_counted_and_detached_while_the_feed_goes_on(tmp_path):
    itch, pcap = str(tmp_path / "d.itch"), str(tmp_path / "d.pcap")
    synthetic.generate_to_file(itch, 200_000, seed=6, pcap_path=pcap)
    r = subprocess.run(XDPFEED + ["run", "-a", f"pcap:{pcap}", "--out", "itch:/dev/full", "--out",
                                  f"itch:{tmp_path}/good.itch", "-T", "json", "--metrics-addr", "off", "-q"],
                       capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)
    assert r.returncode == 3, r.stderr  # the run went on; an output failed
    s = json.loads(r.stdout)
    assert s["delivered"] == 200_000 and s["exit"] == "sources exhausted"
    assert "No space left on device" in s["outputs_failed"]["itch:/dev/full"]
    assert s["consumers"]["itch:/dev/full"]["detached"] and s["consumers"]["itch:/dev/full"]["errors"] == 1
    assert open(f"{tmp_path}/good.itch", "rb").read() == open(itch, "rb").read()  # the others got everything
    assert "xdpfeed run: error: output itch:/dev/full failed: OSError: [Errno 28] No space left on device" in r.stderr


@pytest.mark.parametrize("uri, needle", [
    ("foo:bar", "unknown output 'foo:bar': scheme foo: is not one of itch:FILE, dbn:FILE, parquet:DIR, ipc:NAME"),
    ("dbn:/nonexistent/dir/x.dbn", "dbn:/nonexistent/dir/x.dbn: No such file or directory"),
    ("dbn:x.dbn?dataset=NOPE", "dataset must be one of XNAS.ITCH, XBOS.ITCH, XPSX.ITCH"),
    ("parquet:/tmp/x?row_group=many", "row_group must be an integer"),
    ("ipc:a?color=red", "unknown option 'color' for ipc"),
    ("itch:", "itch: needs FILE"),
])
def test_a_bad_output_is_one_line_and_exit_2(tmp_path, uri, needle):
    r = subprocess.run(XDPFEED + ["run", "-a", f"pcap:{REPO}/pcaps/generated/all_types.pcap", "--out", uri,
                                  "--metrics-addr", "off"], capture_output=True, text=True, env=env(), cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_tail_prints_what_decode_prints(tmp_path):
    itch, pcap = str(tmp_path / "d.itch"), str(tmp_path / "d.pcap")
    synthetic.generate_to_file(itch, 30_000, seed=8, pcap_path=pcap)
    name = f"t{uuid.uuid4().hex[:12]}"
    from xdpfeed import Feed

    with Feed(line_a=f"pcap:{pcap}", outputs=[f"ipc:{name}"]) as feed:
        tail = subprocess.Popen(XDPFEED + ["tail", f"ipc:{name}", "-c", "1000", "--type", "A,D,U"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
        eventually(lambda: feed.sinks[0].subscribers == 1, deadline=60)
        feed.run()
        out, err = tail.communicate(timeout=120)
    assert tail.returncode == 0, err
    want = subprocess.run(XDPFEED + ["decode", pcap, "-c", "1000", "--type", "A,D,U"], capture_output=True,
                          text=True, env=env(), cwd=REPO, timeout=120).stdout
    assert out == want and out.count("\n") == 1000


def test_a_c_consumer_reads_the_same_service(tmp_path):
    """examples/ipc_consumer.c, written against iceoryx2's C API, reads what a Feed publishes: every message,
    gapless, counted by type as decode counts them. iceoryx2's C library is built from source with Rust's
    cargo and crates from crates.io; PyPI's iceoryx2 wheel ships only the Python extension. Where
    `pkg-config iceoryx2-c` does not find the library the test cannot run, and says so."""
    if subprocess.run(["pkg-config", "--exists", "iceoryx2-c"]).returncode != 0:
        pytest.skip("iceoryx2's C library is not installed (pkg-config iceoryx2-c): it is built with cargo from "
                    "crates.io, which this machine cannot reach, and PyPI's wheel has no C API")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "iceoryx2-c"], capture_output=True, text=True,
                           check=True).stdout.split()
    exe = str(tmp_path / "ipc_consumer")
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(REPO, "examples", "ipc_consumer.c"), *flags], check=True)
    itch, pcap = str(tmp_path / "d.itch"), str(tmp_path / "d.pcap")
    synthetic.generate_to_file(itch, 30_000, seed=9, pcap_path=pcap)
    name = f"t{uuid.uuid4().hex[:12]}"
    from xdpfeed import Feed

    with Feed(line_a=f"pcap:{pcap}", outputs=[f"ipc:{name}"]) as feed:
        c = subprocess.Popen([exe, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert c.stderr.readline().strip() == "ready"
        feed.run()
    out, err = c.communicate(timeout=60)
    got = json.loads(out)
    summary = subprocess.run(XDPFEED + ["decode", pcap, "-T", "jsonl"], capture_output=True, text=True, env=env(),
                             cwd=REPO).stdout
    want = collections.Counter(json.loads(line)["type"] for line in summary.splitlines())
    assert c.returncode == 0 and got["messages"] == 30_000 and got["gaps"] == 0, err
    assert got["by_type"] == dict(want)
