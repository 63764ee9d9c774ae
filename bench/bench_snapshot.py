"""Late join: time from start to SYNCHRONIZED when joining at 60 % of a day, by a GLIMPSE snapshot against by
replay from sequence 1 (the baseline, measured in the same run, interleaved).

The venue is `xdpfeed simulate` in a process of its own, met in the middle of its day (`--start-seq`: the
messages before are served by its replay and GLIMPSE servers), publishing the rest live on loopback at
`--rate` messages/s. Its GLIMPSE state is warmed by one snapshot before the runs (a real venue's is always
ready). Each run builds a Feed in this process and steps it until it is SYNCHRONIZED past the join point:
- snapshot: `start="snapshot"` — the snapshot, then the live messages it held meanwhile;
- replay: `start="one"` — every message from sequence 1 by SoupBinTCP replay while the live ones are held
  (what overflows the hold queue is replayed too).
Reported per mode: the median seconds to SYNCHRONIZED, messages delivered by then, and the ratio
replay / snapshot.

    python bench/bench_snapshot.py [--messages 10000000] [--join 0.6] [--rate 100000] [--repeat 3]

Prints one JSON object.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
USER, PASSWORD = "BENCH1", "bench123"


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_venue(day: str, join: int, rate: float, a: str, b: str):
    env = dict(os.environ, XDPFEED_PASSWORD=PASSWORD)
    cmd = [sys.executable, "-m", "xdpfeed.multicast.cli", "simulate", "--day", day, "--line-a", a, "--line-b", b,
           "--user", USER, "--start-seq", str(join), "--rate", str(rate), "--glimpse-port", "0", "--linger", "600",
           "--start-delay", "0.5", "-T", "json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    first = p.stdout.readline()
    if not first.startswith("{"):
        p.kill()
        raise SystemExit(f"the venue did not start: {first!r}")
    return p, json.loads(first)


def warm_glimpse(addr: dict) -> None:
    """One snapshot, so the venue's GLIMPSE state is built before anything is timed."""
    from xdpfeed.multicast.feed.glimpse_client import GlimpseClient

    host, port = addr["glimpse"].rsplit(":", 1)
    c = GlimpseClient((host, int(port)), USER, PASSWORD, addr["session"].encode(), time.monotonic,
                      server_timeout=120)
    while c.live:
        c.poll()
        time.sleep(0.001)
    if not c.complete:
        raise SystemExit(f"GLIMPSE warm-up failed: {c.reason}")


def one_run(mode: str, addr: dict, join: int, timeout: float) -> dict:
    from xdpfeed.multicast.feed.feed import Feed

    keys = {"line_a": f"udp:{addr['line_a']}@lo", "line_b": f"udp:{addr['line_b']}@lo", "replay": [addr["replay"]],
            "rerequest": [addr["request"]], "user": USER, "password": PASSWORD, "metrics": None,
            "server_timeout": 60.0, "deadline": 120.0}
    if mode == "snapshot":
        keys.update(start="snapshot", glimpse=[addr["glimpse"]])
    t0 = time.perf_counter()
    with Feed(**keys) as f:
        while True:
            f.step(0.01)
            st = f.state
            if st.state == "SYNCHRONIZED" and st.next_seq > join and st.next_seq >= st.highest_seq:
                break
            if time.perf_counter() - t0 > timeout:
                raise SystemExit(f"{mode}: not SYNCHRONIZED after {timeout} s: {st}")
        seconds = time.perf_counter() - t0
        s = f.summary()
    out = {"mode": mode, "seconds": round(seconds, 3), "delivered": s["delivered"], "next_seq": s["next_seq"],
           "filled_replay": s["filled_replay"], "hold_overflow": s["hold_overflow"]}
    if mode == "snapshot":
        out["snapshot_messages"] = s["snapshots"]["messages"]
        out["snapshot_seconds"] = s["snapshots"]["last_seconds"]
        out["covered"] = s["snapshots"]["covered"]
    return out


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=10_000_000)
    ap.add_argument("--join", type=float, default=0.6, help="join at this fraction of the day")
    ap.add_argument("--rate", type=float, default=100_000, help="live messages/s after the join")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    sys.path.insert(0, REPO)
    from xdpfeed.multicast.exchange import synthetic
    from xdpfeed.multicast.exchange.ports import line_pair
    from xdpfeed.multicast.feed.warmup import warm_up

    warm_up()
    join = int(args.messages * args.join)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        day = os.path.join(tmp, "day.itch")
        t = time.perf_counter()
        synthetic.generate_to_file(day, args.messages, seed=5)
        gen_s = time.perf_counter() - t
        for r in range(args.repeat):
            for mode in ("snapshot", "replay") if r % 2 == 0 else ("replay", "snapshot"):
                (ga, pa), (gb, pb) = line_pair("239.251")
                venue, addr = start_venue(day, join, args.rate, f"{ga}:{pa}", f"{gb}:{pb}")
                try:
                    warm_glimpse(addr)
                    runs.append(one_run(mode, addr, join, args.timeout))
                finally:
                    venue.terminate()
                    venue.wait(60)
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    snap = [x["seconds"] for x in runs if x["mode"] == "snapshot"]
    replay = [x["seconds"] for x in runs if x["mode"] == "replay"]
    print(json.dumps({
        "bench": "snapshot", "messages": args.messages, "join_seq": join, "live_rate": args.rate,
        "generate_seconds": round(gen_s, 1), "runs": runs,
        "snapshot_seconds_median": median(snap), "replay_seconds_median": median(replay),
        "ratio_replay_over_snapshot": round(median(replay) / median(snap), 2),
        "snapshot_messages_median": median([x["snapshot_messages"] for x in runs if x["mode"] == "snapshot"]),
    }, indent=1))


if __name__ == "__main__":
    main()
