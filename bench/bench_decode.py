"""ITCH decoding benchmark: numba decode_stream vs a C decoder vs the pure-Python reference, the whole
pcap → MoldUDP64 → ITCH path, and the `xdpfeed decode` command by its own clock. Prints one JSON object on
stdout; progress goes to stderr.

A synthetic day (multicast.exchange.synthetic, cached under bench/.data/) is decoded in `--repeat` rounds; each
round times numba, C (one pass in a fresh process, timed inside it), the pcap path (as Decode runs it: the next
batch read and indexed on a second core; and on one thread, `pcap_one_thread`) and the command, so that the
machine's drift falls on all of them alike, and the ratios are paired within a round (medians reported). The
earlier single-contender medians (`--repeat` passes each, not interleaved) are kept beside them. Before timing,
the C decoder's struct layout is checked against
the numpy dtypes, and C and numba must agree on per-type counts and a field-wise checksum of every
decoded table, so both do the same work. See bench/README.md for what each number means.
"""

import argparse
import itertools
import json
import os
import re
import statistics
import sys
import tempfile
import time

import numpy as np

from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.itch.decoder import ItchTables, decode_stream
from xdpfeed.multicast.itch.pipeline import FILE_FRAMES_PER_BATCH, Decode, worth_a_thread
from xdpfeed.multicast.itch.reference import decode, iter_file
from xdpfeed.multicast.itch.schema import DTYPES, TYPES
from xdpfeed.multicast.wire import counters as C

from common import HERE, build_c, log, machine, run, summary

MASK = (1 << 64) - 1
TARGET_PCAP_MSGS_PER_S = 60e6
TARGET_NUMBA_OVER_C = 1.0
COMPARED_COUNTERS = ("messages", "decoded", "unknown_types", "bad_length_messages")





# ------------------------------------------------------------------------------------------- numba
def numba_pass(data: np.ndarray, t: ItchTables, cnt: np.ndarray, on_chunk=None) -> None:
    """Decode the whole buffer, clearing the tables whenever they fill."""
    pos, end = 0, data.size
    while pos < end:
        t.rows[:] = 0
        pos, n, cut = decode_stream(data, pos, end, 0, t.tables, t.rows, t.order_type, t.order_row, 0, cnt)
        if on_chunk is not None:
            on_chunk(t, n)
        if cut:
            break


class Checksum:
    """The C decoder's checksum over numpy tables: per field i, (i + 1) × sum of values, mod 2**64."""

    def __init__(self):
        self.total = 0
        self.per_type = dict.fromkeys(TYPES, 0)
        self.counts = dict.fromkeys(TYPES, 0)
        self.counters = {}

    def __call__(self, t: ItchTables, n: int) -> None:
        for c, ty in enumerate(TYPES):
            rows = int(t.rows[c])
            tab = t.tables[c][:rows]
            h = sum((i + 1) * int(tab[f].sum(dtype=np.uint64)) for i, f in enumerate(DTYPES[ty].names)) & MASK
            self.per_type[ty] = (self.per_type[ty] + h) & MASK
            self.counts[ty] += rows
            self.total += h
        ot = t.order_type[:n].astype(np.uint64)
        order = int((ot * np.uint64(1000003) + t.order_row[:n]).sum(dtype=np.uint64))
        self.total = (self.total + order) & MASK


def bench_numba(data: np.ndarray, capacity: int, repeat: int) -> tuple[dict, Checksum]:
    t = ItchTables(capacity)
    cnt = C.new()
    log("numba: compile + warm-up")
    numba_pass(data[: min(data.size, 1 << 20)], t, cnt)
    cnt[:] = 0
    check = Checksum()
    numba_pass(data, t, cnt, check)  # untimed: the checksum compared with C, and page-faults the tables in
    check.counters = {k: int(cnt[getattr(C, k.upper())]) for k in COMPARED_COUNTERS}
    if cnt[C.UNKNOWN_TYPES] or cnt[C.BAD_LENGTH_MESSAGES] or cnt[C.DECODED] != cnt[C.MESSAGES]:
        raise SystemExit(f"the synthetic day does not decode cleanly: {C.as_dict(cnt)}")
    messages = int(cnt[C.MESSAGES])
    runs = []
    for i in range(repeat):
        t0 = time.perf_counter()
        numba_pass(data, t, cnt)
        runs.append(time.perf_counter() - t0)
        log(f"numba: run {i + 1}/{repeat}: {messages / runs[-1] / 1e6:.1f} M msg/s")
    return summary(runs, messages), check


