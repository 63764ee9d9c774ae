"""Sequencer and recovery benchmark: in-order sequencing cost on the decode+book path, and a gap
filled by SoupBinTCP replay on loopback.

1. In-order traffic: a synthetic day as a MoldUDP64 pcap, read with the pcap source, walked by
   moldudp64.extract and applied to the order book, with and without the sequencer in between
   (baseline: PacketIndex straight into the book; with: extract with control rows → sequencer →
   delivered stream → book). Also the sequencer alone (sink does nothing). Target: ≤ 10% slower.
2. Replay: the venue's SoupBinTCP replay server (a thread in this process) holds the day; the
   handler's sequencer sees packets before and after a hole of `--gap` messages, Recovery (replay
   only) logs in at the first missing sequence and reads the gap. Reported: messages/s of replay
   and the time from gap detection to in-order delivery resuming past the gap. Targets: ≥ 5M msg/s,
   < 50 ms for a 100k-message gap.
Prints one JSON object; medians of --repeat runs.
"""

import argparse
import json
import os
import select
import statistics
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from xdpfeed.capture.batch import LINKTYPE_UDP_PAYLOAD, FrameBatch  # noqa: E402
from xdpfeed.capture.pcapfile import PcapSource  # noqa: E402
from xdpfeed.multicast.book.order_book import OrderBook  # noqa: E402
from xdpfeed.multicast.feed.sequencer import LINE_A, Sequencer  # noqa: E402
from xdpfeed.multicast.wire import counters as C  # noqa: E402
from xdpfeed.multicast.wire.moldudp64 import PacketIndex, Sessions, extract_batch  # noqa: E402

from common import log, machine, summary  # noqa: E402

NO_GROUPS = np.zeros((0, 2), dtype=np.int64)


def in_order_pass(pcap: str, mode: str) -> tuple[float, dict]:
    """One timed pass; mode: 'baseline' (index → book), 'sequenced' (index → sequencer → book),
    'sequencer' (index → sequencer only)."""
    frames, index, cnt = FrameBatch(1024), PacketIndex(1024), C.new()
    sessions = Sessions()
    book = OrderBook() if mode != "sequencer" else None
    seq = Sequencer(sessions) if mode != "baseline" else None

    def to_book(out, first, count, timestamp_ns):
        book.apply_stream(out, first_seq=first)

    def nothing(out, first, count, timestamp_ns):
        pass

    sink = to_book if mode == "sequenced" else nothing
    control = mode != "baseline"
    t0 = time.perf_counter()
    with PcapSource(pcap) as src:
        while src.recv(frames):
            start = 0
            while start < frames.count:
                start = extract_batch(frames, start, NO_GROUPS, sessions, index, cnt, control)
                if seq is None:
                    book.apply_index(frames.data, index)
                else:
                    seq.feed(frames.data, index, LINE_A, sink)
            src.release(frames)
    dt = time.perf_counter() - t0
    check = {"live_orders": book.live_orders if book else None,
             "delivered": int(seq.stats()["delivered"]) if seq else int(cnt[C.MESSAGES])}
    return dt, check


def bench_in_order(pcap: str, messages: int, repeat: int) -> dict:
    log("in-order: warm-up (compile, page cache)")
    for mode in ("baseline", "sequenced", "sequencer"):
        in_order_pass(pcap, mode)
    runs = {m: [] for m in ("baseline", "sequenced", "sequencer")}
    checks = {}
    for i in range(repeat):
        for mode in runs:  # interleaved so drift hits every contender alike
            dt, checks[mode] = in_order_pass(pcap, mode)
            runs[mode].append(dt)
        log(f"in-order run {i + 1}/{repeat}: " + "  ".join(f"{m} {messages / r[-1] / 1e6:.2f}M msg/s"
                                                          for m, r in runs.items()))
    assert checks["baseline"]["live_orders"] == checks["sequenced"]["live_orders"], checks
    assert checks["sequenced"]["delivered"] == messages == checks["sequencer"]["delivered"], (checks, messages)
    out = {m: summary(r, messages) for m, r in runs.items()}
    out["sequenced_over_baseline_time"] = out["sequenced"]["median_s"] / out["baseline"]["median_s"]
    out["target_max_ratio"] = 1.10
    out["check"] = checks
    return out


def _packet(store, first: int, end: int) -> bytes:
    blocks = bytes(store.block_bytes(first, end))
    return store.session + struct.pack(">QH", first, end - first) + blocks


