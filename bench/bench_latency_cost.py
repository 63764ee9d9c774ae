"""The cost of measuring latency by stage (multicast.latency): a Feed replaying a synthetic day (pcap source →
MoldUDP64 → sequencer → one Python consumer; no book, whose cost and noise would hide what is measured) with
the per-stage histograms off (the baseline), on (read, delivered, the consumer), and on with the venue's time
(`venue_time`: one more stage, per packet), interleaved run by run. Reports the medians and the cost per
delivered message over the baseline measured in the same run.

    python bench/bench_latency_cost.py [--messages 5000000] [--repeat 9]

Prints one JSON object.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_consumers import Counting  # noqa: E402  (the least a Python consumer can do)

from common import interleaved, machine, replay_arguments, synthetic_pcap  # noqa: E402

KEYS = {"off": {"latency": False}, "on": {}, "on_venue_time": {"venue_time": True}}


def one_pass(pcap: str, kind: str) -> tuple[float, int]:
    from xdpfeed import Feed

    with Feed(line_a=f"pcap:{pcap}", consumers=[Counting()], book=False, warm=False, **KEYS[kind]) as feed:
        t0 = time.perf_counter()
        why = feed.run()
        dt = time.perf_counter() - t0
        assert why == "sources exhausted", why
        if kind != "off":
            assert feed.latency.summary()["stages"]["delivered"]["count"] == feed.state.delivered
        return dt, feed.state.delivered


def main(argv=None) -> int:
    args = replay_arguments(__doc__, 5_000_000, 9).parse_args(argv)
    pcap = synthetic_pcap(args.messages, args.data_dir)
    kinds = tuple(KEYS)
    res = interleaved(kinds, args.repeat, args.messages, lambda kind: one_pass(pcap, kind))
    base = res["off"]["ns_per_msg"]
    print(json.dumps({
        "benchmark": "latency_cost", "machine": machine(os.environ.get("CC", "cc")), "messages": args.messages,
        "runs": res, "added_ns_per_msg": {k: round(res[k]["ns_per_msg"] - base, 2) for k in kinds if k != "off"},
        "time_over_off": {k: round(res[k]["median_s"] / res["off"]["median_s"], 3) for k in kinds if k != "off"},
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
