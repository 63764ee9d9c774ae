"""NATS JetStream output, on a 3-node cluster on loopback (nats-server processes, an R3 stream):

1. Throughput: a Feed replaying the synthetic day (pcap source → MoldUDP64 → sequencer, no book) with no
   output and with a nats: output, interleaved. Reported: the handler's time with the output over without
   (the feed never waits for NATS: it only copies batches), and the rate at which the day was confirmed
   in the stream (from the start of the run until JetStream acknowledged the last chunk).
2. Consumer lag under a 1M msg/s feed: a publisher process hands the day's messages to a nats: output at
   `--rate` messages/s (batches of 1,000, each stamped when handed over); a subscriber process on the
   stream measures, per chunk, hand-over of its last message → received (p50, p99, p99.9, max).
   The same through `xdpfeed bridge`: the publisher writes an ipc: output, a bridge process publishes it.
3. Failover: two publisher processes publish the same paced day to one stream (as two handlers would);
   the one storing is SIGKILLed; reported is the time from the kill to the stream's next chunk stored by
   the other (median of `--failovers` runs).

    python bench/bench_nats.py [--messages 2000000] [--repeat 3] [--rate 1000000]

Prints one JSON object.
"""

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import interleaved, log, machine, replay_arguments, synthetic_pcap  # noqa: E402


def throughput(cluster, pcap: str, messages: int, repeat: int) -> dict:
    from xdpfeed import Feed

    confirmed = []

    def one_pass(kind: str):
        stream = f"B{uuid.uuid4().hex[:8].upper()}"
        outputs = [] if kind == "none" else [cluster.uri(stream, buffer_mb=4096, close_timeout=600)]
        t0 = time.perf_counter()
        with Feed(line_a=f"pcap:{pcap}", outputs=outputs, name=stream.lower(), book=False, warm=False,
                  metrics=None) as feed:
            why = feed.run()
            handler = time.perf_counter() - t0
            delivered = feed.state.delivered
        if kind == "nats":  # closed: every chunk confirmed
            confirmed.append(time.perf_counter() - t0)
            (out,) = feed.summary()["outputs"].values()
            if out["stored"] != messages or out["dropped_messages"] or out["unpublished"]:
                raise SystemExit(f"nats output incomplete: {out}")
        assert why == "sources exhausted", why
        return handler, delivered

    res = interleaved(("none", "nats"), repeat, messages, one_pass)
    del confirmed[0]  # the untimed pass
    med = statistics.median(confirmed)
    ratio = round(res["nats"]["median_s"] / res["none"]["median_s"], 3)
    return {"runs": res, "handler_time_with_nats_over_without": ratio,
            "confirmed_in_stream_s": [round(x, 3) for x in confirmed], "published_msgs_per_s": messages / med}


def start(cmd: list[str]) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    if line.strip() != "ready":
        raise SystemExit(f"{cmd[1]} did not start: {line}{p.stderr.read()}")
    return p


def go(p: subprocess.Popen) -> None:
    p.stdin.write("go\n")
    p.stdin.flush()