# ----------------------------------------------------------------------------------------------- C

def check_layout(exe: str) -> None:
    """The C structs must be the numpy dtypes: same names, order, offsets, widths and sizes."""
    layout = json.loads(run([exe, "--layout"]))
    for ty, d in DTYPES.items():
        want = {n: [d.fields[n][1], d.fields[n][0].itemsize] for n in d.names}
        got = layout[ty]
        if got["size"] != d.itemsize or list(got["fields"].items()) != list(want.items()):
            raise SystemExit(f"C struct for {ty!r} differs from DTYPES[{ty!r}]: {got} vs {d.itemsize} {want}")


def bench_c(exe: str, path: str, capacity: int, repeat: int, check: Checksum) -> dict:
    cap = ["--capacity", str(capacity)]
    v = json.loads(run([exe, path, "--verify", *cap]))
    got = v["counts"], v["type_checksums"], v["checksum"], {k: v[k] for k in COMPARED_COUNTERS}
    if got != (check.counts, check.per_type, check.total, check.counters):
        raise SystemExit(f"C and numba decoders disagree: C {v} numba {check.counts} {check.total}")
    log("C: counts and checksum match numba; timing")
    r = json.loads(run([exe, path, "--repeat", str(repeat), *cap]))
    out = summary([x / 1e9 for x in r["runs_ns"]], r["messages"])
    out["median_ns"] = r["median_ns"]
    return out


# ------------------------------------------------------------------------------------------ python
def bench_python(data: np.ndarray, messages: int, repeat: int) -> dict:
    raw = data[: min(data.size, messages * 64)].tobytes()
    subset = list(itertools.islice(iter_file(raw), messages))
    raw = raw[: sum(2 + len(m) for m in subset)]
    runs = []
    for i in range(repeat):
        t0 = time.perf_counter()
        n = 0
        for m in iter_file(raw):
            decode(m)
            n += 1
        runs.append(time.perf_counter() - t0)
        log(f"python: run {i + 1}/{repeat}: {n / runs[-1] / 1e3:.0f} k msg/s")
    return summary(runs, n)


# -------------------------------------------------------------------------------------------- pcap
def pcap_pass(path: str, tables_capacity: int, ahead: bool | None = None):
    """The user's path, timed whole: multicast.itch.pipeline.Decode over the capture (pcap walk, frames,
    MoldUDP64 packet index, ITCH tables) until the end of the file; returns the counters. ahead: as Decode takes
    it (None, the default: the next batch read and indexed on a second core when there is one; False: one
    thread)."""
    run = Decode(path, capacity=tables_capacity, ahead=ahead)
    for _ in run.batches():
        pass
    return run.counters


def bench_pcap(path: str, messages: int, packets: int, repeat: int, tables_capacity: int) -> dict:
    log("pcap: warm-up pass (compile, page cache)")
    cnt = pcap_pass(path, tables_capacity)
    bad = [k for k in (C.MALFORMED_PACKETS, C.UNKNOWN_TYPES, C.BAD_LENGTH_MESSAGES, C.TRUNCATED_FRAMES)
           if cnt[k]]
    if cnt[C.DECODED] != messages or bad:
        raise SystemExit(f"pcap path decoded {cnt[C.DECODED]} of {messages} messages: {C.as_dict(cnt)}")
    runs = []
    for i in range(repeat):
        t0 = time.perf_counter()
        pcap_pass(path, tables_capacity)
        runs.append(time.perf_counter() - t0)
        log(f"pcap: run {i + 1}/{repeat}: {messages / runs[-1] / 1e6:.1f} M msg/s")
    out = summary(runs, messages)
    out["packets"] = packets
    out["packets_per_s"] = packets / out["median_s"]
    out["file_bytes"] = os.path.getsize(path)
    out["gbit_per_s"] = out["file_bytes"] * 8 / out["median_s"] / 1e9
    out["frame_batch"] = FILE_FRAMES_PER_BATCH
    out["index_ahead"] = worth_a_thread()  # read and indexed a batch ahead on a second core
    out["tables_rows"] = tables_capacity
    return out


