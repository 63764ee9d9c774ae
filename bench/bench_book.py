"""Order-book benchmark: numba OrderBook.apply_stream (decode + book) vs the same algorithm in C
(bench/book.c) vs the pure-Python reference. Prints one JSON object on stdout; progress goes to stderr.

A synthetic day (multicast.exchange.synthetic; default 10M messages, 1M orders live at peak; cached under
bench/.data/) is applied `--repeat` times per contender on a fresh book each time (built outside the
timed region) and the median is reported. The numba runs happen in a child process so that its peak
RSS is the book's and the day's alone, and with numba's allocation statistics on to show that the
compiled loop allocates nothing per message. Untimed, once: C's record layouts and length table must be
the numpy ones, and numba and C must end the day with the same live orders, counters, top-of-book event
stream, level, order and stock checksums (bench/book.c says how each is formed). The Python reference
runs on a prefix of the day, where it is also compared with numba (counters, every stock's depth, events).
"""

import argparse
import gc
import importlib
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import HERE, build_c, log, machine, run, summary

MASK = (1 << 64) - 1
TARGET_MSGS_PER_S = 20e6
TARGET_NUMBA_OVER_C = 0.9
COMPARED = ("live_orders", "stored_orders", "levels", "level_checksum", "order_checksum", "stock_checksum",
            "hash_slots", "pool_slots", "state", "stats")
U = np.uint64






# -------------------------------------------------------------------------------- checksums (as book.c)
class EventSum:
    """on_events callback: sum over events i (1-based) of i * (ts*3 + bid_shares*5 + ask_shares*7 +
    bid_price*11 + ask_price*13 + locate*17), mod 2**64."""

    def __init__(self):
        self.sum = 0
        self.n = 0
        self.batches = 0

    def __call__(self, ev: np.ndarray) -> None:
        term = (ev["timestamp"] * U(3) + ev["bid_shares"] * U(5) + ev["ask_shares"] * U(7)
                + ev["bid_price"].astype(U) * U(11) + ev["ask_price"].astype(U) * U(13)
                + ev["locate"].astype(U) * U(17))
        idx = np.arange(self.n + 1, self.n + ev.size + 1, dtype=U)
        self.sum = (self.sum + int((idx * term).sum(dtype=U))) & MASK
        self.n += ev.size
        self.batches += 1

    def tuples(self, events) -> None:
        """The same over the reference book's (seq, ts, bid shares, ask shares, bid px, ask px, locate) tuples."""
        for _, ts, bq, aq, bp, ap, loc in events:
            self.n += 1
            self.sum = (self.sum + self.n * (ts * 3 + bq * 5 + aq * 7 + bp * 11 + ap * 13 + loc * 17)) & MASK


def level_checksum(book) -> tuple[int, int]:
    """Sum over sides s and stored levels k of (price*31 + shares*7 + orders) * ((s << 16) + k + 1)."""
    sizes = book.s_size
    sides = np.flatnonzero(sizes)
    n = sizes[sides]
    total = int(n.sum())
    sidx = np.repeat(sides, n)
    k = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    lv = book.pool[book.s_start[sidx] + k]
    term = lv["price"].astype(U) * U(31) + lv["shares"] * U(7) + lv["orders"].astype(U)
    return int((term * ((sidx.astype(U) << U(16)) + k.astype(U) + U(1))).sum(dtype=U)), total


def order_checksum(tab: np.ndarray) -> tuple[int, int]:
    o = tab[tab["ref"] != 0]
    term = (o["ref"] * U(3) + o["price"].astype(U) * U(5) + o["shares"].astype(U) * U(7)
            + o["locate"].astype(U) * U(11) + o["side"].astype(U) * U(13))
    return int(term.sum(dtype=U)), int(o.size)


def stock_checksum(book) -> int:
    s = book.stocks
    total = int((s["symbol"] * U(3) + s["round_lot"].astype(U) * U(5) + s["trading_state"].astype(U) * U(7)
                 + s["reason"].astype(U) * U(11)).sum(dtype=U))
    w = np.arange(1, book.last.size + 1, dtype=U)
    return (total + int((book.last.reshape(-1).astype(U) * w).sum(dtype=U))) & MASK


