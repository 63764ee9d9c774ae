"""Metrics cost: the live handler's whole path (pcap source → MoldUDP64 → sequencer → book) over a
synthetic day, with metrics off, and with metrics on (messages counted by type on delivery, and the
Prometheus collector scraped every `--scrape-interval` seconds from another thread, as a Prometheus
server would). Target: on is within 3% of off. Prints one JSON object; medians of --repeat runs,
interleaved.
"""

import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import interleaved, machine, replay_arguments, synthetic_pcap  # noqa: E402


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
    p = replay_arguments(__doc__, 10_000_000, 5)
    p.add_argument("--scrape-interval", type=float, default=1.0, help="seconds between scrapes (Prometheus: 1-60)")
    args = p.parse_args(argv)
    pcap = synthetic_pcap(args.messages, args.data_dir)
    scrapes = []

    def timed(name):
        dt, delivered, n = one_pass(pcap, name == "on", args.scrape_interval)
        if name == "on":
            scrapes.append(n)
        return dt, delivered

    res = interleaved(("off", "on"), args.repeat, args.messages, timed)
    del scrapes[0]  # the untimed pass
    off, on = res["off"], res["on"]
    print(json.dumps({"benchmark": "metrics_cost", "machine": machine(os.environ.get("CC", "cc")),
                      "messages": args.messages, "scrape_interval_s": args.scrape_interval,
                      "scrapes_per_run_median": statistics.median(scrapes), "metrics_off": off, "metrics_on": on,
                      "on_over_off_time": on["median_s"] / off["median_s"], "target_max_ratio": 1.03}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
