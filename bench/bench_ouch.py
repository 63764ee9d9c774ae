"""OUCH decoding benchmark: compiled decode_soup_stream vs the pure-Python reference, per version and
direction, with the ITCH decoder measured in the same run for the ratio. One JSON object on stdout.

Data: a pool of `--pool` realistic messages per (version, direction) — the mix below, random but seeded
values, 5.0 appendages like the real captures' (Firm, BBO weight, sometimes MinQty / MaxFloor / peg) —
encoded once with multicast.ouch_encode and framed as SoupBinTCP 'S' (outbound) or 'U' (inbound)
packets; the pool is repeated to `--messages` packets. The compiled decoder walks the whole stream
into OuchTables(--capacity), clearing them when full; median of `--repeat` timed passes after one
untimed pass that compiles, faults the tables in and checks the counters. The reference decodes the
first `--python-messages` payloads. ITCH: multicast.itch.decode_stream over a multicast.synthetic day of
`--itch-messages` messages, timed the same way; `ratios.<stream>_over_itch` = OUCH ns/msg ÷ ITCH ns/msg
(target ≤ 2).
"""

import argparse
import json
import sys
import time

import numpy as np

from xdpfeed.multicast import counters as C
from xdpfeed.multicast import ouch, ouch_reference, synthetic
from xdpfeed.multicast.itch import ItchTables, decode_stream
from xdpfeed.multicast.ouch_encode import encode

from common import log, machine, summary

TARGET_OVER_ITCH = 2.0

# type letter → share of the stream (order entry as a busy client sees it)
MIX = {
    ("4.2", "in"): {"O": 0.45, "X": 0.38, "U": 0.12, "M": 0.05},
    ("4.2", "out"): {"A": 0.34, "C": 0.30, "E": 0.12, "U": 0.10, "J": 0.03, "M": 0.03, "P": 0.02, "I": 0.01,
                     "T": 0.02, "D": 0.01, "B": 0.005, "G": 0.005, "S": 0.01},
    ("5.0", "in"): {"O": 0.45, "X": 0.38, "U": 0.12, "M": 0.05},
    ("5.0", "out"): {"A": 0.34, "C": 0.30, "E": 0.12, "U": 0.10, "J": 0.03, "M": 0.03, "P": 0.02, "I": 0.01,
                     "T": 0.02, "D": 0.01, "B": 0.005, "R": 0.005, "S": 0.01},
}
SYMBOLS = ["AAPL", "MSFT", "NVDA", "CVLT", "ADBE", "META", "AMZN", "TSLA", "QQQ", "INTC"]


def _fields(v: str, d: str, t: str, rng, ts: int) -> dict:
    """Plausible field values for one message (names as in multicast.ouch_schema)."""
    from xdpfeed.multicast.ouch_schema import MESSAGES

    m = MESSAGES[(v, d)][t]
    out = {}
    for f in m.fields:
        n, k = f.name, f.kind
        if k == "ts":
            out[n] = ts
        elif n in ("symbol", "stock"):
            out[n] = SYMBOLS[rng.integers(len(SYMBOLS))]
        elif n in ("side", "buy_sell_indicator"):
            out[n] = "BST"[rng.integers(3)]
        elif k == "a" and f.size == 14:
            out[n] = f"C{rng.integers(10**9)}"
        elif k == "a" and f.size == 4:
            out[n] = "LIME"
        elif k == "a":
            out[n] = "YNALDU0"[rng.integers(7)]
        elif k in ("p4", "px"):
            out[n] = int(rng.integers(10_000, 5_000_000))
        elif n == "time_in_force":
            out[n] = 99998
        elif n == "reason":
            out[n] = int(rng.integers(1, 0x1D))
        else:
            out[n] = int(rng.integers(1, 10**f.size if f.size < 8 else 10**12))
    if m.app is not None:
        app = {}
        if t in "OAU":
            app = {"firm": "MLRO", "bbo_weight_indicator": "0"} if d == "out" else {"firm": "LIME"}
            r = rng.random()
            if r < 0.2:
                app["min_qty"] = 100
            elif r < 0.3:
                app["max_floor"] = 200
            elif r < 0.35:
                app["price_type"], app["peg_offset"] = "P", -100
        elif t == "E" and rng.random() < 0.1:
            app = {"reference_price": 1_000_000, "reference_price_type": "N"}
        elif t == "R":
            app = {"display_quantity": 100, "display_price": 1_000_000}
        out["appendage"] = app if (m.app == "required" or app) else None
        if out["appendage"] is None:
            del out["appendage"]
    return out