def describe(book) -> dict:
    from xdpfeed.multicast.book import apply as A

    lsum, n_levels = level_checksum(book)
    wsum, wn = order_checksum(book.window)
    hsum, hn = order_checksum(book.hash)
    return {"live_orders": book.live_orders, "stored_orders": wn + hn, "levels": n_levels, "level_checksum": lsum,
            "order_checksum": (wsum + hsum) & MASK, "stock_checksum": stock_checksum(book),
            "hash_slots": int(book.hash.size), "pool_slots": int(book.pool.size),
            "state": [int(x) for x in book.state], "stats": {n: int(book.stats[i]) for i, n in enumerate(A.STAT_NAMES)}}


# ------------------------------------------------------------------------------------------- numba
def maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def numba_worker(path: str, repeat: int, prefault: bool, module: str) -> dict:
    """Runs in a child process (NUMBA_NRT_STATS=1): warm-up, one checked pass, `repeat` timed passes."""
    from numba.core.runtime import rtsys

    from xdpfeed.multicast.exchange import synthetic

    book_mod = importlib.import_module(module)
    OrderBook, A = book_mod.OrderBook, book_mod.A

    rss_start = maxrss_kb()
    small, _ = synthetic.generate(200_000, seed=7)
    log("numba: compile + warm-up (a small day, also through a tiny book so every growth path runs)")
    OrderBook().apply_stream(small)
    tiny = OrderBook(window=1 << 10, hash_orders=16, levels=64, events=256)
    tiny.apply_stream(small)
    assert tiny.stats[A.HASH_GROWS] and tiny.stats[A.POOL_GROWS], tiny.stat()
    del tiny, small
    gc.collect()
    data = np.fromfile(path, dtype=np.uint8)
    rss_data = maxrss_kb()

    log("numba: checked pass (untimed)")
    calls = [0]
    compiled = A.apply_stream

    def counting(*a):
        calls[0] += 1
        return compiled(*a)

    ev = EventSum()
    book = OrderBook(on_events=ev)
    A.apply_stream = counting
    s0 = rtsys.get_allocation_stats()
    consumed = book.apply_stream(data)
    s1 = rtsys.get_allocation_stats()
    A.apply_stream = compiled
    book.flush_events()
    check = describe(book)
    check.update(consumed=consumed, event_checksum=ev.sum, events_drained=ev.n)
    messages = check["stats"]["messages"]
    n_alloc = s1.alloc - s0.alloc
    alloc = {"nrt_allocations": n_alloc, "nrt_frees": s1.free - s0.free,
             "nrt_meminfo_allocations": s1.mi_alloc - s0.mi_alloc, "compiled_calls": calls[0], "messages": messages,
             "allocations_per_compiled_call": round(n_alloc / calls[0], 2),
             "per_message_allocation": n_alloc >= messages,
             "note": "NRT (numba runtime) allocations during one whole-day apply_stream. The compiled loop is entered "
                     "once per full event batch or store growth (compiled_calls); what it allocates is per entry "
                     "(meminfo wrappers of the array arguments), none per message"}
    del book
    gc.collect()

    runs = []
    last = None
    for i in range(repeat):
        book = OrderBook()
        if prefault:
            for a in (*book._args(), book.stats):
                a.fill(0)
        t0 = time.perf_counter()
        book.apply_stream(data)
        runs.append(time.perf_counter() - t0)
        log(f"numba: run {i + 1}/{repeat}: {messages / runs[-1] / 1e6:.1f} M msg/s")
        if i == repeat - 1:
            last = describe(book)
        del book
        gc.collect()
    out = summary(runs, messages)
    out.update(prefault=prefault, verify=check, last_run=last, allocation=alloc,
               memory={"peak_rss_mb": round(maxrss_kb() / 1024, 1),
                       "rss_before_data_mb": round(rss_start / 1024, 1),
                       "rss_with_data_before_book_mb": round(rss_data / 1024, 1),
                       "day_bytes_mb": round(data.size / 2**20, 1),
                       "note": "ru_maxrss high-water marks of a child process that holds the day in memory and "
                               "one book at a time (the warm-up's small books are counted before the day)"})
    return out


def bench_numba(path: str, repeat: int, prefault: bool, module: str) -> dict:
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--numba-worker", path, "--repeat", str(repeat),
           "--book-module", module]
    if prefault:
        cmd.append("--prefault")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, env=env)
    return json.loads(p.stdout)


