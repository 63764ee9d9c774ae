"""OUCH decoding benchmark: compiled decode_soup_stream vs the pure-Python reference, per version and
direction, with the ITCH decoder timed in the same rounds for the ratio. One JSON object on stdout.

Data: a pool of `--pool` realistic messages per (version, direction) — the MIX below, random but seeded
values, 5.0 appendages like the real captures' (Firm, BBO weight) plus, on `--extra-tags` of them, MinQty,
MaxFloor or a peg (the variety costs branch mispredictions in the appendage walk) —
encoded once with multicast.ouch.encode and framed as SoupBinTCP 'S' (outbound) or 'U' (inbound)
packets; the pool is repeated to `--messages` packets. ITCH: a multicast.exchange.synthetic day of
`--itch-messages` messages decoded by multicast.itch.decoder.decode_stream as bench_decode.py does. Both use
tables of `--capacity` rows, cleared whenever full. After an untimed pass each (compile, page faults,
counter checks), every round times ITCH once and then each OUCH stream once, so that machine noise
falls on all alike; medians of `--repeat` rounds. `ratios.<stream>_over_itch` = OUCH ns/msg ÷ ITCH
ns/msg (target ≤ 2). The reference decodes the first `--python-messages` payloads of each pool.
"""

import argparse
import json
import sys
import time

import numpy as np

from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.itch.decoder import ItchTables, decode_stream
from xdpfeed.multicast.ouch import decoder as ouch
from xdpfeed.multicast.ouch import reference as ouch_reference
from xdpfeed.multicast.ouch.encode import encode
from xdpfeed.multicast.ouch.schema import MESSAGES
from xdpfeed.multicast.wire import counters as C

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


def _fields(v: str, d: str, t: str, rng, ts: int, extra: float) -> dict:
    """Plausible field values for one message (names as in multicast.ouch.schema)."""
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
            r = rng.random() / extra if extra else 1.0  # extra tags: MinQty 4/7, MaxFloor 2/7, peg 1/7 of them
            if r < 4 / 7:
                app["min_qty"] = 100
            elif r < 6 / 7:
                app["max_floor"] = 200
            elif r < 1:
                app["price_type"], app["peg_offset"] = "P", -100
        elif t == "E" and rng.random() < 0.1:
            app = {"reference_price": 1_000_000, "reference_price_type": "N"}
        elif t == "R":
            app = {"display_quantity": 100, "display_price": 1_000_000}
        out["appendage"] = app if (m.app == "required" or app) else None
        if out["appendage"] is None:
            del out["appendage"]
    return out


