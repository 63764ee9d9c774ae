"""Several feeds: three venues (Nasdaq, BX, PSX days sharing a universe, multicast.exchange.venues) against one.

1. Throughput, captures replayed at full speed (pcap sources, books on): one feed alone; the three in one
   process and one loop (multicast.feed.feeds, with the consolidated book); the three as three processes
   (bench/feed_worker.py: one feed of the same config each, built and warm, then started together).
   Reported: messages/s over all venues (for three processes: all messages from the first start to the last
   end), and the ratios against one feed alone, interleaved run by run.
2. Latency, live on loopback: simulated venues (`xdpfeed simulate --venue`, each its own process) publishing at
   `--rate` messages/s each, lines A and B; one venue alone, then three at once (three times the rate) into
   one loop. Reported per venue: delivery latency (packet received by the handler → delivered to consumers)
   p50, p99, p99.9 from a consumer per feed, and whether everything was delivered.

    python bench/bench_feeds.py [--messages 1000000] [--repeat 3] [--rate 200000] [--live-messages 300000]

Prints one JSON object.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import interleaved, log, machine, replay_arguments  # noqa: E402

NAMES = ("nasdaq", "bx", "psx")


def venue_files(messages: int, data_dir: str, seed: int = 1) -> dict:
    """Each venue's day as ITCH and pcap under data_dir (made once)."""
    from xdpfeed.multicast.exchange import synthetic
    from xdpfeed.multicast.exchange import venues as V

    out = {}
    for v in NAMES:
        base = os.path.join(data_dir, f"venue_{v}_{messages}_{seed}")
        if not os.path.exists(base + ".pcap"):
            records, _ = V.venue_day(v, messages, seed=seed)
            records.tofile(base + ".itch")
            synthetic.write_moldudp64_pcap(base + ".pcap.tmp", records, session=V.session(v, seed).encode())
            os.replace(base + ".pcap.tmp", base + ".pcap")
        out[v] = base
    return out


def write_toml(path: str, files: dict, names=NAMES) -> str:
    with open(path, "w") as f:
        f.write('[metrics]\naddr = "off"\n')
        for v in names:
            f.write(f'[[feeds]]\nname = "{v}"\nline_a = "pcap:{files[v]}.pcap"\n')
    return path


def throughput(files: dict, messages: int, repeat: int, tmp: str) -> dict:
    from xdpfeed.multicast.feed import config as cfgmod
    from xdpfeed.multicast.feed.feed import Feed
    from xdpfeed.multicast.feed.feeds import Feeds

    toml = write_toml(os.path.join(tmp, "venues.toml"), files)

    def one(kind: str):
        if kind == "one_feed":
            with Feed(line_a=f"pcap:{files['nasdaq']}.pcap", metrics=None, warm=False) as feed:
                t0 = time.perf_counter()
                feed.run()
                return time.perf_counter() - t0, feed.state.delivered
        if kind == "three_one_loop":
            with Feeds(cfgmod.load_any(toml), metrics=None, warm=False) as feeds:
                t0 = time.perf_counter()
                feeds.run()
                dt = time.perf_counter() - t0
                total = sum(f.state.delivered for f in feeds.feeds)
            return dt, total // 3  # per venue, so that interleaved() checks each venue got its day
        procs = []  # one process per feed, each built and warm before they all start at once
        for v in NAMES:
            procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "feed_worker.py"), toml, v],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        for p in procs:
            if p.stderr.readline().strip() != "ready":
                raise SystemExit(f"feed_worker did not start: {p.stderr.read()}")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        runs = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
        # from the first start to the last end: the three run at once
        return max(r["end"] for r in runs) - min(r["start"] for r in runs), min(r["delivered"] for r in runs)

    res = interleaved(("one_feed", "three_one_loop", "three_processes"), repeat, messages, one)
    one_rate = res["one_feed"]["msgs_per_s"]
    out = {"runs": res, "msgs_per_s_all_venues": {
        "one_feed": one_rate, "three_one_loop": 3 * res["three_one_loop"]["msgs_per_s"],
        "three_processes": 3 * res["three_processes"]["msgs_per_s"]}}
    out["over_one_feed"] = {k: round(v / one_rate, 3) for k, v in out["msgs_per_s_all_venues"].items()}
    return out