# ----------------------------------------------------------------------------------------------- C

def check_layout(exe: str) -> None:
    """book.c's records, length table and counter names must be the numpy/Python ones."""
    from xdpfeed.multicast.book import apply as A
    from xdpfeed.multicast.book import store as S
    from xdpfeed.multicast.itch.schema import LENGTHS

    got = json.loads(run([exe, "--layout"]))
    for name, d in (("ORDER", S.ORDER), ("LEVEL", S.LEVEL), ("EVENT", A.EVENT), ("STOCK", A.STOCK)):
        want = {n: [d.fields[n][1], d.fields[n][0].itemsize] for n in d.names}
        if got[name]["size"] != d.itemsize or list(got[name]["fields"].items()) != list(want.items()):
            raise SystemExit(f"C record {name} differs from the numpy dtype: {got[name]} vs {d.itemsize} {want}")
    if got["LENGTHS"] != [int(x) for x in LENGTHS] or got["STAT_NAMES"] != A.STAT_NAMES:
        raise SystemExit("C length table or counter names differ from itch_schema.LENGTHS / book_apply.STAT_NAMES")


def bench_c(exe: str, path: str, repeat: int, prefault: bool) -> dict:
    r = json.loads(run([exe, path, "--repeat", str(repeat), *(["--prefault"] if prefault else [])]))
    out = summary([x / 1e9 for x in r["runs_ns"]], r["messages"])
    out.update(median_ns=r["median_ns"], prefault=r["prefault"], verify=r["verify"], last_run=r["last_run"])
    for i, x in enumerate(r["runs_ns"]):
        log(f"C: run {i + 1}/{repeat}: {r['messages'] / x * 1e3:.1f} M msg/s")
    return out


def compare(a: dict, b: dict, keys) -> list[str]:
    return [k for k in keys if a.get(k) != b.get(k)]


# ------------------------------------------------------------------------------------------ python
def bench_python(data: np.ndarray, messages: int, repeat: int) -> dict:
    from xdpfeed.multicast.book.order_book import OrderBook
    from xdpfeed.multicast.book.reference import ReferenceBook
    from xdpfeed.multicast.itch.reference import decode, iter_file

    raw = data[: min(data.size, messages * 64)].tobytes()
    subset = list(itertools.islice(iter_file(raw), messages))
    raw = raw[: sum(2 + len(m) for m in subset)]
    del subset
    runs = []
    for i in range(repeat):
        rb = ReferenceBook()
        gc.collect()
        t0 = time.perf_counter()
        n = 0
        for m in iter_file(raw):
            rb.apply(decode(m))
            n += 1
        runs.append(time.perf_counter() - t0)
        log(f"python: run {i + 1}/{repeat}: {n / runs[-1] / 1e3:.0f} k msg/s")
    out = summary(runs, n)
    # the same prefix through numba: counters, every stock's full depth, the event stream
    ev = EventSum()
    book = OrderBook(on_events=ev)
    book.apply_stream(np.frombuffer(raw, dtype=np.uint8))
    book.flush_events()
    rev = EventSum()
    rev.tuples(rb.events)
    st = book.stat()
    diffs = [k for k, v in rb.stats.items() if st.get(k) != v]
    if len(rb.orders) != book.live_orders:
        diffs.append("live_orders")
    if (rev.n, rev.sum) != (ev.n, ev.sum):
        diffs.append("events")
    locs = sorted(set(rb.locates()) | set(book.locates()))
    if any(rb.depth(loc, s) != book.depth(loc, s) for loc in locs for s in (0, 1)):
        diffs.append("depth")
    out["numba_matches_reference"] = not diffs
    out["compared"] = {"stats": sorted(rb.stats), "live_orders": len(rb.orders), "bbo_events": rev.n,
                       "stocks_with_depth": len(locs), "differences": diffs}
    return out


