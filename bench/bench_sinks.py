"""Output cost: a Feed replaying a synthetic day (pcap source → MoldUDP64 → sequencer, without the book:
its 100-200 ns per message and their run-to-run noise on this VM would hide the outputs' cost) with no
output, then with each output alone (itch:, dbn:, parquet:, ipc: with no subscriber), and the whole
handler (with its book, no output), interleaved run by run. Reported: the ns each output adds per message,
and that cost over the whole handler's. Then ipc: with 1 and with 4 subscriber processes
(bench/ipc_reader.py) reading everything: the handler's rate, what each subscriber received (gaps,
missed), and the publish → receive latency per sample (p50, p99, p99.9), with subscribers that wait on
the publisher's notification and with subscribers that spin; and the transport alone (a publisher of
ready batches, at full speed and paced at 1M msg/s).

    python bench/bench_sinks.py [--messages 5000000] [--repeat 5]

Goals: ipc: carries at least 20M msg/s to 4 subscribers while slowing the handler by less than 10 %, p99
below 20 µs; file outputs slow the handler by less than 30 %. Prints one JSON object.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import interleaved, log, machine, replay_arguments, summary, synthetic_pcap  # noqa: E402

OUTPUTS = ("itch", "dbn", "parquet", "ipc")
FILE_KINDS = ("none", "itch", "dbn", "parquet", "ipc", "handler")  # handler: no output, with the book


def outputs_for(kind: str, tmp: str, name: str) -> list[str]:
    return {"none": [], "handler": [], "itch": [f"itch:{tmp}/out.itch"], "dbn": [f"dbn:{tmp}/out.dbn"],
            "parquet": [f"parquet:{tmp}/pq"], "ipc": [f"ipc:{name}"]}[kind]


def one_pass(pcap: str, outputs: list[str], before_run=None, book: bool = False) -> tuple[float, int]:
    from xdpfeed import Feed

    with Feed(line_a=f"pcap:{pcap}", outputs=outputs, book=book, warm=False) as feed:
        if before_run is not None:
            before_run(feed)
        t0 = time.perf_counter()
        why = feed.run()
        dt = time.perf_counter() - t0
        assert why == "sources exhausted" and not feed.sink_failures, (why, feed.sink_failures)
        delivered = feed.state.delivered
    return dt, delivered


def readers_pass(pcap: str, n: int, spin: bool) -> dict:
    """One pass with ipc: and n reader processes; the handler's time and what each reader saw."""
    name = f"bench{uuid.uuid4().hex[:10]}"
    procs = []

    def start_readers(feed):
        for _ in range(n):
            p = subprocess.Popen([sys.executable, os.path.join(HERE, "ipc_reader.py"), name,
                                  "spin" if spin else "wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            assert p.stderr.readline().strip() == "ready"
            procs.append(p)
        while feed.sinks[0].subscribers < n:
            time.sleep(0.01)

    dt, delivered = one_pass(pcap, [f"ipc:{name}?subscribers={max(n, 1)}"], start_readers)
    readers = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    return {"seconds": dt, "delivered": delivered, "readers": readers}


def transport(records, n: int, spin: bool, batch: int, rate: float) -> dict:
    """The ipc: output alone (no feed): the day's messages published from memory in batches of `batch`
    messages (paced at `rate` msg/s, 0: as fast as possible) to n reader processes."""
    import numpy as np

    from xdpfeed.multicast.feed.consumers import MessageBatch
    from xdpfeed.multicast.sinks.ipc import IpcSink

    name = f"bench{uuid.uuid4().hex[:10]}"
    sink = IpcSink(f"ipc:{name}", name, subscribers=max(n, 1))
    procs = []
    for _ in range(n):
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "ipc_reader.py"), name, "spin" if spin else "wait"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stderr.readline().strip() == "ready"
        procs.append(p)
    while sink.subscribers < n:
        time.sleep(0.01)
    starts = [0]
    pos = 0
    while pos < records.size:  # message boundaries, every `batch` messages
        k = 0
        while k < batch and pos < records.size:
            pos += 2 + ((int(records[pos]) << 8) | int(records[pos + 1]))
            k += 1
        starts.append(pos)
    b, seq = MessageBatch(), 1
    ts = np.ones(batch, dtype=np.int64)
    period = batch / rate if rate else 0.0
    t0 = time.perf_counter()
    for i in range(len(starts) - 1):
        if period:
            while time.perf_counter() < t0 + i * period:
                pass
        stream = records[starts[i]:starts[i + 1]]
        count = batch if i < len(starts) - 2 else _count(stream)
        sink.on_messages(b.set(stream, seq, count, ts[:count], "BENCH"))
        seq += count
    dt = time.perf_counter() - t0
    sink.close()
    readers = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    return {"messages": seq - 1, "seconds": dt, "msgs_per_s": (seq - 1) / dt, "batch": batch, "rate": rate,
            "readers": readers}


def _head(records, n: int):
    """The first n messages of a [uint16 length][message] stream."""
    pos = 0
    for _ in range(n):
        pos += 2 + ((int(records[pos]) << 8) | int(records[pos + 1]))
    return records[:pos]


def _count(stream) -> int:
    pos = n = 0
    while pos < stream.size:
        pos += 2 + ((int(stream[pos]) << 8) | int(stream[pos + 1]))
        n += 1
    return n


def main(argv=None) -> int:
    p = replay_arguments(__doc__, 5_000_000, 5)
    args = p.parse_args(argv)
    pcap = synthetic_pcap(args.messages, args.data_dir)
    base = pcap[:-len(".pcap")]
    tmp = tempfile.mkdtemp(prefix="xdpfeed-bench-sinks-")
    try:
        def file_pass(kind):
            shutil.rmtree(os.path.join(tmp, "pq"), ignore_errors=True)
            return one_pass(pcap, outputs_for(kind, tmp, f"bench{uuid.uuid4().hex[:10]}"), book=kind == "handler")

        res = interleaved(FILE_KINDS, args.repeat, args.messages, file_pass)
        none = res["none"]["median_s"]
        ipc_runs = {}
        for n in (1, 4):
            for spin in (False, True):
                key = f"ipc_{n}_readers_{'spin' if spin else 'wait'}"
                passes = [readers_pass(pcap, n, spin) for _ in range(max(1, args.repeat // 2))]
                secs = [x["seconds"] for x in passes]
                med = sorted(passes, key=lambda x: x["seconds"])[len(passes) // 2]
                ipc_runs[key] = {**summary(secs, args.messages), "time_over_no_output": round(
                    summary(secs, args.messages)["median_s"] / none, 3), "readers": med["readers"]}
                r = med["readers"]
                p99 = [round(x["latency_ns"].get("p99", 0) / 1e3, 1) for x in r]
                log(f"{key}: {args.messages / ipc_runs[key]['median_s'] / 1e6:.2f}M msg/s, readers got "
                    f"{[x['messages'] for x in r]}, p99 {p99} µs")
        import numpy as np

        records = np.fromfile(base + ".itch", dtype=np.uint8)
        transports = {}
        for n in (1, 4):
            transports[f"max_rate_{n}_readers"] = transport(_head(records, 600_000), n, False, 1024, 0)
            for spin in (False, True):
                transports[f"paced_1M_msgs_{n}_readers_{'spin' if spin else 'wait'}"] = transport(
                    _head(records, 60_000), n, spin, 64, 1_000_000)
        for k, v in transports.items():
            lat = [(round(r["latency_ns"].get("p50", 0) / 1e3, 1), round(r["latency_ns"].get("p99", 0) / 1e3, 1))
                   for r in v["readers"]]
            log(f"transport {k}: {v['msgs_per_s'] / 1e6:.2f}M msg/s, readers got "
                f"{[r['messages'] for r in v['readers']]}, p50/p99 {lat} µs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base_ns, handler_ns = res["none"]["ns_per_msg"], res["handler"]["ns_per_msg"]
    added = {k: round(res[k]["ns_per_msg"] - base_ns, 2) for k in OUTPUTS}
    slowdown = {k: round(1 + added[k] / handler_ns, 3) for k in OUTPUTS}
    slowdown_4 = round(1 + (ipc_runs["ipc_4_readers_wait"]["ns_per_msg"] - base_ns) / handler_ns, 3)
    four = transports["max_rate_4_readers"]
    paced4 = transports["paced_1M_msgs_4_readers_wait"]
    out = {
        "benchmark": "output_cost", "machine": machine(os.environ.get("CC", "cc")), "messages": args.messages,
        "runs": res, "time_over_no_output": {k: round(res[k]["median_s"] / none, 3) for k in OUTPUTS},
        "added_ns_per_msg": added,
        # what an output adds, over the whole handler (with its book) measured in the same run
        "handler_time_with_output_over_without": slowdown,
        "ipc": ipc_runs, "ipc_transport": transports,
        "goals": {
            "ipc_4_readers_msgs_per_s": four["msgs_per_s"], "ipc_4_readers_msgs_per_s_met": four["msgs_per_s"] >= 20e6,
            "ipc_4_readers_all_received": all(r["messages"] == four["messages"] and r["missed"] == 0
                                              for r in four["readers"]),
            "handler_slowdown_ipc_4_readers": slowdown_4,
            "handler_slowdown_ipc_4_readers_met": slowdown_4 < 1.10,
            "ipc_paced_p99_ns_worst": max(r["latency_ns"].get("p99", 0) for r in paced4["readers"]),
            "ipc_paced_p99_met": max(r["latency_ns"].get("p99", 0) for r in paced4["readers"]) < 20_000,
            "file_slowdown_met": {k: slowdown[k] < 1.30 for k in ("itch", "dbn", "parquet")},
        },
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
