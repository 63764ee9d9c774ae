"""A paced publisher for bench_nats.py: the day's ITCH file through an output (nats:, or ipc: read by a
bridge) at RATE messages/s, in
batches of BATCH, each message stamped with the time it is handed over (as a feed's receive time). Prints
`ready` on stderr once connected (the stream exists), starts on a line on stdin, and prints one JSON line
with the output's stats at the end.

    python bench/nats_publisher.py DAY.itch nats://.../STREAM FEED RATE BATCH [MESSAGES]"""

import json
import sys
import time

import numpy as np

from xdpfeed.multicast.feed.consumers import MessageBatch
from xdpfeed.multicast.sinks.uri import open_sink


def main() -> int:
    itch, uri, feed, rate, batch = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    limit = int(sys.argv[6]) if len(sys.argv) > 6 else None
    records = np.fromfile(itch, dtype=np.uint8)
    lengths = []
    p = 0
    while p < records.size:
        n = (int(records[p]) << 8) | int(records[p + 1])
        lengths.append(n + 2)
        p += n + 2
    ends = np.cumsum(lengths)
    starts = np.concatenate([[0], ends[:-1]])
    total = len(lengths) if limit is None else min(limit, len(lengths))
    sink = open_sink(uri, feed=feed)
    print("ready", file=sys.stderr, flush=True)
    sys.stdin.readline()  # "go"
    b = MessageBatch(batch)
    t0 = time.perf_counter()
    k = 0
    while k < total:
        wait = t0 + k / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # not a spin: the output's thread needs the GIL
        n = min(batch, total - k)
        stream = records[starts[k] : ends[k + n - 1]]
        sink.on_messages(b.set(stream, k + 1, n, np.full(n, time.time_ns(), np.int64), "BENCHNATS1"))
        k += n
    handed = time.perf_counter() - t0
    if uri.startswith("ipc:"):
        time.sleep(3.0)  # the samples live in this process's shared memory: the bridge reads them first
    sink.close()
    print(json.dumps({**sink.stats(), "handed_over_s": handed, "total_s": time.perf_counter() - t0}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
