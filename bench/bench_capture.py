"""Capture benchmark (root): the same sender, in one namespace, feeds the live handler in another
namespace over a veth pair, through each packet source in turn; every packet goes through the whole
handler (frames → MoldUDP64 → sequencer → book).

Sources: the UDP socket path (recvmmsg, the baseline), AF_PACKET TPACKET_V3, AF_XDP in native
(driver) mode and in skb (generic) mode, and DPDK's af_xdp and af_packet poll-mode drivers on the
same veth (`dpdk:net_af_xdp0`, `dpdk:net_af_packet0`). Two runs per source: the sender at full speed
(what the receiver keeps up with: received packets/s, and loss), and the sender paced at `--pps`
(target: 0 loss). Beside them, with no sender: the same frames read from a capture file in memory
(tmpfs) by DPDK's net_pcap and by our pcap: source, through the same handler. The sender is an XDP
program run with BPF_PROG_TEST_RUN in live-frames mode on the other end of the veth (bench/xdp_gen.bpf.c
+ its loader bench/xdp_gen.c, compiled in every run): it sends one Ethernet/IPv4/UDP/MoldUDP64 frame
of one ITCH trade message again and again, stamping the next sequence number into each copy, at rates
no socket sender reaches on this VM; when paced, the program itself drops the runs that come before
the next frame is due, so frames leave evenly spaced.
Prints one JSON object; ratios are against the UDP socket path measured in the same run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import log, machine  # noqa: E402

GROUP, PORT = "239.198.7.1", 31001
SOURCES = ("udp", "packet", "afxdp-native", "afxdp-skb", "dpdk-af_xdp", "dpdk-af_packet", "dpdk-pcap", "pcap")
FILE_SOURCES = ("dpdk-pcap", "pcap")  # read a capture in memory: no sender, no loss possible
FRAMES = 1 << 15  # AF_XDP UMEM frames (= RX ring size): 16 ms of slack at 2 Mpps
DPDK = "rxd=4096&mbufs=32767"  # DPDK ports: a 4096-descriptor RX ring and 32767 mbufs behind it


# --------------------------------------------------------------------------------------- the sender
def build_generator(tmp: str) -> tuple[str, str]:
    """Compile the XDP generator program and its loader (clang + libbpf), as in every run."""
    obj, exe = os.path.join(tmp, "xdp_gen.bpf.o"), os.path.join(tmp, "xdp_gen")
    arch = f"/usr/include/{os.uname().machine}-linux-gnu"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-I{arch}", "-c", os.path.join(HERE, "xdp_gen.bpf.c"),
                    "-o", obj], check=True)
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-o", exe, os.path.join(HERE, "xdp_gen.c"), "-lbpf"],
                   check=True)
    return obj, exe


def frame_template(src_ip: str, path: str) -> None:
    """Ethernet/IPv4/UDP/MoldUDP64 frame with one ITCH 'P' (trade) message; the generator stamps the
    sequence number of each copy."""
    import socket
    import struct

    g = socket.inet_aton(GROUP)
    msg = b"P" + struct.pack(">HH", 1, 0) + (34_200_000_000_000).to_bytes(6, "big") + struct.pack(">Q", 0) + b"B"
    msg += struct.pack(">I", 100) + b"XDPF    " + struct.pack(">IQ", 1_000_000, 7)
    assert len(msg) == 44
    mold = b"BENCHCAP01" + struct.pack(">QH", 0, 1) + struct.pack(">H", len(msg)) + msg
    udp = struct.pack(">HHHH", PORT, PORT, 8 + len(mold), 0) + mold
    ip = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 1, 17, 0,
                               socket.inet_aton(src_ip), g))
    csum = sum(struct.unpack(">10H", ip))
    while csum >> 16:
        csum = (csum & 0xFFFF) + (csum >> 16)
    ip[10:12] = struct.pack(">H", ~csum & 0xFFFF)
    eth = bytes((0x01, 0x00, 0x5E, g[1] & 0x7F, g[2], g[3])) + bytes.fromhex("020000000001") + b"\x08\x00"
    with open(path, "wb") as f:
        f.write(eth + bytes(ip) + udp)


# ------------------------------------------------------------------------------------- the receiver
def receive(source_name: str, pair, gen: tuple[str, str, str], packets: int, pps: float) -> dict:
    from pyroute2 import netns

    from xdpfeed.capture.uri import open_source
    from xdpfeed.multicast.feed.feed import Feed

    uri = {"udp": f"udp:{GROUP}:{PORT}@{pair.if_b}", "packet": f"packet:{pair.if_b}?group={GROUP}:{PORT}",
           "afxdp-native": f"afxdp:{pair.if_b}?group={GROUP}:{PORT}&mode=native&frames={FRAMES}",
           "afxdp-skb": f"afxdp:{pair.if_b}?group={GROUP}:{PORT}&mode=skb&frames={FRAMES}",
           "dpdk-af_xdp": f"dpdk:net_af_xdp0,iface={pair.if_b}?group={GROUP}:{PORT}&{DPDK}",
           "dpdk-af_packet": f"dpdk:net_af_packet0,iface={pair.if_b},framecnt={FRAMES}?group={GROUP}:{PORT}&{DPDK}",
           }[source_name]
    netns.pushns(pair.ns_b)
    try:
        src = open_source(uri)
    finally:
        netns.popns()
    h = Feed(line_a=src, start="first", hold_messages=1 << 20, warm=False)
    book, seq = h.book, h.seq
    obj, exe, frame = gen
    cmd = ["ip", "netns", "exec", pair.ns_a, exe, obj, pair.if_a, frame, str(packets), "1", str(pps)]
    h.step(0)  # everything loaded and the rings armed before the first frame
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = last = None
    got = 0
    try:
        while True:
            n = h.step(0.05)
            now = time.perf_counter()
            if n:
                got += n
                first = first or now
                last = now
            if proc.poll() is not None and (last is None or now - last > 0.5):
                break
    finally:
        out, err = proc.communicate()
        stats = src.stats()
        h.close()
    if proc.returncode != 0:
        raise RuntimeError(f"sender failed: {err.strip()[-500:]}")
    sent = json.loads(out)
    st = seq.stats()
    received = stats["packets"]
    if sent.get("stamped") != sent["sent"]:
        raise RuntimeError(f"generator stamped {sent.get('stamped')} of {sent['sent']} frames")
    span = (last - first) if first and last and last > first else float("nan")
    return {"source": source_name, "mode": stats["mode"], "sent": sent["sent"], "sender_pps": sent["pps"],
            "sender_test_runs": sent["calls"],
            "received": received, "received_pps": received / span if span == span else 0.0,
            "loss": sent["sent"] - received, "loss_ratio": (sent["sent"] - received) / sent["sent"],
            "drops": stats["drops"], "delivered_messages": st["delivered"], "gaps": st["gaps"],
            "book_live_orders": book.live_orders}


def capture_file(src_ip: str, frame_path: str, path: str, packets: int) -> None:
    """The generator's frame `packets` times as a nanosecond pcap, sequence numbers 1.. stamped as the
    generator stamps them (MoldUDP64 sequence at frame offset 52), 1 µs apart."""
    import numpy as np

    frame = np.fromfile(frame_path, dtype=np.uint8)
    rec = np.zeros((packets, 16 + frame.size), dtype=np.uint8)
    ts = 1_700_000_000_000_000_000 + np.arange(packets, dtype=np.int64) * 1000
    hdr = rec[:, :16].view("<u4")
    hdr[:, 0], hdr[:, 1] = ts // 1_000_000_000, ts % 1_000_000_000
    hdr[:, 2] = hdr[:, 3] = frame.size
    rec[:, 16:] = frame
    rec[:, 16 + 52 : 16 + 60] = np.arange(1, packets + 1, dtype=">u8").view(np.uint8).reshape(packets, 8)
    with open(path, "wb") as f:
        f.write(np.array([0xA1B23C4D, 0x00040002, 0, 0, 65535, 1], dtype="<u4").tobytes())
        rec.tofile(f)


def read_file(source_name: str, path: str, packets: int) -> dict:
    """The handler over a capture in memory: frames/s from the first frame to the end of the file."""
    from xdpfeed.capture.uri import open_source
    from xdpfeed.multicast.feed.feed import Feed
    from xdpfeed.multicast.feed.lines import group_array

    uri = {"dpdk-pcap": f"dpdk:net_pcap0,rx_pcap={path}?{DPDK}&group={GROUP}:{PORT}", "pcap": f"pcap:{path}"}
    src = open_source(uri[source_name])
    h = Feed(line_a=src, start="first", hold_messages=1 << 20, warm=False)
    h.lines[0].groups = group_array([(GROUP, PORT)])  # a pcap: source names no group of its own
    seq = h.seq
    t0 = time.perf_counter()
    while not h.lines[0].exhausted:
        h.step(0)
    span = time.perf_counter() - t0
    stats = src.stats()
    h.close()
    st = seq.stats()
    return {"source": source_name, "mode": stats["mode"], "sent": packets, "received": stats["packets"],
            "received_pps": stats["packets"] / span, "loss": packets - stats["packets"],
            "loss_ratio": (packets - stats["packets"]) / packets, "drops": stats["drops"],
            "delivered_messages": st["delivered"], "gaps": st["gaps"]}


def measure(name: str, pair, gen, shm: str, n: int, args) -> dict:
    """Full-speed runs (median), then the paced run, of one source."""
    full = []
    for i in range(args.repeat):
        r = read_file(name, shm, n) if name in FILE_SOURCES else receive(name, pair, gen, n, 0)
        full.append(r)
        sent = f"sent {r['sender_pps'] / 1e6:.2f} Mpps" if "sender_pps" in r else "a capture in memory"
        log(f"{name} full speed run {i + 1}: {sent}, received {r['received_pps'] / 1e6:.2f} Mpps, "
            f"loss {r['loss_ratio']:.2%}")
    entry = {"full_speed_runs": full, "received_pps_median": statistics.median(r["received_pps"] for r in full),
             "loss_ratio_median": statistics.median(r["loss_ratio"] for r in full)}
    if args.pps > 0 and name not in FILE_SOURCES:
        r = receive(name, pair, gen, n, args.pps)
        entry["paced"] = r
        log(f"{name} paced at {args.pps / 1e6:.2f} Mpps: sender {r['sender_pps'] / 1e6:.2f} Mpps, loss {r['loss']:,}")
    return entry


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packets", type=int, default=2_000_000, help="packets (one ITCH message each) per run")
    p.add_argument("--pps", type=float, default=1_000_000, help="paced run: packets/s (0: skip the paced run)")
    p.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated, of {', '.join(SOURCES)}")
    p.add_argument("--repeat", type=int, default=3, help="full-speed runs per source (median reported)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:  # `make bench` as a user: say why nothing was measured
        print(json.dumps({"benchmark": "capture", "skipped": "needs root: network namespaces, a veth pair, AF_XDP"}))
        return 0
    from xdpfeed.capture.netns import veth_pair
    from xdpfeed.multicast.feed.warmup import warm_up

    warm_up()  # compiled code loaded before any source opens

    result = {"benchmark": "capture", "machine": machine(os.environ.get("CC", "cc")), "repeat": args.repeat}
    with tempfile.TemporaryDirectory() as tmp:
        obj, exe = build_generator(tmp)
        n = args.packets
        result["packets_per_run"] = n
        runs = {}
        with veth_pair() as pair:
            frame = os.path.join(tmp, "frame.bin")
            frame_template(pair.addr_a, frame)
            gen = (obj, exe, frame)
            # NAPI on the receiving end, so the generator's XDP_TX frames are taken even without an XDP program
            subprocess.run(["ip", "netns", "exec", pair.ns_b, "ethtool", "-K", pair.if_b, "gro", "on"], check=True,
                           capture_output=True)
            names = args.sources.split(",")
            shm = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else tmp, f"bench-capture-{os.getpid()}.pcap")
            try:
                if any(name in FILE_SOURCES for name in names):
                    capture_file(pair.addr_a, frame, shm, n)
                for name in names:
                    runs[name] = measure(name, pair, gen, shm, n, args)
            finally:
                if os.path.exists(shm):
                    os.unlink(shm)
    base = runs.get("udp", {}).get("received_pps_median")
    for entry in runs.values():
        entry["over_udp_socket"] = entry["received_pps_median"] / base if base else None
    result["sources"] = runs
    result["targets"] = {"afxdp_native_over_udp_socket": 4.0, "paced_pps": args.pps, "paced_loss": 0}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
