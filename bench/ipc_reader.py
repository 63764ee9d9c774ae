"""A subscriber process for bench_sinks.py: reads ipc:NAME until the publisher goes, then prints one JSON
line: messages, gaps, missed, and the publish → receive latency of every sample (percentiles)."""

import json
import sys

import numpy as np

from xdpfeed import Subscriber


def main() -> int:
    name, spin = sys.argv[1], sys.argv[2] == "spin"
    with Subscriber(f"ipc:{name}", idle_timeout=30, spin=spin) as sub:
        print("ready", file=sys.stderr, flush=True)
        for _ in sub:
            pass
        st = sub.stats()
        lat = np.asarray(sub.latency_ns, dtype=np.float64)
    pct = dict(zip(("p50", "p90", "p99", "p99_9"), np.percentile(lat, [50, 90, 99, 99.9]).tolist(), strict=True)) \
        if lat.size else {}
    print(json.dumps({**st, "samples": int(lat.size), "latency_ns": {**pct, "max": float(lat.max()) if lat.size
                                                                     else None}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