# ---------------------------------------------------------------------------------------------- rounds
def c_once(exe: str, path: str, capacity: int) -> float:
    r = json.loads(run([exe, path, "--repeat", "1", "--capacity", str(capacity)]))
    return r["runs_ns"][0] / 1e9


def command_rate(path: str) -> float:
    """Messages per second `xdpfeed decode FILE -T summary` reports by its own clock (start-up excluded)."""
    out = run([sys.executable, "-m", "xdpfeed.multicast.cli", "decode", path, "-T", "summary"])
    m = re.search(r"rate: ([0-9.]+)M msg/s", out)
    if m is None:
        raise SystemExit(f"no rate in the decode summary: {out[-300:]}")
    return float(m[1]) * 1e6


def interleaved_rounds(args, data, itch_path, pcap_path, exe, messages, tables) -> dict:
    """`repeat` rounds of numba, C, pcap and the command, one pass each; medians and paired ratios."""
    t = ItchTables(args.capacity)
    cnt = C.new()
    kinds = ["numba"] + (["c"] if exe else []) + (["pcap", "pcap_one_thread"] if pcap_path else []) + ["command"]
    secs = {k: [] for k in kinds}
    numba_pass(data, t, cnt)  # an untimed round first: compiled code and the page cache are warm for all
    if exe:
        c_once(exe, itch_path, args.capacity)
    if pcap_path:
        pcap_pass(pcap_path, tables)
        pcap_pass(pcap_path, tables, ahead=False)
    command_rate(itch_path)
    for r in range(args.repeat):
        for k in kinds[r % len(kinds):] + kinds[: r % len(kinds)]:
            if k == "numba":
                t0 = time.perf_counter()
                numba_pass(data, t, cnt)
                secs[k].append(time.perf_counter() - t0)
            elif k == "c":
                secs[k].append(c_once(exe, itch_path, args.capacity))
            elif k in ("pcap", "pcap_one_thread"):
                t0 = time.perf_counter()
                pcap_pass(pcap_path, tables, ahead=None if k == "pcap" else False)
                secs[k].append(time.perf_counter() - t0)
            else:
                secs[k].append(messages / command_rate(itch_path))
        log(f"round {r + 1}/{args.repeat}: " + ", ".join(f"{k} {messages / secs[k][-1] / 1e6:.1f}M" for k in kinds))
    out = {"msgs_per_s": {k: round(messages / statistics.median(v)) for k, v in secs.items()},
           "seconds": {k: [round(x, 4) for x in v] for k, v in secs.items()}, "paired": {}}
    for a, b in (("numba", "c"), ("command", "numba"), ("pcap", "numba"), ("pcap", "pcap_one_thread")):
        if a in secs and b in secs:
            r = [y / x for x, y in zip(secs[a], secs[b], strict=True)]  # a's speed over b's
            out["paired"][f"{a}_over_{b}"] = {"median": round(statistics.median(r), 3), "min": round(min(r), 3),
                                              "max": round(max(r), 3)}
    return out


