"""A subscriber process for bench_nats.py: reads a nats: stream from what comes next until COUNT messages
arrived (or IDLE seconds without any), then prints one JSON line: messages, gaps, and the lag of every chunk
from the publisher's hand-over of its last message to here (percentiles), over the whole run and over its
steady part (chunks handed over from one second after the first on: the start pays connections and the
first compiled calls)."""

import json
import sys
import time

import numpy as np

from xdpfeed import Subscriber


def percentiles(lag: np.ndarray) -> dict:
    if not lag.size:
        return {}
    p = np.percentile(lag, [50, 90, 99, 99.9]).tolist()
    return {"p50": p[0], "p90": p[1], "p99": p[2], "p99_9": p[3], "max": float(lag.max())}


def main() -> int:
    uri, count, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sent, lag = [], []
    with Subscriber(uri, start_seq="new", idle_timeout=idle) as sub:
        print("ready", file=sys.stderr, flush=True)
        got = 0
        for batch in sub:
            last = int(batch.timestamp_ns[-1])
            lag.append(time.time_ns() - last)
            sent.append(last)
            got += batch.count
            if got >= count:
                break
        st = sub.stats()
    lag_a, sent_a = np.asarray(lag, dtype=np.float64), np.asarray(sent, dtype=np.int64)
    steady = lag_a[sent_a >= sent_a[0] + 1_000_000_000] if sent_a.size else lag_a
    print(json.dumps({**st, "chunks": int(lag_a.size), "lag_ns": percentiles(lag_a),
                      "steady_lag_ns": percentiles(steady)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