def make_stream(v: str, d: str, pool: int, messages: int, seed: int) -> tuple[np.ndarray, list[bytes]]:
    rng = np.random.default_rng(seed)
    mix = MIX[(v, d)]
    letters = list(mix)
    p = np.array([mix[t] for t in letters])
    kinds = rng.choice(len(letters), size=pool, p=p / p.sum())
    ts = 34_200_000_000_000
    payloads = []
    for k in kinds:
        ts += int(rng.integers(1, 50_000))
        t = letters[k]
        payloads.append(encode(v, d, t, **_fields(v, d, t, rng, ts)))
    ptype = b"U" if d == "in" else b"S"
    one = b"".join((len(m) + 1).to_bytes(2, "big") + ptype + m for m in payloads)
    reps = -(-messages // pool)
    stream = np.frombuffer(one * reps, dtype=np.uint8)
    return stream, payloads


def ouch_pass(stream: np.ndarray, t: ouch.OuchTables) -> None:
    pos, end = 0, stream.size
    while pos < end:
        t.clear()
        pos = ouch.decode_soup_stream(stream, pos, end, t)
        if not t.full:
            break


def bench_ouch(v: str, d: str, args) -> dict:
    stream, payloads = make_stream(v, d, args.pool, args.messages, args.seed)
    t = ouch.OuchTables(v, d, args.capacity)
    log(f"ouch {v} {d}: {stream.size / 1e6:.0f} MB stream; compile + check pass")
    ouch_pass(stream, t)
    total = -(-args.messages // args.pool) * args.pool
    c = t.counts()
    if c["decoded"] != total or c["bad_lengths"] or c["unknown_types"] or c["bad_appendages"]:
        raise SystemExit(f"OUCH {v} {d} stream does not decode cleanly: {c}")
    runs = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        ouch_pass(stream, t)
        runs.append(time.perf_counter() - t0)
        log(f"ouch {v} {d}: run {i + 1}/{args.repeat}: {total / runs[-1] / 1e6:.1f} M msg/s")
    res = {"compiled": summary(runs, total), "stream_bytes": int(stream.size),
           "mean_message_bytes": round(sum(map(len, payloads)) / len(payloads), 1),
           "mix": MIX[(v, d)]}
    sub = payloads[: args.python_messages]
    runs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for m in sub:
            ouch_reference.decode(v, d, m)
        runs.append(time.perf_counter() - t0)
    res["python_reference"] = summary(runs, len(sub))
    res["compiled_over_python"] = res["compiled"]["msgs_per_s"] / res["python_reference"]["msgs_per_s"]
    return res


def bench_itch(messages: int, repeat: int, capacity: int, seed: int) -> dict:
    data, _ = synthetic.generate(messages, seed=seed)
    t, cnt = ItchTables(capacity), C.new()

    def one():
        pos, end = 0, data.size
        while pos < end:
            t.rows[:] = 0
            pos, n, cut = decode_stream(data, pos, end, 0, t.tables, t.rows, t.order_type, t.order_row, 0, cnt)
            if cut or n < capacity:
                break

    one()
    cnt[:] = 0
    one()
    n = int(cnt[C.DECODED])
    runs = []
    for i in range(repeat):
        t0 = time.perf_counter()
        one()
        runs.append(time.perf_counter() - t0)
        log(f"itch: run {i + 1}/{repeat}: {n / runs[-1] / 1e6:.1f} M msg/s")
    return summary(runs, n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=5_000_000, help="SoupBinTCP packets per stream")
    p.add_argument("--pool", type=int, default=1 << 16, help="distinct messages encoded per stream")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--capacity", type=int, default=1 << 20, help="OuchTables / ItchTables rows")
    p.add_argument("--python-messages", type=int, default=100_000)
    p.add_argument("--itch-messages", type=int, default=5_000_000)
    p.add_argument("--streams", default="4.2:in,4.2:out,5.0:in,5.0:out")
    args = p.parse_args(argv)
    result = {"benchmark": "ouch_decode", "machine": machine("cc"), "repeat": args.repeat,
              "messages_per_stream": args.messages, "pool": args.pool}
    log("itch: generating the synthetic day")
    result["itch_decode_stream"] = itch = bench_itch(args.itch_messages, args.repeat, args.capacity, args.seed)
    ratios, met = {}, {}
    for s in args.streams.split(","):
        v, d = s.split(":")
        result[f"ouch{v.replace('.', '')}_{d}"] = r = bench_ouch(v, d, args)
        key = f"ouch{v.replace('.', '')}_{d}_over_itch"
        ratios[key] = r["compiled"]["ns_per_msg"] / itch["ns_per_msg"]
        met[key] = ratios[key] <= TARGET_OVER_ITCH
    result["ratios"] = ratios
    result["targets"] = {"max_ns_ratio_over_itch": TARGET_OVER_ITCH, "met": met}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
