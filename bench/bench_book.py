"""Order-book benchmark: numba OrderBook.apply_stream (decode + book) against the same algorithm in C
(bench/book.c), the C++ books itch-book and itch-order-book (built by bench/contenders.py when their sources
are given), and the pure-Python reference. Prints one JSON object on stdout; progress goes to stderr.

Two synthetic days of 10M messages (cached under bench/.data/): the wide one (multicast.exchange.synthetic:
8,000 stocks, 1M orders live at peak) and the deep one (multicast.exchange.deep_day: 50 stocks, ~1,000 levels a
side, dead references, over-executions). Absolute speeds on this machine move 1.5x between sessions, so each
of `--rounds` rounds times every contender once per day, each in a fresh process and on a fresh book, in an
order that rotates by round; ratios are paired within a round and their medians reported. `--whole-process`
also times whole commands (`xdpfeed book FILE` against each driver), start-up and file reading included:
`xdpfeed book` as it runs by default (its loop exported ahead of time and started before numpy loads:
multicast.book.exported, early_start) and, as xdpfeed-numba-loop, with `--loop numba`.
`--shards N` (default 2) adds the books built on N cores (multicast.book.sharded: `xdpfeed book --threads N`), in
process and whole, with its own ratios (sharded_ratios; the C++ books use one core) and a check that it ends
the day with one book's checksum and counts.
The numba runs happen in a child process so that its peak
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
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import HERE, build_c, installed_env, log, machine, run, summary

MASK = (1 << 64) - 1
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
    from xdpfeed.multicast.book import store as S

    sizes = book.sides[:, S.SD_SIZE]
    sides = np.flatnonzero(sizes)
    n = sizes[sides]
    total = int(n.sum())
    sidx = np.repeat(sides, n)
    k = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    lv = book.levels[(book.ladder[book.sides[sidx, S.SD_START] + k] & S.HANDLE_MASK).astype(np.int64)]
    term = lv["price"].astype(U) * U(31) + lv["shares"] * U(7) + lv["orders"].astype(U)
    return int((term * ((sidx.astype(U) << U(16)) + k.astype(U) + U(1))).sum(dtype=U)), total


def order_checksum(o: np.ndarray) -> tuple[int, int]:
    """Over live orders with their references (OrderBook.live_orders_table)."""
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
    osum, on = order_checksum(book.live_orders_table())
    return {"live_orders": book.live_orders, "stored_orders": on, "levels": n_levels, "level_checksum": lsum,
            "order_checksum": osum & MASK, "stock_checksum": stock_checksum(book),
            "hash_slots": int(book.hash.size), "pool_slots": int(book.ladder.size),
            "state": [int(x) for x in book.state], "stats": {n: int(book.stats[i]) for i, n in enumerate(A.STAT_NAMES)}}


# ------------------------------------------------------------------------------------------- numba
def peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM, of its own address space). Not ru_maxrss: Linux keeps that
    across exec, so a worker started from a parent of 550 MB would say at least 550 MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def numba_worker(path: str, repeat: int, prefault: bool, module: str, check_pass: bool = True,
                 shards: int = 1) -> dict:
    """Runs in a child process (NUMBA_NRT_STATS=1): warm-up, one checked pass (unless not asked), `repeat`
    timed passes. shards > 1: the passes build a ShardedBook of that many (multicast.book.sharded), which says its
    checksum (OrderBook.checksum's digest) for the agreement check."""
    if shards > 1:
        return _sharded_worker(path, repeat, prefault, shards)
    from numba.core.runtime import rtsys

    from xdpfeed.multicast.exchange import synthetic
    from xdpfeed.multicast.itch.mapped_file import mapped

    book_mod = importlib.import_module(module)
    OrderBook, A = book_mod.OrderBook, book_mod.A

    rss_start = peak_rss_kb()
    small, _ = synthetic.generate(200_000, seed=7)
    small.flags.writeable = False  # the day is a read-only mapping: the warm-up compiles that signature
    log("numba: compile + warm-up (a small day, also through a tiny book so every growth path runs)")
    OrderBook().apply_stream(small)
    tiny = OrderBook(window=1 << 10, hash_orders=16, levels=64, events=256)
    tiny.apply_stream(small)
    assert tiny.stats[A.HASH_GROWS] and tiny.stats[A.POOL_GROWS], tiny.stat()
    del tiny, small
    gc.collect()
    data = mapped(path, populate=True)  # as bench/book.c and the contenders' drivers read it (mapped_file.h)
    rss_data = peak_rss_kb()

    check = alloc = None
    if check_pass:
        check, alloc = _checked_pass(data, OrderBook, A, rtsys)
    runs = []
    last = None
    for i in range(repeat):
        book = OrderBook()
        if prefault:
            book.prefault()
        t0 = time.perf_counter()
        book.apply_stream(data)
        runs.append(time.perf_counter() - t0)
        messages = int(book.stats[A.MESSAGES])
        log(f"numba: run {i + 1}/{repeat}: {messages / runs[-1] / 1e6:.1f} M msg/s")
        if i == repeat - 1:
            last = describe(book)
        del book
        gc.collect()
    out = summary(runs, messages)
    out.update(prefault=prefault, verify=check, last_run=last, allocation=alloc,
               memory={"peak_rss_mb": round(peak_rss_kb() / 1024, 1),
                       "rss_before_data_mb": round(rss_start / 1024, 1),
                       "rss_with_data_before_book_mb": round(rss_data / 1024, 1),
                       "day_bytes_mb": round(data.size / 2**20, 1),
                       "note": "VmHWM high-water marks of a child process that holds the day in memory and "
                               "one book at a time (the warm-up's small books are counted before the day)"})
    return out


def _sharded_worker(path: str, repeat: int, prefault: bool, shards: int) -> dict:
    from xdpfeed.multicast.book.sharded import ShardedBook
    from xdpfeed.multicast.exchange import synthetic
    from xdpfeed.multicast.itch.mapped_file import mapped

    small, _ = synthetic.generate(200_000, seed=7)
    small.flags.writeable = False
    log(f"numba, {shards} shards: compile + warm-up")
    for kw in ({}, {"window": 1 << 10, "hash_orders": 16, "levels": 64, "events": 256}):
        with ShardedBook(shards, **kw) as book:
            book.apply_stream(small)
    data = mapped(path, populate=True)
    runs = []
    for i in range(repeat):
        with ShardedBook(shards) as book:
            if prefault:
                book.prefault()
            t0 = time.perf_counter()
            book.apply_stream(data)
            runs.append(time.perf_counter() - t0)
            st = book.stat()
            log(f"numba, {shards} shards: run {i + 1}/{repeat}: {st['messages'] / runs[-1] / 1e6:.1f} M msg/s")
            last = {"shards": shards, "sha256": book.checksum(), "live_orders": st["live_orders"],
                    "messages": st["messages"], "bbo_events": st["bbo_events"]}
        gc.collect()
    out = summary(runs, last["messages"])
    out.update(prefault=prefault, last_run=last)
    return out


def _checked_pass(data, OrderBook, A, rtsys) -> tuple[dict, dict]:  # noqa: N803 — the class, as imported
    """One untimed pass: the book's description and event checksum, and what the compiled loop allocated."""
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
    check.update(consumed=consumed, event_checksum=ev.sum, events_drained=ev.n, sha256=book.checksum())
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
    return check, alloc


def bench_numba(path: str, repeat: int, prefault: bool, module: str, check_pass: bool = True,
                shards: int = 1) -> dict:
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--numba-worker", path, "--repeat", str(repeat),
           "--book-module", module, "--shards", str(shards)]
    if not prefault:
        cmd.append("--no-prefault")
    if not check_pass:
        cmd.append("--no-check")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, env=env)
    return json.loads(p.stdout)


