"""capture.packet: the AF_PACKET TPACKET_V3 source.

Unprivileged: the ring structs against the kernel header (compiled with gcc), the BPF program run by
a small classic-BPF interpreter over scapy frames, argument errors. Root (a veth pair between two
fresh namespaces): exactly the datagrams sent from the other namespace arrive, with their bytes and
sane timestamps; the socket filter keeps other traffic out of the ring; VLAN tags come back; batches
that end inside a block; ring-full drops counted; fanout; the IGMP join.
"""

import os
import select
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from xdpfeed.capture.batch import LINKTYPE_ETHERNET, FrameBatch
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.netns import inside
from xdpfeed.capture.packet import TPACKET3_HDR, TPACKET_BLOCK_DESC, PacketSource, udp_filter

from helpers import kernel_realtime

G, P = "239.77.1.1", 26477


# ------------------------------------------------------------------------------------------ helpers


def sender(v, ifname=None):
    with inside(v.ns_b):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        idx = socket.if_nametoindex(ifname or v.if_b)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, bytes(8) + idx.to_bytes(4, sys.byteorder))
    return s


def drain(src, want, timeout=5.0, batch=None, settle=0.1):
    """Frames (bytes, ts) until `want` arrived (then `settle` more seconds for any extra) or timeout."""
    batch = batch or FrameBatch(1024)
    got = []
    poller = select.poll()
    poller.register(src.fileno(), select.POLLIN)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = src.recv(batch)
        got += [(batch.frame(i), int(batch.timestamp_ns[i])) for i in range(n)]
        assert all(batch.linktype[:n] == LINKTYPE_ETHERNET)
        src.release(batch)
        if not n:
            if len(got) >= want:
                break
            poller.poll(20)
        if len(got) == want:
            deadline = min(deadline, time.monotonic() + settle)
    return got


def payloads(frames):
    return [bytes(Ether(f)[UDP].payload) for f, _ in frames if UDP in Ether(f)]


def run_bpf(prog, pkt: bytes) -> int:
    """Classic BPF as the kernel runs it (the subset udp_filter emits); a load past the end drops."""
    a = x = pc = 0
    mem = [0] * 16

    def load(at, size):
        if at + size > len(pkt):
            raise IndexError
        return int.from_bytes(pkt[at : at + size], "big")

    sizes = {0x20: 4, 0x28: 2, 0x30: 1, 0x40: 4, 0x48: 2, 0x50: 1}
    try:
        while True:
            code, jt, jf, k = prog[pc]
            if code in sizes:
                a = load(k + (x if code & 0x40 else 0), sizes[code])
            elif code == 0x60:
                a = mem[k]
            elif code == 0x01:
                x = k
            elif code == 0x02:
                mem[k] = a
            elif code == 0x07:
                x = a
            elif code == 0x54:
                a &= k
            elif code == 0x64:
                a = (a << k) & 0xFFFFFFFF
            elif code == 0x0C:
                a = (a + x) & 0xFFFFFFFF
            elif code == 0x15:
                pc += jt if a == k else jf
            elif code == 0x45:
                pc += jt if a & k else jf
            elif code == 0x06:
                return k
            else:
                raise AssertionError(f"unexpected opcode {code:#x}")
            pc += 1
    except IndexError:
        return 0


def eth(l3, vlan=None):
    l2 = Ether(src="02:00:00:00:00:01", dst="01:00:5e:4d:01:01")
    return bytes((l2 / Dot1Q(vlan=vlan) if vlan else l2) / l3)