def make_stream(v: str, d: str, pool: int, messages: int, seed: int, extra: float = 0.35):
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
        payloads.append(encode(v, d, t, **_fields(v, d, t, rng, ts, extra)))
    ptype = b"U" if d == "in" else b"S"
    one = b"".join((len(m) + 1).to_bytes(2, "big") + ptype + m for m in payloads)
    reps = -(-messages // pool)
    stream = np.frombuffer(one * reps, dtype=np.uint8)
    return stream, payloads


def ouch_pass(stream: np.ndarray, t: ouch.OuchTables) -> None:
    """Decode the whole stream, clearing the tables whenever they fill."""
    pos, end = 0, stream.size
    while pos < end:
        t.clear()
        pos = ouch.decode_soup_stream(stream, pos, end, t)
        if not t.full:
            break


def itch_pass(data: np.ndarray, t: ItchTables, cnt: np.ndarray) -> None:
    """bench_decode.numba_pass: decode_stream over the whole buffer, clearing the tables when they fill."""
    pos, end = 0, data.size
    while pos < end:
        t.rows[:] = 0
        pos, n, cut = decode_stream(data, pos, end, 0, t.tables, t.rows, t.order_type, t.order_row, 0, cnt)
        if cut or n < t.capacity:
            break


def python_reference(v: str, d: str, payloads: list[bytes], repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for m in payloads:
            ouch_reference.decode(v, d, m)
        runs.append(time.perf_counter() - t0)
    return summary(runs, len(payloads))


def run(args) -> dict:
    """Every contender once per round, ITCH first: machine noise hits all of them alike."""
    log(f"itch: synthetic day of {args.itch_messages} messages")
    data, _ = synthetic.generate(args.itch_messages, seed=args.seed)
    it, cnt = ItchTables(args.capacity), C.new()
    itch_pass(data, it, cnt)  # compile, fault the tables in
    cnt[:] = 0
    itch_pass(data, it, cnt)
    n_itch = int(cnt[C.DECODED])
    streams = {}
    for s in args.streams.split(","):
        v, d = s.split(":")
        stream, payloads = make_stream(v, d, args.pool, args.messages, args.seed, args.extra_tags)
        t = ouch.OuchTables(v, d, args.capacity)
        log(f"ouch {v} {d}: {stream.size / 1e6:.0f} MB stream; compile + check pass")
        ouch_pass(stream, t)
        c = t.counts()
        total = -(-args.messages // args.pool) * args.pool
        if c["decoded"] != total or c["bad_lengths"] or c["unknown_types"] or c["bad_appendages"]:
            raise SystemExit(f"OUCH {v} {d} stream does not decode cleanly: {c}")
        streams[f"ouch{v.replace('.', '')}_{d}"] = (v, d, stream, payloads, t, total)
    runs = {"itch": [], **{k: [] for k in streams}}
    for r in range(args.repeat):
        t0 = time.perf_counter()
        itch_pass(data, it, cnt)
        runs["itch"].append(time.perf_counter() - t0)
        for k, (_, _, stream, _, t, _) in streams.items():
            t0 = time.perf_counter()
            ouch_pass(stream, t)
            runs[k].append(time.perf_counter() - t0)
        log(f"round {r + 1}/{args.repeat}: " + "  ".join(
            f"{k} {x[-1] * 1e9 / (n_itch if k == 'itch' else streams[k][5]):.1f}" for k, x in runs.items()) + " ns/msg")
    result = {"itch_decode_stream": summary(runs["itch"], n_itch)}
    ratios, met = {}, {}
    for k, (v, d, stream, payloads, _, total) in streams.items():
        res = result[k] = {"compiled": summary(runs[k], total), "stream_bytes": int(stream.size),
                           "mean_message_bytes": round(sum(map(len, payloads)) / len(payloads), 1),
                           "mix": MIX[(v, d)]}
        log(f"python reference {v} {d}")
        res["python_reference"] = python_reference(v, d, payloads[: args.python_messages], args.repeat)
        res["compiled_over_python"] = res["compiled"]["msgs_per_s"] / res["python_reference"]["msgs_per_s"]
        ratios[f"{k}_over_itch"] = res["compiled"]["ns_per_msg"] / result["itch_decode_stream"]["ns_per_msg"]
        met[f"{k}_over_itch"] = ratios[f"{k}_over_itch"] <= TARGET_OVER_ITCH
    result["ratios"] = ratios  # OUCH ns/msg ÷ ITCH ns/msg, medians of the same rounds
    result["targets"] = {"max_ns_ratio_over_itch": TARGET_OVER_ITCH, "met": met}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=5_000_000, help="SoupBinTCP packets per stream")
    p.add_argument("--pool", type=int, default=1 << 16, help="distinct messages encoded per stream")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--capacity", type=int, default=1 << 16, help="OuchTables and ItchTables rows (the same for both)")
    p.add_argument("--python-messages", type=int, default=100_000)
    p.add_argument("--extra-tags", type=float, default=0.35,
                   help="share of 5.0 Enter / Accepted / Replaced carrying tags besides Firm (and BBO weight)")
    p.add_argument("--itch-messages", type=int, default=5_000_000)
    p.add_argument("--streams", default="4.2:in,4.2:out,5.0:in,5.0:out")
    args = p.parse_args(argv)
    result = {"benchmark": "ouch_decode", "machine": machine("cc"), "repeat": args.repeat,
              "messages_per_stream": args.messages, "pool": args.pool, "capacity": args.capacity,
              "itch_messages": args.itch_messages, "extra_tags": args.extra_tags}
    result.update(run(args))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
