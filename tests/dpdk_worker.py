"""DPDK checks that run in a process of their own (an EAL is initialised once per process and lives
until exit): tests/test_dpdk.py runs `python tests/dpdk_worker.py COMMAND ARGS...` and reads the one
JSON object it prints.

- `streams FILE...`: each capture decoded and booked twice, from `FILE` and from
  `dpdk:net_pcapN,rx_pcap=FILE`: a digest of the decoded stream, the counters, the sessions, the book's
  checksum, and the DPDK source's stats.
- `eal FILE`: how the EAL and two ports behave in one process (see the test that reads it).
- `drops FILE MBUF_SIZE`: frames handed out and the source's stats, read to the end with small mbufs.
- `drain URI`: opens the source, prints `ready`, waits for a line on stdin, then reads until nothing
  came for 0.5 s: the frames received (all, and those to UDP port 5001) and the source's stats.
"""

import hashlib
import json
import os
import sys

from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.uri import open_source
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.itch.input_format import detect
from xdpfeed.multicast.itch.pipeline import Decode, replay_into_book
from xdpfeed.multicast.itch.schema import TYPES
from xdpfeed.multicast.wire.counters import as_dict


def digest(path: str) -> dict:
    """Independent of batch boundaries: the order of types, and each type's records in order."""
    run = Decode(path)
    order, per_type = hashlib.sha256(), [hashlib.sha256() for _ in TYPES]
    n = 0
    for _, tables in run.batches():
        order.update(tables.order_type[: tables.count].tobytes())
        for code, t in enumerate(TYPES):
            per_type[code].update(tables[t].tobytes())
        n += tables.count
    book = OrderBook()
    replay_into_book(path, book, fmt=detect(path))
    names = run.sessions.names()
    return {"messages": n, "stream": order.hexdigest() + "".join(h.hexdigest()[:16] for h in per_type),
            "counters": as_dict(run.counters), "sessions": [str(x) for x in names], "book": book.checksum()}


def streams(files: list[str]) -> dict:
    out = []
    for i, f in enumerate(files):
        uri = f"dpdk:net_pcap{i},rx_pcap={f}"
        with open_source(uri) as src:  # the source's own counts, read to the end
            b = FrameBatch(1024)
            while src.recv(b) or not src.exhausted:
                src.release(b)
            stats = src.stats()
        out.append({"file": f, "pcap": digest(f), "dpdk": digest(uri), "stats": stats})
    return {"files": out}


def eal(path: str) -> dict:
    from xdpfeed.capture import dpdk_eal

    res = {"affinity_before": sorted(os.sched_getaffinity(0))}
    a = open_source(f"dpdk:net_pcap0,rx_pcap={path}?mbufs=2048&rxd=256&burst=64")
    res["affinity_after"] = sorted(os.sched_getaffinity(0))
    res["eal"] = dpdk_eal.arguments_in_force()
    prefix = res["eal"][res["eal"].index("--file-prefix") + 1]
    res["runtime_dir_left"] = any(os.path.exists(os.path.join(d, prefix)) for d in dpdk_eal.RUNTIME_DIRS)
    try:
        open_source(f"dpdk:net_pcap1,rx_pcap={path}?mem=512")
    except SourceError as e:
        res["conflict"] = str(e)
    try:
        open_source(f"dpdk:net_pcap0,rx_pcap={path}")
    except SourceError as e:
        res["same_name"] = str(e)
    b = open_source(f"dpdk:net_pcap1,rx_pcap={path}")  # a second port, same EAL
    fa, fb = FrameBatch(1024), FrameBatch(1024)
    res["a_first"], res["b_first"] = a.recv(fa), b.recv(fb)
    res["a_bytes_equal_b"] = fa.frame(0) == fb.frame(0)
    try:
        a.recv(fa)
    except RuntimeError as e:
        res["recv_twice"] = str(e)
    a.release(fa)
    res["a_second"] = a.recv(fa)
    a.release(fa)
    a.close()
    res["stats_after_close"] = a.stats()
    try:
        a.recv(fa)
    except SourceError as e:
        res["recv_closed"] = str(e)
    c = open_source(f"dpdk:net_pcap0,rx_pcap={path}")  # the closed port's name can be used again
    res["reopened_first"] = c.recv(fa)
    c.release(fa)
    b.release(fb)
    return res  # b and c stay open: the exit cleanup closes them before rte_eal_cleanup


def drops(path: str, mbuf_size: str) -> dict:
    with open_source(f"dpdk:net_pcap0,rx_pcap={path}?mbuf_size={mbuf_size}") as src:
        b, lengths = FrameBatch(1024), []
        while (n := src.recv(b)) or not src.exhausted:
            lengths += [int(x) for x in b.length[:n]]
            src.release(b)
        return {"lengths": lengths, "stats": src.stats()}


def drain(uri: str) -> dict:
    import time

    with open_source(uri) as src:
        print("ready", flush=True)
        sys.stdin.readline()
        b, frames, feed, last = FrameBatch(1024), 0, 0, time.monotonic()
        while time.monotonic() - last < 0.5:
            n = src.recv(b)
            if n:
                last, frames = time.monotonic(), frames + n
                feed += sum(int(b.data[o + 36]) << 8 | int(b.data[o + 37]) == 5001 for o in b.offset[:n])
                src.release(b)
        return {"frames": frames, "feed": int(feed), "stats": src.stats()}


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    print(json.dumps({"streams": lambda: streams(args), "eal": lambda: eal(args[0]),
                      "drops": lambda: drops(*args), "drain": lambda: drain(args[0])}[cmd](), sort_keys=True))