# ------------------------------------------------------------------------------------------ unprivileged


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to compile linux/if_packet.h")
def test_ring_structs_match_the_kernel_header(tmp_path):
    fields = {"tpacket_block_desc": ["version", "offset_to_priv", "hdr.bh1.block_status", "hdr.bh1.num_pkts",
                                     "hdr.bh1.offset_to_first_pkt", "hdr.bh1.blk_len", "hdr.bh1.seq_num",
                                     "hdr.bh1.ts_first_pkt", "hdr.bh1.ts_last_pkt"],
              "tpacket3_hdr": ["tp_next_offset", "tp_sec", "tp_nsec", "tp_snaplen", "tp_len", "tp_status", "tp_mac",
                               "tp_net", "hv1.tp_rxhash", "hv1.tp_vlan_tci", "hv1.tp_vlan_tpid", "tp_padding"]}
    body = "".join(f'printf("%zu\\n", offsetof(struct {s}, {f}));' for s, fs in fields.items() for f in fs)
    body += 'printf("%zu\\n%zu\\n", sizeof(struct tpacket_block_desc), sizeof(struct tpacket3_hdr));'
    (tmp_path / "o.c").write_text("#include <stddef.h>\n#include <stdio.h>\n#include <linux/if_packet.h>\n"
                                  f"int main(void) {{ {body} return 0; }}\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "o"), str(tmp_path / "o.c")], check=True)
    c = [int(v) for v in subprocess.run([str(tmp_path / "o")], capture_output=True, text=True).stdout.split()]
    ours = [TPACKET_BLOCK_DESC.fields[n][1] for n in ("version", "offset_to_priv", "block_status", "num_pkts",
                                                      "offset_to_first_pkt", "blk_len", "seq_num", "ts_first_sec",
                                                      "ts_last_sec")]
    ours += [TPACKET3_HDR.fields[n][1] for n in ("tp_next_offset", "tp_sec", "tp_nsec", "tp_snaplen", "tp_len",
                                                 "tp_status", "tp_mac", "tp_net", "tp_rxhash", "tp_vlan_tci",
                                                 "tp_vlan_tpid", "tp_padding")]
    assert c == ours + [TPACKET_BLOCK_DESC.itemsize, TPACKET3_HDR.itemsize]


def test_udp_filter_keeps_only_the_groups():
    prog = udp_filter([(G, P), ("239.77.1.2", 0), (G, P)])  # a duplicate pair is kept once
    ok = [
        eth(IP(dst=G) / UDP(dport=P) / b"x"),
        eth(IP(dst=G, options=b"\x94\x04\x00\x00") / UDP(dport=P) / b"x"),  # IHL 6
        eth(IP(dst="239.77.1.2") / UDP(dport=1) / b"x"),  # port 0 in the filter: any port
        eth(IP(dst=G, flags="MF") / UDP(dport=P) / b"x"),  # a first fragment still has its UDP header
        eth(IP(dst=G, options=b"\x94\x04\x00\x00") / UDP(dport=P) / b"x", vlan=141),  # QinQ's inner tag
    ]
    dropped = [
        eth(IP(dst=G) / UDP(dport=P + 1) / b"x"),
        eth(IP(dst="239.77.1.3") / UDP(dport=P) / b"x"),
        eth(IP(dst=G) / TCP(dport=P)),
        eth(IP(dst=G, frag=100) / bytes(20)),  # later fragment: no UDP header
        bytes(Ether() / ARP()),
        bytes(Ether() / IPv6(dst="ff02::1") / UDP(dport=P)),
        eth(IP(dst=G) / UDP(dport=P))[:30],  # cut short: loads past the end drop
        eth(IP(dst=G) / UDP(dport=P + 1) / b"x", vlan=141),
    ]
    assert [run_bpf(prog, f) for f in ok] == [0xFFFFFFFF] * len(ok)
    assert [run_bpf(prog, f) for f in dropped] == [0] * len(dropped)


def test_udp_filter_limit():
    assert len(udp_filter([(f"239.1.{i // 250}.{i % 250}", 1) for i in range(800)])) <= 4096
    with pytest.raises(SourceError, match="too many groups"):
        udp_filter([(f"239.1.{i // 250}.{i % 250}", 1) for i in range(820)])


@pytest.mark.parametrize("kw, needle", [
    ({"block_size": 5000}, "block_size"),
    ({"block_size": 3 * 4096}, "power of two"),
    ({"frame_size": 100}, "frame_size"),
    ({"blocks": 0}, "blocks"),
    ({"fanout": 1, "fanout_mode": "nope"}, "fanout"),
])
def test_bad_arguments(kw, needle):
    with pytest.raises(SourceError, match=needle) as e:
        PacketSource("lo", **kw)
    assert "\n" not in str(e.value)


def test_no_such_interface():
    with pytest.raises(SourceError, match="no such interface 'nope0'"):
        PacketSource("nope0")


def test_not_permitted_names_cap_net_raw():
    code = "from xdpfeed.capture.packet import PacketSource as P\ntry:\n    P('lo')\nexcept Exception as e:\n" \
           "    print(type(e).__name__, e)\n"
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run as an unprivileged user")
        # uid 0 without a single capability: another uid could not read a checkout under /root (mode 0700)
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd="/", env={**os.environ, "HOME": "/tmp"})
    assert r.stdout.strip() == ("SourceError packet source: cannot open an AF_PACKET socket: not permitted "
                                "(needs root or CAP_NET_RAW)"), r.stderr


# ------------------------------------------------------------------------------------------ root