# -------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10_000_000, help="messages in the synthetic day")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per contender (median reported)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--capacity", type=int, default=1 << 20, help="ItchTables rows for decode_stream (and C)")
    p.add_argument("--python-messages", type=int, default=200_000, help="messages for the Python reference")
    p.add_argument("--tables", type=int, default=1 << 17, help="ItchTables rows on the pcap path")
    p.add_argument("--data-dir", default=os.path.join(HERE, ".data"), help="where generated days are cached")
    p.add_argument("--cc", default=os.environ.get("CC", "cc"))
    p.add_argument("--skip", default="", help="comma-separated: c,python,pcap")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    base = os.path.join(args.data_dir, f"day_{args.messages}_{args.seed}")
    log(f"data: {base}.itch / .pcap (generated once, then reused)")
    t0 = time.perf_counter()
    meta = synthetic.generate_to_file(base + ".itch", args.messages, args.seed, pcap_path=base + ".pcap")
    prep = time.perf_counter() - t0
    data = np.fromfile(base + ".itch", dtype=np.uint8)
    result = {
        "benchmark": "itch_decode",
        "machine": machine(args.cc),
        "data": {"messages": meta["n_messages"], "stocks": meta["n_stocks"], "seed": args.seed,
                 "itch_bytes": meta["bytes"], "pcap_bytes": meta["pcap"]["bytes"],
                 "packets": meta["pcap"]["packets"], "peak_live_orders": meta["peak_live"],
                 "prepare_s": round(prep, 3)},
        "repeat": args.repeat,
    }
    numba_r, check = bench_numba(data, args.capacity, args.repeat)
    result["numba_decode_stream"] = numba_r
    result["verify"] = {"counts": check.counts, "checksum": check.total}
    if "c" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            exe = build_c(args.cc, tmp, "itch_decode")
            check_layout(exe)
            result["c_decode"] = bench_c(exe, base + ".itch", args.capacity, args.repeat, check)
        result["verify"]["c_matches_numba"] = True
    if "python" not in skip:
        result["python_reference"] = bench_python(data, args.python_messages, args.repeat)
    if "pcap" not in skip:
        result["pcap_to_decoded"] = bench_pcap(base + ".pcap", meta["n_messages"], meta["pcap"]["packets"],
                                               args.repeat, args.tables)
    exe_path = None
    with tempfile.TemporaryDirectory() as tmp:
        if "c" not in skip:
            exe_path = build_c(args.cc, tmp, "itch_decode")
        pcap_path = None if "pcap" in skip else base + ".pcap"
        result["interleaved"] = interleaved_rounds(args, data, base + ".itch", pcap_path, exe_path,
                                                   meta["n_messages"], args.tables)
    ratios, targets = {}, {}
    paired = result["interleaved"]["paired"]
    if "numba_over_c" in paired:
        ratios["numba_over_c_interleaved"] = paired["numba_over_c"]["median"]
        targets["numba_over_c_interleaved_met"] = paired["numba_over_c"]["median"] >= TARGET_NUMBA_OVER_C
    ratios["command_over_numba"] = paired["command_over_numba"]["median"]
    targets["command_within_1.2x_of_compiled_met"] = paired["command_over_numba"]["median"] >= 1 / 1.2
    if "pcap" in result["interleaved"]["msgs_per_s"]:
        pcap_mps = result["interleaved"]["msgs_per_s"]["pcap"]
        targets["pcap_interleaved_msgs_per_s_met"] = pcap_mps >= TARGET_PCAP_MSGS_PER_S
    if "c_decode" in result:
        ratios["numba_over_c"] = numba_r["msgs_per_s"] / result["c_decode"]["msgs_per_s"]
        targets["numba_over_c_min"] = TARGET_NUMBA_OVER_C
        targets["numba_over_c_met"] = ratios["numba_over_c"] >= TARGET_NUMBA_OVER_C
    if "python_reference" in result:
        ratios["numba_over_python"] = numba_r["msgs_per_s"] / result["python_reference"]["msgs_per_s"]
    if "pcap_to_decoded" in result:
        targets["pcap_msgs_per_s_min"] = TARGET_PCAP_MSGS_PER_S
        targets["pcap_met"] = result["pcap_to_decoded"]["msgs_per_s"] >= TARGET_PCAP_MSGS_PER_S
    result["ratios"] = ratios
    result["targets"] = targets
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
