"""One feed of a several-feeds config in a process of its own, for bench_feeds.py: built and warmed up, then
`ready` on stderr; it runs when a line comes on stdin and prints one JSON line: start and end (time.time())
and the messages delivered.

    python bench/feed_worker.py VENUES.toml NAME"""

import json
import sys
import time

from xdpfeed.multicast.feed import config as cfgmod
from xdpfeed.multicast.feed.feed import Feed


def main() -> int:
    cfg = cfgmod.load_any(sys.argv[1]).feed(sys.argv[2])
    with Feed(cfg, metrics=None) as feed:
        print("ready", file=sys.stderr, flush=True)
        sys.stdin.readline()
        start = time.time()
        feed.run()
        end = time.time()
        print(json.dumps({"start": start, "end": end, "delivered": feed.state.delivered}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