def replay_pass(store, server_addr, gap_first: int, gap: int, password: str) -> dict:
    """Deliver [1, gap_first) by packets, then a packet after the hole; time recovery by replay."""
    from xdpfeed.multicast.feed.recovery import Recovery, RecoveryPolicy

    sessions = Sessions()
    seq = Sequencer(sessions, hold_messages=1 << 12)
    delivered = [0]

    def sink(out, first, count, timestamp_ns):
        delivered[0] += count

    rec = Recovery(seq, sink, time.monotonic, RecoveryPolicy(request_delay=0.0001), (), [server_addr],
                   "bench", password)
    frames, index, cnt = FrameBatch(4), PacketIndex(4), C.new()
    gap_end = gap_first + gap

    def feed(*payloads):
        data = b"".join(payloads)
        frames.data = np.frombuffer(data, dtype=np.uint8).copy()
        o = 0
        for i, p in enumerate(payloads):
            frames.offset[i], frames.length[i], frames.linktype[i] = o, len(p), LINKTYPE_UDP_PAYLOAD
            o += len(p)
        frames.count = len(payloads)
        extract_batch(frames, 0, NO_GROUPS, sessions, index, cnt, True)
        seq.feed(frames.data, index, LINE_A, sink)

    for a in range(1, gap_first, 1000):
        feed(_packet(store, a, min(a + 1000, gap_first)))
    t_detect = time.perf_counter()
    feed(_packet(store, gap_end, gap_end + 10))
    t_first = None
    while seq.expected < gap_end + 10:
        rec.poll()
        if t_first is None and rec.replay is not None and rec.replay.messages:
            t_first = time.perf_counter()
        readers, writers = rec.fileobjs()
        if (readers or writers) and seq.expected < gap_end + 10:
            select.select(readers, writers, [], 0.01)
        if time.perf_counter() - t_detect > 30:
            raise RuntimeError(f"replay did not fill the gap in 30 s: {seq.stats()}")
    t_resume = time.perf_counter()
    replayed = seq.line_stats(3)["first"]
    rec.close()
    assert delivered[0] >= gap_end + 9 and replayed >= gap, (delivered, replayed)  # replay may read past the gap
    return {"detect_to_resume_s": t_resume - t_detect, "replay_msgs_per_s": gap / (t_resume - t_detect),
            "first_replayed_after_s": (t_first or t_resume) - t_detect}


def bench_replay(messages_in_store: int, gap: int, repeat: int) -> dict:
    from xdpfeed.multicast.exchange import synthetic
    from xdpfeed.multicast.exchange.replay_server import ReplayServer
    from xdpfeed.multicast.exchange.store import DayStore

    store = DayStore(synthetic.generate(messages_in_store, seed=7)[0])
    password = "benchpw"
    gap_first = 5_001
    runs = []
    with ReplayServer(store, {"bench": password}) as server:
        replay_pass(store, server.address, gap_first, min(gap, 1000), password)  # warm-up
        for i in range(repeat):
            r = replay_pass(store, server.address, gap_first, gap, password)
            runs.append(r)
            log(f"replay run {i + 1}/{repeat}: gap of {gap:,} filled in {r['detect_to_resume_s'] * 1e3:.1f} ms "
                f"({r['replay_msgs_per_s'] / 1e6:.2f}M msg/s)")
    med = statistics.median(r["detect_to_resume_s"] for r in runs)
    return {"gap_messages": gap, "detect_to_resume_ms_median": med * 1e3,
            "replay_msgs_per_s_median": gap / med,
            "first_message_after_ms_median": statistics.median(r["first_replayed_after_s"] for r in runs) * 1e3,
            "runs": runs, "targets": {"replay_msgs_per_s": 5e6, "detect_to_resume_ms": 50}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=2_000_000, help="messages in the in-order day")
    p.add_argument("--gap", type=int, default=100_000, help="messages in the replayed gap")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--data-dir", default=os.path.join(HERE, ".data"))
    p.add_argument("--skip", default="", help="comma-separated: in_order,replay")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    from xdpfeed.multicast.exchange import synthetic

    result = {"benchmark": "sequencer_recovery", "machine": machine(os.environ.get("CC", "cc")),
              "repeat": args.repeat}
    if "in_order" not in skip:
        base = os.path.join(args.data_dir, f"day_{args.messages}_1")
        log(f"data: {base}.pcap (generated once, then reused)")
        synthetic.generate_to_file(base + ".itch", args.messages, seed=1, pcap_path=base + ".pcap")
        result["in_order"] = bench_in_order(base + ".pcap", args.messages, args.repeat)
    if "replay" not in skip:
        result["replay"] = bench_replay(args.gap + 20_000, args.gap, args.repeat)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