# ----------------------------------------------------------------------------------------------- C

def check_layout(exe: str) -> None:
    """book.c's records, length table and counter names must be the numpy/Python ones."""
    from xdpfeed.multicast.book import apply as A
    from xdpfeed.multicast.book import storage
    from xdpfeed.multicast.itch.schema import LENGTHS

    got = json.loads(run([exe, "--layout"]))
    for name in ("ORDER", "HASHED", "LEVEL", "EVENT", "STOCK"):
        d = getattr(storage, name)
        want = {n: [d.fields[n][1], d.fields[n][0].itemsize] for n in d.names}
        if got[name]["size"] != d.itemsize or list(got[name]["fields"].items()) != list(want.items()):
            raise SystemExit(f"C record {name} differs from the numpy dtype: {got[name]} vs {d.itemsize} {want}")
    if got["LENGTHS"] != [int(x) for x in LENGTHS] or got["STAT_NAMES"] != A.STAT_NAMES:
        raise SystemExit("C length table or counter names differ from multicast.itch.schema.LENGTHS / "
                         "multicast.book.apply.STAT_NAMES")


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


# --------------------------------------------------------------------------------------------- days
def make_day(kind: str, args) -> tuple[str, dict]:
    """The wide day (8,000 stocks, 1M orders live at peak) or the deep one (50 stocks, ~1,000 levels a side, dead
    references, over-executions), generated once into --data-dir."""
    if kind == "wide":
        from xdpfeed.multicast.exchange import synthetic

        path = os.path.join(args.data_dir, f"book_day_{args.messages}_{args.seed}_peak{args.peak_live}_"
                                           f"recent{args.recent_share}.itch")
        meta = synthetic.generate_to_file(path, args.messages, args.seed, peak_live_orders=args.peak_live,
                                          recent_share=args.recent_share)
        return path, {"kind": "wide", "messages": meta["n_messages"], "stocks": meta["n_stocks"],
                      "itch_bytes": meta["bytes"], "peak_live": meta["peak_live"], "live_at_end": meta["live_at_end"],
                      "counts": meta["counts"], "recent_share": args.recent_share}
    from xdpfeed.multicast.exchange import deep_day

    path = os.path.join(args.data_dir, f"deep_day_{args.messages}_{args.seed}_levels{args.levels}.itch")
    meta = deep_day.generate_to_file(path, args.messages, args.seed, levels=args.levels)
    return path, {"kind": "deep", **{k: v for k, v in meta.items() if k != "key"}}


