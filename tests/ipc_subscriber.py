"""A subscriber process for the tests: reads ipc:NAME until the publisher goes (or --die-after messages, then
SIGKILLs itself), writes what it got to OUT (the stream) and OUT.seq (the seq of every message), and prints
its counts as one JSON line. `ready` on stderr once subscribed."""

import json
import os
import signal
import sys

import numpy as np

from xdpfeed import Subscriber


def main() -> int:
    name, out = sys.argv[1], sys.argv[2]
    die_after = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    got = 0
    with Subscriber(f"ipc:{name}", idle_timeout=60) as sub, open(out, "wb") as f, open(out + ".seq", "wb") as fs:
        print("ready", file=sys.stderr, flush=True)
        for batch in sub:
            f.write(batch.stream.tobytes())
            fs.write(batch.seq.astype("<i8").tobytes())
            got += batch.count
            if die_after and got >= die_after:
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)  # dies holding its samples: the publisher must not care
        stats = sub.stats()
        lat = np.asarray(sub.latency_ns)
        stats["latency_p50_ns"] = float(np.median(lat)) if lat.size else None
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