@pytest.mark.root
def test_receives_exactly_the_datagrams_sent_and_filters_the_rest():
    from netns import veth_pair

    with veth_pair() as v:
        with inside(v.ns_a):
            src = PacketSource(v.if_a, groups=[(G, P)])
            everything = PacketSource(v.if_a)  # no filter: the control
            igmp = subprocess.run(["cat", "/proc/net/igmp"], capture_output=True, text=True).stdout
        assert f"{socket.inet_aton(G)[::-1].hex().upper()}" in igmp  # joined on the interface
        tx = sender(v)
        sent = [b"%05d" % i + bytes([i % 256]) * (i % 1200) for i in range(500)]
        t0 = time.time_ns()
        with src, everything, tx:
            for i, p in enumerate(sent):
                tx.sendto(p, (G, P))
                tx.sendto(b"noise", (G, P + 1))  # other port
                tx.sendto(b"noise", ("239.77.1.9", P))  # other group
                if i % 100 == 0:
                    tx.sendto(b"unicast", (v.addr_a, P))  # ARP, UDP, and an ICMP answer ignored as outgoing
            got = drain(src, len(sent))
            t1 = time.time_ns()
            other = drain(everything, 3 * len(sent) + 5, timeout=1.0)
            st = src.stats()
        assert payloads(got) == sent
        assert all(Ether(f)[IP].dst == G and Ether(f)[UDP].dport == P for f, _ in got)
        ts = [t for _, t in got]
        assert kernel_realtime(ts[0], t0, t1) and ts == sorted(ts) and kernel_realtime(ts[-1], t0, t1)
        assert st == {"packets": len(sent), "bytes": sum(len(f) for f, _ in got),
                      "drops": {"kernel": 0, "freeze": 0}, "mode": "tpacket_v3", "hardware_timestamps": 0}
        # veth has no clock: the kernel's time, and the reason the NIC's is not there
        assert src.timestamp_source == {"source": "software", "reason": "the kernel's receive time in the ring "
                                        f"(SIOCGHWTSTAMP {v.if_a}: Operation not supported)"}
        assert src.kernel_packets == len(sent)  # the filter dropped the rest before the ring
        assert b"noise" in payloads(other) and len(other) > 3 * len(sent)


@pytest.mark.root
def test_batches_ending_inside_a_block_lose_nothing():
    from netns import veth_pair

    with veth_pair() as v:
        with inside(v.ns_a):
            src = PacketSource(v.if_a, groups=[(G, P)], retire_ms=50)
        sent = [b"%06d" % i for i in range(700)]
        with src, sender(v) as tx:
            for p in sent:
                tx.sendto(p, (G, P))
            got = drain(src, len(sent), batch=FrameBatch(7))
        assert payloads(got) == sent  # many packets per block, handed out 7 at a time


@pytest.mark.root
def test_ring_full_drops_are_counted():
    from netns import veth_pair

    with veth_pair() as v:
        with inside(v.ns_a):
            src = PacketSource(v.if_a, groups=[(G, P)], block_size=4096, blocks=2, retire_ms=1)
        n = 2000
        with src, sender(v) as tx:
            for i in range(n):
                tx.sendto(b"%06d" % i + bytes(200), (G, P))
            got = drain(src, n, timeout=1.0)
            st = src.stats()
        assert 0 < len(got) < n and st["packets"] == len(got)
        assert st["drops"]["kernel"] + len(got) == n
        seqs = [int(p[:6]) for p in payloads(got)]
        assert seqs == sorted(seqs)


@pytest.mark.root
def test_vlan_tags_are_put_back():
    """The kernel moves the outer tag into metadata (also without 8021q); frames come out as sent."""
    from netns import veth_pair

    from xdpfeed.multicast.wire.frames import OK, udp_payload

    with veth_pair() as v:
        with inside(v.ns_a):
            src = PacketSource(v.if_a, groups=[(G, P)])
        with inside(v.ns_b):
            raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            raw.bind((v.if_b, 0))
        l2 = Ether(src="02:00:00:00:00:02", dst="01:00:5e:4d:01:01")
        udp = IP(src=v.addr_b, dst=G) / UDP(sport=1, dport=P)
        frames = [bytes(l2 / Dot1Q(vlan=141, prio=5) / udp / b"tagged"),
                  bytes(Ether(src=l2.src, dst=l2.dst, type=0x88A8) / Dot1Q(vlan=100) / Dot1Q(vlan=141) / udp / b"qinq"),
                  bytes(l2 / Dot1Q(vlan=141) / IP(src=v.addr_b, dst=G) / UDP(dport=P + 1) / b"filtered")]
        with src, raw:
            for f in frames:
                raw.send(f)
            got = drain(src, 2)
        assert [f for f, _ in got] == frames[:2]
        for f, _ in got:
            status, o, n, _, port = udp_payload(np.frombuffer(f, np.uint8), 0, len(f), LINKTYPE_ETHERNET)
            assert status == OK and port == P and f[o : o + n] in (b"tagged", b"qinq")


@pytest.mark.root
def test_fanout_splits_one_interface_between_sockets():
    from netns import veth_pair

    with veth_pair() as v:
        with inside(v.ns_a):
            a = PacketSource(v.if_a, groups=[(G, P)], fanout=4242, fanout_mode="lb")
            b = PacketSource(v.if_a, groups=[(G, P)], fanout=4242, fanout_mode="lb")
            with pytest.raises(SourceError, match="fanout group 4242") as e:
                PacketSource(v.if_a, fanout=4242, fanout_mode="hash")  # members must agree on the mode
            assert "\n" not in str(e.value)
            PacketSource(v.if_a, fanout=77, fanout_mode="hash").close()
        sent = [b"%05d" % i for i in range(400)]
        with a, b, sender(v) as tx:
            for p in sent:
                tx.sendto(p, (G, P))
            ga, gb = drain(a, 200, timeout=2.0), drain(b, 200, timeout=2.0)
        pa, pb = payloads(ga), payloads(gb)
        assert len(pa) == len(pb) == 200 and sorted(pa + pb) == sent