# -------------------------------------------------------------------------------------- contenders
def build_contenders(args, tmp: str) -> dict:
    """name -> executable: the C twin always (unless skipped), itch-book and itch-order-book when their sources are
    given (bench/contenders.py builds them)."""
    exes = {}
    if "c" not in args.skip_set:
        exes["c"] = build_c(args.cc, tmp, "book")
        check_layout(exes["c"])
    import contenders as K

    for name, src in (("itch-book", args.itch_book), ("itch-order-book", args.itch_order_book)):
        if not src:
            continue
        tree, commit = K.source_tree(src, os.path.join(tmp, name))
        extra = {}
        if name == "itch-book":
            fd = args.fixed_decimal or K.default_fixed_decimal(src)
            if fd is None:
                raise SystemExit("itch-book needs groovg/fixed-decimal: pass --fixed-decimal")
            pin = K.pinned_fixed_decimal(tree)
            rev = pin if pin and K.is_git_dir(fd) and K.head_commit(fd, pin) else "HEAD"
            extra["fixed_decimal"] = K.source_tree(fd, os.path.join(tmp, "fixed-decimal"), rev)[0]
        exes[name] = K.build(name, tree, tmp, args.cxx, **extra)
        log(f"{name}: built from {commit or tree}")
    return exes


def time_once(name: str, exe: str | None, path: str, args, first: bool) -> tuple[float, dict]:
    """One timed pass of one contender on one day in a fresh process: (seconds of the book work, its report)."""
    if name == "xdpfeed":
        r = bench_numba(path, 1, args.prefault, args.book_module, check_pass=first)
        return r["runs_s"][0], r
    if name == SHARDED:
        r = bench_numba(path, 1, args.prefault, args.book_module, check_pass=False, shards=args.shards)
        return r["runs_s"][0], r
    if name == "c":
        r = bench_c(exe, path, 1, args.prefault)
        return r["runs_s"][0], r
    if name == COMMAND:
        return command_seconds(path), {}
    import contenders as K

    r = K.run(exe, path)
    return r["seconds"], r


COMMAND = "xdpfeed-book-command"
SHARDED = "xdpfeed-sharded"  # a ShardedBook of --shards (`xdpfeed book --threads N` whole)
NUMBA_LOOP = "xdpfeed-numba-loop"  # whole only: `xdpfeed book FILE --loop numba`
STATS_LINE = re.compile(r"xdpfeed book: ([\d,]+) messages in ([\d.]+) s")


def book_command(path: str, *extra: str) -> list[str]:
    """`xdpfeed book FILE -T json --depth 1`, as the benchmark runs it."""
    return [sys.executable, "-m", "xdpfeed.multicast.cli", "book", path, "-T", "json", "--depth", "1", *extra]


def command_seconds(path: str) -> float:
    """`xdpfeed book FILE --stats`: the seconds its book took by its own clock (its compiled code loaded before the
    clock starts; start-up and printing outside it)."""
    cmd = book_command(path, "--stats")
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True,
                       env=installed_env())
    m = STATS_LINE.search(p.stderr)
    if m is None:
        raise SystemExit(f"no --stats line from {' '.join(cmd)}: {p.stderr[-500:]}")
    return float(m.group(2))


