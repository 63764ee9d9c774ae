"""Metrics cost: the live handler's whole path (pcap source → MoldUDP64 → sequencer → book) over a
synthetic day, with metrics off, and with metrics on (messages counted by type on delivery, and the
Prometheus collector scraped every `--scrape-interval` seconds from another thread, as a Prometheus
server would). Target: on is within 3% of off. Prints one JSON object; medians of --repeat runs,
interleaved.
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import log, machine, summary  # noqa: E402


def one_pass(pcap: str, metrics_on: bool, scrape_interval: float) -> tuple[float, int, int]:
    from prometheus_client import generate_latest

    from xdpfeed.multicast.feed import metrics
    from xdpfeed.multicast.feed.feed import Feed

    h = Feed(line_a=f"pcap:{pcap}", warm=False)
    h.count_types = metrics_on  # what serving metrics turns on
    stop = threading.Event()
    scrapes = [0]

    def scraper(reg):
        while not stop.wait(scrape_interval):
            generate_latest(reg)
            scrapes[0] += 1

    t = None
    if metrics_on:
        t = threading.Thread(target=scraper, args=(metrics.registry_for(h, "bench"),), daemon=True)
        t.start()
    t0 = time.perf_counter()
    why = h.run()
    dt = time.perf_counter() - t0
    stop.set()
    if t is not None:
        t.join()
    assert why == "sources exhausted", why
    delivered = h.state.delivered
    h.close()
    return dt, delivered, scrapes[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--scrape-interval", type=float, default=1.0, help="seconds between scrapes (Prometheus: 1-60)")
    p.add_argument("--data-dir", default=os.path.join(HERE, ".data"))
    args = p.parse_args(argv)
    from xdpfeed.multicast.exchange import synthetic
    from xdpfeed.multicast.feed.warmup import warm_up

    base = os.path.join(args.data_dir, f"day_{args.messages}_1")
    synthetic.generate_to_file(base + ".itch", args.messages, seed=1, pcap_path=base + ".pcap")
    warm_up()
    for on in (False, True):  # compile, page cache
        one_pass(base + ".pcap", on, args.scrape_interval)
    runs = {"off": [], "on": []}
    scrapes = []
    for i in range(args.repeat):
        for name, on in (("off", False), ("on", True)):
            dt, delivered, n = one_pass(base + ".pcap", on, args.scrape_interval)
            assert delivered == args.messages, delivered
            runs[name].append(dt)
            if on:
                scrapes.append(n)
        log(f"run {i + 1}/{args.repeat}: off {args.messages / runs['off'][-1] / 1e6:.2f}M msg/s, "
            f"on {args.messages / runs['on'][-1] / 1e6:.2f}M msg/s ({scrapes[-1]} scrapes)")
    off, on = summary(runs["off"], args.messages), summary(runs["on"], args.messages)
    print(json.dumps({"benchmark": "metrics_cost", "machine": machine(os.environ.get("CC", "cc")),
                      "messages": args.messages, "scrape_interval_s": args.scrape_interval,
                      "scrapes_per_run_median": statistics.median(scrapes), "metrics_off": off, "metrics_on": on,
                      "on_over_off_time": on["median_s"] / off["median_s"], "target_max_ratio": 1.03}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
