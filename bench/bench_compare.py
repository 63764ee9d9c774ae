"""Comparing two paths: `xdpfeed compare` on two recordings of a synthetic day (identical, then with one
message changed every 100,000), aligned by sequence number and by position, and the live comparison of
`run --shadow` (hashing each delivered message and comparing both paths) against the same replay without it,
interleaved run by run.

    python bench/bench_compare.py [--messages 5000000] [--repeat 5]

Prints one JSON object: messages/s of each comparison, and ns/msg the live comparison adds to a replay.
"""

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import interleaved, machine, replay_arguments, synthetic_pcap  # noqa: E402


def offline(itch: str, changed: str, repeat: int) -> dict:
    from xdpfeed.multicast.compare import diff, streams

    out = {}
    a = streams.load(itch)
    for name, other in (("identical", itch), ("every_100k_changed", changed)):
        b = streams.load(other)
        for by in ("position", "sequence"):
            if by == "sequence":
                a.seq, b.seq = a.seqs(), b.seqs()
            else:
                a.seq = b.seq = None
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                r = diff.compare(a, b, book=False)
                times.append(time.perf_counter() - t0)
            med = sorted(times)[len(times) // 2]
            out[f"{name}_by_{by}"] = {"median_s": round(med, 4), "msgs_per_s": round(a.count / med),
                                      "different": r["different"]}
    return out


class Pair:
    """Both consumers of a LiveCompare on one feed: the cost of keeping and comparing each message twice."""

    def __init__(self):
        from xdpfeed.multicast.compare.live import LiveCompare

        self.c = LiveCompare()
        self.name = "shadow-compare"

    def on_messages(self, batch):
        self.c.primary.on_messages(batch)
        self.c.shadow.on_messages(batch)


def one_pass(pcap: str, kind: str) -> tuple[float, int]:
    from xdpfeed import Feed

    consumers = [Pair()] if kind == "live_compare" else []
    with Feed(line_a=f"pcap:{pcap}", consumers=consumers, book=False, warm=False, latency=False) as feed:
        t0 = time.perf_counter()
        assert feed.run() == "sources exhausted"
        dt = time.perf_counter() - t0
        if consumers:
            assert consumers[0].c.summary()["compared"] == feed.state.delivered
        return dt, feed.state.delivered


def main(argv=None) -> int:
    args = replay_arguments(__doc__, 5_000_000, 5).parse_args(argv)
    pcap = synthetic_pcap(args.messages, args.data_dir)
    itch = pcap[: -len(".pcap")] + ".itch"
    raw = np.fromfile(itch, dtype=np.uint8)
    changed = os.path.join(args.data_dir, f"changed_{args.messages}.itch")
    from xdpfeed.multicast.compare.streams import index

    offs = index(raw, itch)
    mod = raw.copy()
    for k in range(0, offs.size - 1, 100_000):
        mod[offs[k + 1] - 1] ^= 1  # the last byte of every 100,000th message
    mod.tofile(changed)
    res = interleaved(("replay", "live_compare"), args.repeat, args.messages, lambda kind: one_pass(pcap, kind))
    print(json.dumps({
        "benchmark": "compare", "machine": machine(os.environ.get("CC", "cc")), "messages": args.messages,
        "offline": offline(itch, changed, args.repeat), "live": res,
        "live_added_ns_per_msg": round(res["live_compare"]["ns_per_msg"] - res["replay"]["ns_per_msg"], 2),
        "live_time_over_replay": round(res["live_compare"]["median_s"] / res["replay"]["median_s"], 3),
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