def whole_process(name: str, exe: str | None, path: str, shards: int) -> float:
    """Wall seconds of the whole command on the file: start-up, reading it, the book, printing. Ours runs with its
    bytecode cached, as an installed package (common.installed_env)."""
    cmd = (book_command(path) if name == "xdpfeed" else book_command(path, "--threads", str(shards)) if name == SHARDED
           else book_command(path, "--loop", "numba") if name == NUMBA_LOOP else [exe, path])
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=installed_env())
    return time.perf_counter() - t0


def agreement(day: str, path: str, first: dict, exes: dict) -> dict:
    """Untimed: numba and the C twin end the day identically (every counter and checksum); the final book's
    levels equal itch-book's (and itch-order-book's where its rules allow: a clean feed)."""
    import contenders as K

    out = {}
    nb = first["xdpfeed"][1]
    if SHARDED in first:
        sh = first[SHARDED][1]["last_run"]
        out["sharded_equals_one_book"] = sh["sha256"] == nb["verify"]["sha256"] and all(
            sh[k] == nb["verify"]["stats"][k] for k in ("messages", "bbo_events")) and \
            sh["live_orders"] == nb["verify"]["live_orders"]
    if "c" in first:
        c = first["c"][1]
        diff = compare(nb["verify"], c["verify"], (*COMPARED, "consumed", "event_checksum", "events_drained"))
        diff += ["last_run." + k for k in compare(nb["last_run"], c["last_run"], COMPARED)]
        out["numba_equals_c"] = not diff
        out["numba_c_differences"] = diff
    mine = K.xdpfeed_checksum(path)
    out["xdpfeed_book"] = mine
    for name in ("itch-book", "itch-order-book"):
        if name in first:
            r = first[name][1]
            same = (r["levels"], r["level_sum"]) == (mine["levels"], mine["level_sum"])
            note = None
            if name == "itch-order-book" and day == "deep":
                note = ("itch-order-book trusts the feed: the deep day's dead references and over-executions "
                        "corrupt its book (bench/contenders.py); its speed is still timed")
            out[name] = {"levels": r["levels"], "level_sum": r["level_sum"], "equal": same, "note": note}
    return out


def paired(times: dict, base: str) -> dict:
    """Per round, base's speed over each other contender's (their time / base's time); medians and ranges."""
    out = {}
    for name, ts in times.items():
        if name == base:
            continue
        r = [t / b for t, b in zip(ts, times[base], strict=True)]
        out[f"{base}_over_{name}"] = {"median": round(statistics.median(r), 3), "min": round(min(r), 3),
                                      "max": round(max(r), 3)}
    return out


