"""Consumer cost: a Feed replaying a synthetic day (pcap source → MoldUDP64 → sequencer; no book, whose
100-200 ns per message and their noise would hide what is measured here) with no consumer, with a plain
Python consumer, with a Python consumer that asks for the decoded tables, and with a numba-compiled consumer
(CompiledConsumer, a loop over the raw stream), interleaved run by run. Reports the medians and the cost
per delivered message of each consumer over no consumer, measured in the same run.

    python bench/bench_consumers.py [--messages 5000000] [--repeat 9]

Prints one JSON object.
"""

import json
import os
import sys
import time

import numpy as np
from numba import njit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import interleaved, machine, replay_arguments, synthetic_pcap  # noqa: E402


class Counting:
    """Python, once per batch: counts what it is given (the least a consumer can do)."""

    name = "python"

    def __init__(self):
        self.messages = 0

    def on_messages(self, batch):
        self.messages += batch.count


class Decoding:
    """Python, once per batch, reading the decoded tables (the decode is what it pays for)."""

    name = "python_decoded"

    def __init__(self):
        self.adds = 0

    def on_messages(self, batch):
        self.adds += len(batch.decoded()["A"])


@njit(cache=True)
def _shares_by_type(stream, seq, timestamp_ns, counts):
    """Compiled, once per batch: a walk over every message of the stream, counting them by type."""
    p = 0
    while p + 2 <= stream.size:
        n = (np.int64(stream[p]) << 8) | np.int64(stream[p + 1])
        counts[stream[p + 2]] += 1
        p += 2 + n


def one_pass(pcap: str, kind: str) -> tuple[float, int]:
    from xdpfeed import CompiledConsumer, Feed

    consumers = {"none": [], "python": [Counting()], "python_decoded": [Decoding()],
                 "numba": [CompiledConsumer(on_messages=_shares_by_type, state=(np.zeros(256, dtype=np.int64),),
                                            name="numba")]}[kind]
    with Feed(line_a=f"pcap:{pcap}", consumers=consumers, book=False, warm=False) as feed:
        t0 = time.perf_counter()
        why = feed.run()
        dt = time.perf_counter() - t0
        assert why == "sources exhausted", why
        return dt, feed.state.delivered


KINDS = ("none", "python", "python_decoded", "numba")


def main(argv=None) -> int:
    p = replay_arguments(__doc__, 5_000_000, 9)
    args = p.parse_args(argv)
    pcap = synthetic_pcap(args.messages, args.data_dir)
    res = interleaved(KINDS, args.repeat, args.messages, lambda kind: one_pass(pcap, kind))
    base_ns = res["none"]["ns_per_msg"]
    out = {"benchmark": "consumer_cost", "machine": machine(os.environ.get("CC", "cc")), "messages": args.messages,
           "runs": res,
           "added_ns_per_msg": {k: round(res[k]["ns_per_msg"] - base_ns, 2) for k in KINDS if k != "none"},
           "time_over_no_consumer": {k: round(res[k]["median_s"] / res["none"]["median_s"], 3) for k in KINDS
                                     if k != "none"}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