class Latency:
    """A consumer: delivery latency of every message of each batch (receive of its packet → now)."""

    def __init__(self, name: str):
        self.name = f"latency {name}"
        self.samples: list[np.ndarray] = []

    def on_messages(self, batch) -> None:
        self.samples.append(time.time_ns() - batch.timestamp_ns)

    def percentiles(self) -> dict:
        lat = np.concatenate(self.samples) if self.samples else np.zeros(0)
        if not lat.size:
            return {}
        p = np.percentile(lat, [50, 99, 99.9])
        return {"messages": int(lat.size), "p50_us": round(p[0] / 1e3, 1), "p99_us": round(p[1] / 1e3, 1),
                "p99_9_us": round(p[2] / 1e3, 1)}


def live(names, rate: float, messages: int) -> dict:
    """The venues of `names` simulated at `rate` each, one Feeds loop receiving all of them."""
    from xdpfeed.multicast.exchange.ports import free_port, line_pair
    from xdpfeed.multicast.feed import config as cfgmod
    from xdpfeed.multicast.feed.feeds import Feeds

    entries, venues = [], []
    password = "benchpw01"
    for v in names:
        a, b = line_pair()
        rp, qp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
        entries.append({"name": v, "line_a": f"udp:{a[0]}:{a[1]}@lo", "line_b": f"udp:{b[0]}:{b[1]}@lo",
                        "recovery": {"rerequest": [f"127.0.0.1:{qp}"], "replay": [f"127.0.0.1:{rp}"],
                                     "user": "BENCH1"}})
        venues.append((v, a, b, rp, qp))
    cfg = cfgmod.feeds_from_dict({"feeds": entries})
    for f in cfg.feeds:
        f.password = password
    lat = {v: Latency(v) for v in names}
    procs = []
    with Feeds(cfg, metrics=None, feed_consumers={v: [lat[v]] for v in names}) as feeds:
        for v, a, b, rp, qp in venues:
            cmd = [sys.executable, "-m", "xdpfeed.multicast.cli", "simulate", "--venue", v, "--messages",
                   str(messages), "--rate", str(rate), "--line-a", f"{a[0]}:{a[1]}", "--line-b", f"{b[0]}:{b[1]}",
                   "--replay-port", str(rp), "--request-port", str(qp), "--user", "BENCH1", "--linger", "60",
                   "--start-delay", "1.0", "-T", "json"]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=dict(os.environ, XDPFEED_PASSWORD=password)))
        for p in procs:
            p.stdout.readline()  # its addresses: it is up
        t0 = time.perf_counter()
        why = feeds.run(until_eos=True, idle_timeout=30)
        dt = time.perf_counter() - t0
        delivered = {f.name: f.state.delivered for f in feeds.feeds}
    for p in procs:
        p.terminate()
        p.communicate(timeout=60)
    return {"venues": list(names), "rate_per_venue": rate, "why": why, "seconds": round(dt, 3),
            "delivered": delivered, "whole": all(n == messages for n in delivered.values()),
            "latency": {v: lat[v].percentiles() for v in names}}


def main(argv=None) -> int:
    p = replay_arguments(__doc__, 1_000_000, 3)
    p.add_argument("--rate", type=float, default=200_000, help="messages/s each venue publishes (live part)")
    p.add_argument("--live-messages", type=int, default=300_000, help="messages per venue (live part)")
    args = p.parse_args(argv)
    from xdpfeed.multicast.feed.warmup import warm_up

    files = venue_files(args.messages, args.data_dir)
    warm_up()
    with tempfile.TemporaryDirectory(prefix="xdpfeed-bench-feeds-") as tmp:
        log("throughput: one feed, three in one loop, three processes (pcap replays)")
        tp = throughput(files, args.messages, args.repeat, tmp)
        log(f"all venues msg/s: {json.dumps({k: round(v / 1e6, 2) for k, v in tp['msgs_per_s_all_venues'].items()})}M")
    log(f"live: one venue at {args.rate:,.0f} msg/s")
    one = live(NAMES[:1], args.rate, args.live_messages)
    log(f"live one: {one['latency']}")
    log(f"live: three venues at {args.rate:,.0f} msg/s each")
    three = live(NAMES, args.rate, args.live_messages)
    log(f"live three: {three['latency']}")
    print(json.dumps({"benchmark": "several_feeds", "machine": machine(os.environ.get("CC", "cc")),
                      "messages_per_venue": args.messages, "throughput": tp,
                      "live": {"one_venue": one, "three_venues": three}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