# -------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", default="wide,deep", help="which days: wide, deep (comma-separated)")
    p.add_argument("--messages", type=int, default=10_000_000, help="messages in each synthetic day")
    p.add_argument("--peak-live", type=int, default=1_000_000, help="wide day: orders live at the day's peak")
    p.add_argument("--levels", type=int, default=1000, help="deep day: price levels a side")
    p.add_argument("--rounds", type=int, default=7, help="rounds; each times every contender once per day")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--recent-share", type=float, default=0.6,
                   help="wide day: share of D/E/X/C/U acting on one of the 256 newest orders")
    p.add_argument("--python-messages", type=int, default=300_000, help="prefix for the Python reference")
    p.add_argument("--no-prefault", dest="prefault", action="store_false",
                   help="time each fresh book with its pages untouched (as a fresh mapping leaves them); by default "
                   "every page of xdpfeed's and the C twin's book is touched before the clock, as the itch-order-book "
                   "driver sizes and zero-fills its order array before its clock")
    p.add_argument("--whole-process", action="store_true",
                   help="also time whole commands (xdpfeed book FILE against the contenders' drivers)")
    p.add_argument("--itch-book", help="groovg/itch-book mirror or source tree: a contender")
    p.add_argument("--itch-order-book", help="charles-cooper/itch-order-book mirror or source tree: a contender")
    p.add_argument("--fixed-decimal", help="groovg/fixed-decimal (itch-book's dependency; default: beside it)")
    p.add_argument("--shards", type=int, default=2,
                   help="also time a ShardedBook of this many (a power of two; 0 or 1: not)")
    p.add_argument("--cxx", default="g++")
    p.add_argument("--data-dir", default=os.path.join(HERE, ".data"), help="where generated days are cached")
    p.add_argument("--cc", default=os.environ.get("CC", "cc"))
    p.add_argument("--skip", default="", help="comma-separated: c,python")
    p.add_argument("--book-module", default="xdpfeed.multicast.book.order_book",
                   help="module whose OrderBook (and its multicast.book.apply as .A) is timed: e.g. a modified copy")
    p.add_argument("--numba-worker", metavar="ITCH_FILE", help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--no-check", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.numba_worker:
        print(json.dumps(numba_worker(args.numba_worker, args.repeat, args.prefault, args.book_module,
                                      check_pass=not args.no_check, shards=args.shards)))
        return 0
    args.skip_set = set(filter(None, args.skip.split(",")))
    days = [d for d in args.days.split(",") if d]
    result = {"benchmark": "itch_book", "machine": machine(args.cc), "rounds": args.rounds,
              "method": "each round times every contender once on each day, in a fresh process, in an order that "
                        "rotates by round; ratios are paired within a round, medians over rounds",
              "book_sizes": {"window": 1 << 22, "hash": 1 << 21, "levels": 1 << 20, "events": 1 << 16}, "days": {}}
    with tempfile.TemporaryDirectory() as tmp:
        exes = build_contenders(args, tmp)
        names = ["xdpfeed", *([SHARDED] if args.shards > 1 else []), *exes, COMMAND]
        for day in days:
            try:
                path, info = make_day(day, args)
            except ValueError as e:  # a day the generator cannot make from these options: one line
                raise SystemExit(f"bench_book: {day} day: {e}") from None
            log(f"{day} day: {path}")
            times = {n: [] for n in names}
            whole = ({n: [] for n in [*names, NUMBA_LOOP] if n not in ("c", COMMAND)} if args.whole_process
                     else None)
            first = {}
            for rnd in range(args.rounds):
                order = names[rnd % len(names):] + names[: rnd % len(names)]
                for n in order:
                    t, rep = time_once(n, exes.get(n), path, args, first=rnd == 0)
                    times[n].append(t)
                    if rnd == 0:
                        first[n] = (t, rep)
                    if whole is not None and n in whole:
                        whole[n].append(whole_process(n, exes.get(n), path, args.shards))
                if whole is not None:  # once a round, after the others
                    whole[NUMBA_LOOP].append(whole_process(NUMBA_LOOP, None, path, args.shards))
                log(f"{day} round {rnd + 1}/{args.rounds}: " + ", ".join(
                    f"{n} {info['messages'] / times[n][-1] / 1e6:.1f}M" for n in names))
            msgs = info["messages"]
            res = {"data": info, "path": path,
                   "msgs_per_s": {n: round(msgs / statistics.median(ts)) for n, ts in times.items()},
                   "seconds": {n: [round(x, 4) for x in ts] for n, ts in times.items()},
                   "ratios": paired(times, "xdpfeed"), "agreement": agreement(day, path, first, exes)}
            if SHARDED in times:  # the shards against the others, on this machine's cores (machine.cpus)
                res["sharded_ratios"] = paired({n: ts for n, ts in times.items() if n != COMMAND}, SHARDED)
            # the command's speed over its compiled loop's (the loop's time / the command's), paired by round
            res["command_over_loop"] = paired({"command": times[COMMAND], "loop": times["xdpfeed"]},
                                              "command")["command_over_loop"]
            nb = first["xdpfeed"][1]
            res["xdpfeed_allocation"] = nb["allocation"]
            res["xdpfeed_memory"] = nb["memory"]
            if whole is not None:
                med = {n: round(statistics.median(ts), 3) for n, ts in whole.items()}
                res["whole_process"] = {"seconds_median": med, "ratios": paired(whole, "xdpfeed")}
                if SHARDED in whole:
                    res["whole_process"]["sharded_ratios"] = paired(whole, SHARDED)
            result["days"][day] = res
        if "python" not in args.skip_set and days:
            path = result["days"][days[0]]["path"]
            data = np.fromfile(path, dtype=np.uint8, count=args.python_messages * 64)
            py = bench_python(data, args.python_messages, 3)
            result["python_reference"] = py
    result["targets"] = {"xdpfeed_over_itch_book_min": 1.5, "xdpfeed_over_itch_order_book_min": 1.0,
                         "xdpfeed_over_c_min": TARGET_NUMBA_OVER_C,
                         "command_over_loop_min": round(1 / 1.2, 3)}  # the command within 1.2x of its loop
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