def lag(cluster, itch: str, rate: float, messages: int, bridged: bool = False) -> dict:
    """A paced publisher → the stream → a reader; bridged: the publisher writes an ipc: output and an
    `xdpfeed bridge` process publishes it to NATS (the handler's process does no NATS work)."""
    stream = f"L{uuid.uuid4().hex[:8].upper()}"
    uri = cluster.uri(stream)
    feed = stream.lower()
    bridge = None
    if bridged:
        name = f"bench{uuid.uuid4().hex[:10]}"
        pub = start([sys.executable, os.path.join(HERE, "nats_publisher.py"), itch, f"ipc:{name}?history=64&buffer=256",
                     feed, str(rate), "1000", str(messages)])
        bridge = subprocess.Popen([sys.executable, "-m", "xdpfeed.multicast.cli", "bridge", f"ipc:{name}", "--out", uri,
                                   "--name", feed, "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 60
        while asyncio.run(_exists(cluster, stream)) is False:  # the bridge made the stream: it is subscribed
            if time.monotonic() > end or bridge.poll() is not None:
                why = bridge.stderr.read() if bridge.poll() is not None else "no stream after 60 s"
                raise SystemExit(f"the bridge did not start: {why}")
            time.sleep(0.05)
    else:  # the stream exists before the reader subscribes to what comes next
        pub = start([sys.executable, os.path.join(HERE, "nats_publisher.py"), itch, uri, feed, str(rate), "1000",
                     str(messages)])
    reader = start([sys.executable, os.path.join(HERE, "nats_reader.py"), uri, str(messages), "10"])
    go(pub)
    got = json.loads(reader.communicate(timeout=600)[0].strip().splitlines()[-1])
    sent = json.loads(pub.communicate(timeout=600)[0].strip().splitlines()[-1])
    out = {"rate": rate, "messages": messages, "bridged": bridged,
           "publisher": {k: sent.get(k) for k in ("messages", "stored", "dropped_messages", "handed_over_s",
                                                   "total_s")},
           "reader": got}
    if bridge is not None:
        _, err = bridge.communicate(timeout=120)
        out["bridge_exit"] = bridge.returncode
    return out


async def _exists(cluster, stream) -> bool:
    import nats

    nc = await nats.connect(servers=cluster.servers())
    try:
        await nc.jetstream(timeout=2).stream_info(stream)
        return True
    except Exception:  # noqa: BLE001 — not there yet
        return False
    finally:
        await nc.close()


async def _last(cluster, stream):
    import nats

    nc = await nats.connect(servers=cluster.servers())
    try:
        js = nc.jetstream(timeout=2)
        try:
            m = await js.get_last_msg(stream, f"xdpfeed.{stream.lower()}.messages")
        except Exception:  # noqa: BLE001 — no chunk yet, or an election under way
            return None, None
        return m.seq, m.headers.get("Xdpfeed-Publisher", "")
    finally:
        await nc.close()


def failover(cluster, itch: str, rate: float, messages: int) -> float:
    """ms from SIGKILL of the publisher storing to the stream's next chunk stored by the other."""
    stream = f"F{uuid.uuid4().hex[:8].upper()}"
    uri = cluster.uri(stream)
    cmd = [sys.executable, os.path.join(HERE, "nats_publisher.py"), itch, uri, stream.lower(), str(rate), "1000",
           str(messages)]
    pubs = [start(cmd), start(cmd)]
    for p in pubs:
        go(p)
    try:
        time.sleep(2.0)
        seq, who = asyncio.run(_last(cluster, stream))
        victim = next(p for p in pubs if who and who.split(".")[-2] == str(p.pid))
        survivor = next(p for p in pubs if p is not victim)
        victim.send_signal(signal.SIGKILL)
        t_kill = time.perf_counter()
        while True:
            s, w = asyncio.run(_last(cluster, stream))
            if s is not None and s > seq and w.split(".")[-2] == str(survivor.pid):
                return (time.perf_counter() - t_kill) * 1e3
            if time.perf_counter() - t_kill > 30:
                raise SystemExit("the stream did not advance within 30 s of the kill")
            time.sleep(0.001)
    finally:
        for p in pubs:
            p.kill()
            p.wait()


def main(argv=None) -> int:
    p = replay_arguments(__doc__, 2_000_000, 3)
    p.add_argument("--rate", type=float, default=1_000_000, help="messages/s of the paced publisher")
    p.add_argument("--lag-seconds", type=float, default=5.0)
    p.add_argument("--failovers", type=int, default=3)
    args = p.parse_args(argv)
    from xdpfeed.multicast.sinks.nats_local import LocalCluster

    pcap = synthetic_pcap(args.messages, args.data_dir)
    itch = pcap[: -len(".pcap")] + ".itch"
    with LocalCluster(3) as cluster:
        log("throughput: replay with and without a nats: output")
        tp = throughput(cluster, pcap, args.messages, args.repeat)
        log(f"throughput: handler {tp['handler_time_with_nats_over_without']}x, confirmed in the stream at "
            f"{tp['published_msgs_per_s'] / 1e6:.2f}M msg/s")
        n = min(args.messages, int(args.rate * args.lag_seconds))
        lg = lag(cluster, itch, args.rate, n)
        log(f"lag at {args.rate / 1e6:.1f}M msg/s: {json.dumps(lg['reader']['steady_lag_ns'])} (steady)")
        lgb = lag(cluster, itch, args.rate, n, bridged=True)
        log(f"lag at {args.rate / 1e6:.1f}M msg/s through ipc: and a bridge: "
            f"{json.dumps(lgb['reader']['steady_lag_ns'])} (steady)")
        # a paced day of at least 10 s, killed 2 s in
        fo = [failover(cluster, itch, min(200_000, args.messages / 10), args.messages) for _ in range(args.failovers)]
        log(f"failover: {[round(x, 1) for x in fo]} ms")
    print(json.dumps({"benchmark": "nats_output", "machine": machine(os.environ.get("CC", "cc")),
                      "messages": args.messages, "cluster": "3 nats-server processes on loopback, R3 stream",
                      "throughput": tp, "lag_1M": lg, "lag_1M_bridged": lgb, "failover_ms": [round(x, 2) for x in fo],
                      "failover_ms_median": round(statistics.median(fo), 2)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