# -------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10_000_000, help="messages in the synthetic day")
    p.add_argument("--peak-live", type=int, default=1_000_000, help="orders live at the day's peak")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per contender (median reported)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--recent-share", type=float, default=0.6,
                   help="share of D/E/X/C/U acting on one of the 256 newest orders (the rest: any live order)")
    p.add_argument("--python-messages", type=int, default=300_000, help="prefix for the Python reference")
    p.add_argument("--prefault", action="store_true",
                   help="touch every page of each fresh book before timing (default: as np.zeros/calloc leave it)")
    p.add_argument("--data-dir", default=os.path.join(HERE, ".data"), help="where generated days are cached")
    p.add_argument("--cc", default=os.environ.get("CC", "cc"))
    p.add_argument("--skip", default="", help="comma-separated: c,python")
    p.add_argument("--book-module", default="xdpfeed.multicast.book.order_book",
                   help="module whose OrderBook (and its book_apply as .A) is timed: e.g. a modified copy")
    p.add_argument("--numba-worker", metavar="ITCH_FILE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.numba_worker:
        print(json.dumps(numba_worker(args.numba_worker, args.repeat, args.prefault, args.book_module)))
        return 0
    skip = set(filter(None, args.skip.split(",")))

    from xdpfeed.multicast.exchange import synthetic

    path = os.path.join(args.data_dir,
                        f"book_day_{args.messages}_{args.seed}_peak{args.peak_live}_recent{args.recent_share}.itch")
    log(f"data: {path} (generated once, then reused)")
    t0 = time.perf_counter()
    meta = synthetic.generate_to_file(path, args.messages, args.seed, peak_live_orders=args.peak_live,
                                      recent_share=args.recent_share)
    prep = time.perf_counter() - t0
    result = {
        "benchmark": "itch_book",
        "machine": machine(args.cc),
        "data": {"messages": meta["n_messages"], "stocks": meta["n_stocks"], "seed": args.seed,
                 "itch_bytes": meta["bytes"], "peak_live_orders_asked": meta["peak_live_orders"],
                 "peak_live": meta["peak_live"], "live_at_end": meta["live_at_end"], "counts": meta["counts"],
                 "recent_share": args.recent_share,
                 "prepare_s": round(prep, 3)},
        "repeat": args.repeat,
        "book_sizes": {"window": 1 << 22, "hash": 1 << 21, "levels": 1 << 20, "events": 1 << 16},
    }
    if meta["peak_live"] < 1_000_000:
        log(f"warning: only {meta['peak_live']} orders live at peak (< 1M)")

    nb = bench_numba(path, args.repeat, args.prefault, args.book_module)
    result["numba_apply_stream"] = {k: v for k, v in nb.items() if k not in ("verify", "last_run")}
    result["numba_apply_stream"]["book_module"] = args.book_module
    verify = {"numba": nb["verify"]}
    if "c" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            exe = build_c(args.cc, tmp, "book")
            check_layout(exe)
            c = bench_c(exe, path, args.repeat, args.prefault)
        result["c_book"] = {k: v for k, v in c.items() if k not in ("verify", "last_run")}
        diff = compare(nb["verify"], c["verify"], (*COMPARED, "consumed", "event_checksum", "events_drained"))
        diff += ["last_run." + k for k in compare(nb["last_run"], c["last_run"], COMPARED)]
        verify["equal"] = not diff
        verify["differences"] = diff
        verify["compared"] = list(COMPARED) + ["consumed", "event_checksum", "events_drained", "last_run"]
        if diff:
            verify["c"] = c["verify"]
            log(f"numba and C disagree on {diff}")
        else:
            log("numba and C agree: live orders, counters, events, level/order/stock checksums")
    if "python" not in skip:
        data = np.fromfile(path, dtype=np.uint8, count=args.python_messages * 64)
        result["python_reference"] = bench_python(data, args.python_messages, args.repeat)
    result["verify"] = verify

    numba_mps = nb["msgs_per_s"]
    ratios = {}
    targets = {"msgs_per_s_min": TARGET_MSGS_PER_S, "msgs_per_s_met": numba_mps >= TARGET_MSGS_PER_S}
    if "c_book" in result:
        ratios["numba_over_c"] = numba_mps / result["c_book"]["msgs_per_s"]
        targets["numba_over_c_min"] = TARGET_NUMBA_OVER_C
        targets["numba_over_c_met"] = ratios["numba_over_c"] >= TARGET_NUMBA_OVER_C
    if "python_reference" in result:
        ratios["numba_over_python"] = numba_mps / result["python_reference"]["msgs_per_s"]
    result["ratios"] = ratios
    result["targets"] = targets
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
