"""capture.afxdp: the AF_XDP source and its XDP filter.

Unprivileged: argument errors are one-line SourceErrors raised before anything touches the kernel.
Root (a veth pair between two fresh namespaces; A sends, B captures), in native and skb mode: exactly
the feed's datagrams reach the socket, with their bytes, in a FrameBatch over the UMEM; frames stay
intact until released; ARP, ICMP, unicast UDP and other ports still reach B's kernel while the feed
does not; VLAN/QinQ, IP options and fragments are sorted right; two sources on two queues each get
their own group; auto falls back to skb where the driver has no XDP; a SIGKILLed process leaves no
program behind; busy queues, missing capabilities and bad arguments each give one line.
"""

import contextlib
import gc
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from netns import veth_pair
from scapy.layers.inet import IP, UDP, IPOption_EOL, IPOption_NOP

from xdpfeed.capture import afxdp
from xdpfeed.capture.afxdp import AfXdpSource
from xdpfeed.capture.batch import LINKTYPE_ETHERNET, FrameBatch
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.netns import inside
from xdpfeed.capture.uri import open_source

from helpers import eventually, kernel_realtime, mold

G, G2, P = "239.77.3.1", "239.77.3.2", 26400
MODES = ["native", "skb"]
needs_module = pytest.mark.skipif(afxdp.lib is None, reason="xdpfeed.native._afxdp is not built")


@pytest.fixture
def pair():
    with veth_pair() as p:
        yield p


def open_b(pair, **kw) -> AfXdpSource:
    with inside(pair.ns_b):
        return AfXdpSource(pair.if_b, **{"groups": [(G, P)], **kw})


def udp_in(ns: str, bind=None, group=None) -> socket.socket:
    with inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2.0)
    if bind:
        s.bind(bind)
    if group:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + bytes(4))
    return s


def sender(pair) -> socket.socket:
    s = udp_in(pair.ns_a)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(pair.addr_a))
    return s


def payload_of(frame: bytes) -> tuple[str, int, bytes]:
    """(IPv4 destination, UDP destination port, UDP payload) of an untagged Ethernet frame."""
    assert frame[12:14] == b"\x08\x00"
    ihl = (frame[14] & 0x0F) * 4
    udp = 14 + ihl
    dport, ulen = struct.unpack("!HH", frame[udp + 2 : udp + 6])
    return socket.inet_ntoa(frame[30:34]), dport, frame[udp + 8 : udp + ulen]


def drain(src: AfXdpSource, want: int, timeout: float = 5.0) -> list[bytes]:
    """Frames until `want` arrived (or the time is up), checking each FrameBatch before releasing it."""
    batch = FrameBatch(64)
    poller = select.poll()
    poller.register(src.fileno(), select.POLLIN)
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        t0 = time.time_ns()
        n = src.recv(batch)
        if not n:
            poller.poll(50)
            continue
        assert batch.count == n <= batch.capacity
        assert batch.data.size == src.info["umem_bytes"] and batch.layer == "L2"
        assert (batch.linktype[:n] == LINKTYPE_ETHERNET).all()
        assert (batch.timestamp_ns[:n] == batch.timestamp_ns[0]).all()
        assert kernel_realtime(batch.timestamp_ns[0], t0, time.time_ns())
        assert ((batch.offset[:n] + batch.length[:n]) <= batch.data.size).all()
        got += [batch.frame(i) for i in range(n)]
        src.release(batch)
    return got


def xdp_prog(ns: str, ifname: str) -> str | None:
    """Name of the XDP program attached to the interface, or None."""
    out = subprocess.run(["ip", "-netns", ns, "-j", "-d", "link", "show", "dev", ifname],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0].get("xdp", {}).get("prog", {}).get("name")


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


# ---- unprivileged ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, needle", [
    ({"mode": "xdp"}, "mode='xdp'; expected auto, native or skb"),
    ({"zerocopy": "yes"}, "zerocopy='yes'"),
    ({"frame_size": 3000}, "frame_size=3000 must be a power of two"),
    ({"frames": 16, "batch": 64}, "batch <= frames"),
    ({"groups": [("239.1.1", 1)]}, "not an IPv4 address"),
    ({"groups": [(G, 0)]}, "not in 1..65535"),
])
def test_bad_arguments(kw, needle):
    with pytest.raises(SourceError) as e:
        AfXdpSource("lo", **kw)
    assert needle in one_line(e)


@needs_module
def test_no_such_interface():
    with pytest.raises(SourceError) as e:
        AfXdpSource("xdpfeed-nosuch0", groups=[(G, P)])
    assert one_line(e) == "afxdp: no such interface 'xdpfeed-nosuch0' (ip link lists them)"


def test_module_not_built(monkeypatch):
    monkeypatch.setattr(afxdp, "lib", None)
    with pytest.raises(SourceError) as e:
        AfXdpSource("lo", groups=[(G, P)])
    assert "built without AF_XDP: apt-get install libxdp-dev libbpf-dev clang" in one_line(e)


# ---- root: the feed reaches the socket --------------------------------------------------------------


@pytest.mark.root
@needs_module
@pytest.mark.parametrize("mode", MODES)
def test_feed_to_socket(pair, mode):
    datagrams = [mold(b"SESSION01", 1 + i, [bytes([i % 251]) * (1 + i * 7 % 1300)]) for i in range(300)]
    with open_b(pair, mode=mode) as src, sender(pair) as tx:
        assert src.info["mode"] == src.mode == f"{mode} copy" and src.info["xdp"] == mode
        assert src.info["zerocopy"] is False  # veth: copy mode only
        assert src.info["zerocopy_fallback"] == ("skb mode copies" if mode == "skb" else
                                                 "Operation not supported (EOPNOTSUPP)")
        poller = select.poll()
        poller.register(src.fileno(), select.POLLIN)
        assert poller.poll(0) == []
        for d in datagrams:
            tx.sendto(d, (G, P))
        assert poller.poll(2000) == [(src.fileno(), select.POLLIN)]
        frames = drain(src, len(datagrams))
        time.sleep(0.1)
        assert src.recv(FrameBatch(8)) == 0  # nothing more than was sent
        stats, counters = src.stats(), src.xdp_counters()
    assert [payload_of(f) for f in frames] == [(G, P, d) for d in datagrams]
    mac = bytes([1, 0, 0x5E, 77 & 0x7F, 3, 1])  # 01:00:5e + the group's low 23 bits
    assert all(f[:6] == mac for f in frames)
    assert stats == {"packets": 300, "bytes": sum(map(len, frames)), "mode": f"{mode} copy",
                     "drops": {"rx_dropped": 0, "ring_full": 0, "fill_empty": 0, "invalid": 0,
                               "bad_descriptor": 0}}
    assert counters["redirected"] == 300 and counters["no_socket"] == counters["other_queue"] == 0
    assert src.stats() == stats  # the last numbers survive close()


@pytest.mark.root
@needs_module
def test_uri_and_busy_poll(pair):
    with inside(pair.ns_b):
        src = open_source(f"afxdp:{pair.if_b}?group={G}:{P}&mode=native&busy_poll=20&frames=1024")
    with src, sender(pair) as tx:
        assert src.info["frames"] == 1024 and src.mode == "native copy"
        assert src.info["busy_poll"] == {"usecs": 20, "budget": 256, "error": None,
                                         "accepted": {"prefer": True, "usecs": True, "budget": True}}
        for i in range(10):
            tx.sendto(b"busy %d" % i, (G, P))
        assert [payload_of(f)[2] for f in drain(src, 10)] == [b"busy %d" % i for i in range(10)]


@pytest.mark.root
@needs_module
def test_frames_survive_until_release(pair):
    first = [mold(b"KEEP", i, [b"k" * (100 + i)]) for i in range(64)]
    with open_b(pair, mode="native", frames=64, batch=64) as src, sender(pair) as tx:
        for d in first:
            tx.sendto(d, (G, P))
        eventually(lambda: src.xdp_counters()["redirected"] >= 64)  # all 64 went to the socket's ring...
        assert select.select([src], [], [], 5)[0]  # ...which the kernel publishes at the end of its poll
        batch = FrameBatch(64)
        assert src.recv(batch) == 64  # all of them, in one batch
        held = [(int(o), int(n)) for o, n in zip(batch.offset, batch.length, strict=True)]
        with pytest.raises(RuntimeError, match="before release"):
            src.recv(FrameBatch(4))
        for i in range(200):  # every frame is ours: these find no free frame and are dropped
            tx.sendto(mold(b"OVERWRITE", i, [b"X" * 1400]), (G, P))
        eventually(lambda: src.xdp_counters()["redirected"] >= 264)  # every one of them reached the socket
        assert [payload_of(bytes(batch.data[o:o + n]))[2] for o, n in held] == first
        assert src.stats()["drops"]["rx_dropped"] + src.stats()["drops"]["fill_empty"] > 0
        src.release(batch)
        later = [mold(b"LATER", i, [b"l"]) for i in range(10)]
        for d in later:
            tx.sendto(d, (G, P))
        assert [payload_of(f)[2] for f in drain(src, 10)] == later


@pytest.mark.root
@needs_module
@pytest.mark.parametrize("mode", MODES)
def test_kernel_traffic_passes(pair, mode):
    """ARP, ICMP, unicast UDP and the group's other ports reach B's kernel; the feed does not."""
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_b(pair, mode=mode))
        tx = stack.enter_context(sender(pair))
        unicast = stack.enter_context(udp_in(pair.ns_b, bind=(pair.addr_b, 27001)))
        other_port = stack.enter_context(udp_in(pair.ns_b, bind=(G, P + 1), group=G))
        feed_port = stack.enter_context(udp_in(pair.ns_b, bind=(G, P), group=G))
        for i in range(5):
            tx.sendto(b"unicast %d" % i, (pair.addr_b, 27001))  # needs ARP to resolve B first
            tx.sendto(b"other port %d" % i, (G, P + 1))
            tx.sendto(b"feed %d" % i, (G, P))
        assert [unicast.recv(100) for _ in range(5)] == [b"unicast %d" % i for i in range(5)]
        assert [other_port.recv(100) for _ in range(5)] == [b"other port %d" % i for i in range(5)]
        assert [payload_of(f)[2] for f in drain(src, 5)] == [b"feed %d" % i for i in range(5)]
        feed_port.settimeout(0.2)
        with pytest.raises(TimeoutError):
            feed_port.recv(100)  # the kernel never saw the feed
        assert ping(pair.ns_a, pair.addr_b)
        neigh = json.loads(subprocess.run(["ip", "-netns", pair.ns_a, "-j", "neigh", "show", pair.addr_b],
                                          capture_output=True, text=True, check=True).stdout)
        assert neigh and neigh[0].get("lladdr") and "FAILED" not in neigh[0].get("state", [])
        counters = src.xdp_counters()
        assert counters["redirected"] == 5 and counters["passed"] >= 12  # ARP + ICMP + 10 datagrams


def ping(ns: str, addr: str) -> bool:
    """One ICMP echo over a raw socket (no ping binary needed); True when the reply came back."""
    ident = os.getpid() & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"xdpfeed-ping"
    words = sum(struct.unpack(f"!{len(body) // 2}H", body))
    while words >> 16:
        words = (words & 0xFFFF) + (words >> 16)
    body = body[:2] + struct.pack("!H", ~words & 0xFFFF) + body[4:]
    with inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with s:
        s.settimeout(2.0)
        s.sendto(body, (addr, 0))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            reply = s.recv(2048)
            icmp = reply[(reply[0] & 0x0F) * 4:]
            if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                return True
    return False


@pytest.mark.root
@needs_module
@pytest.mark.parametrize("mode", MODES)
def test_vlan_options_fragments(pair, mode):
    """Frames injected raw on A: tagged, with IP options, fragmented, to other ports."""
    def frame(tag, tags=(), port=P, options=(), frag=0, flags=0):
        l2 = bytes.fromhex("01005e4d0301 02000000000a") + b"".join(struct.pack("!HH", t, v) for t, v in tags)
        ip = IP(src=pair.addr_a, dst=G, options=list(options), frag=frag, flags=flags)
        return l2 + b"\x08\x00" + bytes(ip / UDP(sport=4000, dport=port) / tag)

    wanted = {
        b"plain": frame(b"plain"),
        b"vlan": frame(b"vlan", [(0x8100, 7)]),
        b"qinq": frame(b"qinq", [(0x88A8, 100), (0x8100, 7)]),
        b"opt4": frame(b"opt4", options=[IPOption_NOP()] * 3 + [IPOption_EOL()]),
        b"opt40": frame(b"opt40", options=[IPOption_NOP()] * 39 + [IPOption_EOL()]),
        b"firstfrag": frame(b"firstfrag", flags="MF"),
    }
    passed = [frame(b"otherport", port=P + 1), frame(b"laterfrag", frag=100),
              frame(b"3tags", [(0x88A8, 1), (0x8100, 2), (0x8100, 3)])]
    with open_b(pair, mode=mode) as src:
        with inside(pair.ns_a):
            raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        with raw:
            raw.bind((pair.if_a, 0))
            for f in [*wanted.values(), *passed]:
                raw.send(f)
        got = drain(src, len(wanted))
        time.sleep(0.1)
        assert src.recv(FrameBatch(8)) == 0
        counters = src.xdp_counters()
    assert sorted(got) == sorted(wanted.values())
    assert counters["redirected"] == len(wanted) and counters["passed"] >= len(passed)


# ---- root: several sources, fallbacks, teardown -----------------------------------------------------


@pytest.mark.root
@needs_module
@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not shutil.which("ethtool"), reason="needs 2 CPUs and ethtool")
def test_two_sources_two_queues(pair):
    """Two rx queues on the veth; XPS on A sends CPU 0's packets to queue 0 and CPU 1's to queue 1."""
    for ns, ifname in ((pair.ns_a, pair.if_a), (pair.ns_b, pair.if_b)):
        subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-L", ifname, "rx", "2", "tx", "2"], check=True)
    subprocess.run(["ip", "netns", "exec", pair.ns_a, "sh", "-c",
                    f"echo 1 > /sys/class/net/{pair.if_a}/queues/tx-0/xps_cpus && "
                    f"echo 2 > /sys/class/net/{pair.if_a}/queues/tx-1/xps_cpus"], check=True)

    def send(cpu: int, group: str, n: int):
        def run():
            os.sched_setaffinity(0, {cpu})
            with sender(pair) as tx:
                for i in range(n):
                    tx.sendto(b"%s #%d" % (group.encode(), i), (group, P))
        t = threading.Thread(target=run)
        t.start()
        t.join()

    with open_b(pair, queue=0, groups=[(G, P)]) as s0, open_b(pair, queue=1, groups=[(G2, P)]) as s1:
        send(0, G, 20)
        send(1, G2, 30)
        send(0, G2, 7)  # G2 on queue 0: not for s0, so it goes on to the kernel
        got0, got1 = drain(s0, 20), drain(s1, 30)
        time.sleep(0.1)
        assert s0.recv(FrameBatch(8)) == 0 and s1.recv(FrameBatch(8)) == 0
        counters = s0.xdp_counters()
    assert [payload_of(f)[2] for f in got0] == [b"%s #%d" % (G.encode(), i) for i in range(20)]
    assert [payload_of(f)[2] for f in got1] == [b"%s #%d" % (G2.encode(), i) for i in range(30)]
    assert counters["redirected"] == 50 and counters["other_queue"] == 7
    assert xdp_prog(pair.ns_b, pair.if_b) is None


@pytest.mark.root
@needs_module
def test_auto_falls_back_to_skb(pair):
    """macvlan has no native XDP: auto attaches in skb mode and says why; native refuses."""
    from pyroute2 import NetNS

    mv = "xfm" + pair.if_b[3:]
    with NetNS(pair.ns_b) as n:
        n.link("add", ifname=mv, kind="macvlan", link=n.link_lookup(ifname=pair.if_b)[0], macvlan_mode="bridge")
        n.link("set", index=n.link_lookup(ifname=mv)[0], state="up")
    with inside(pair.ns_b), AfXdpSource(mv, groups=[(G, P)]) as src:
        assert src.info["xdp"] == "skb" and src.mode == "skb copy"
        assert "EOPNOTSUPP" in src.info["native_fallback"]
    with inside(pair.ns_b), pytest.raises(SourceError) as e:
        AfXdpSource(mv, mode="native", groups=[(G, P)])
    assert "attaching the XDP program: " in one_line(e) and "EOPNOTSUPP" in one_line(e)


CHILD = """
import sys, time
from xdpfeed.capture.afxdp import AfXdpSource
src = AfXdpSource(sys.argv[1], mode="native", groups=[("{G}", {P})])
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.root
@needs_module
def test_sigkill_leaves_no_program(pair):
    child = subprocess.Popen(["ip", "netns", "exec", pair.ns_b, sys.executable, "-c",
                              CHILD.format(G=G, P=P), pair.if_b], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert xdp_prog(pair.ns_b, pair.if_b) == "xdpfeed_filter"
        with pytest.raises(SourceError) as e:  # another process holds the interface
            open_b(pair, mode="native")
        assert "already has an XDP program" in one_line(e)
        child.kill()
        child.wait(5)
    finally:
        child.kill()
        child.stdout.close()
    deadline = time.monotonic() + 2
    while xdp_prog(pair.ns_b, pair.if_b) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert xdp_prog(pair.ns_b, pair.if_b) is None
    with open_b(pair, mode="native") as src:  # the queue is free again
        assert src.mode == "native copy"


@pytest.mark.root
@needs_module
def test_errors_are_one_line(pair):
    with open_b(pair, mode="native") as src:
        t0 = time.monotonic()
        with pytest.raises(SourceError) as e:
            open_b(pair, mode="native")
        assert time.monotonic() - t0 >= 0.9  # retried for about a second first
        assert one_line(e).startswith(f"afxdp {pair.if_b} queue 0: queue busy")
        with pytest.raises(SourceError) as e:
            open_b(pair, mode="skb", queue=1)
        assert "already attached in native mode" in one_line(e)
        with pytest.raises(SourceError) as e:
            open_b(pair, queue=5)
        assert "no such rx queue" in one_line(e)
        assert src.recv(FrameBatch(4)) == 0  # the failed opens left the first source alone
    with pytest.raises(SourceError) as e:
        open_b(pair, mode="native", zerocopy="on")
    assert "no AF_XDP zero-copy" in one_line(e)
    with pytest.raises(SourceError) as e:
        open_b(pair, mode="skb", zerocopy="on")
    assert "zerocopy=on needs mode=native" in one_line(e)
    assert xdp_prog(pair.ns_b, pair.if_b) is None


@pytest.mark.root
@needs_module
def test_close_reopen_and_finalizer(pair):
    src = open_b(pair, mode="native")
    batch = FrameBatch(4)
    with sender(pair) as tx:
        tx.sendto(b"kept after close", (G, P))
        assert select.select([src], [], [], 5)[0]
    assert src.recv(batch) == 1
    frame, off, n = batch.frame(0), int(batch.offset[0]), int(batch.length[0])
    view = batch.data
    src.close()
    src.close()
    assert xdp_prog(pair.ns_b, pair.if_b) is None and "closed" in repr(src)
    with pytest.raises(SourceError, match="closed"):
        src.recv(batch)
    assert payload_of(frame)[2] == b"kept after close"
    assert bytes(view[off : off + n]) == frame  # a view of the UMEM stays readable, unchanged, after close
    with open_b(pair, mode="native") as again:  # the same queue, right away
        assert xdp_prog(pair.ns_b, pair.if_b) == "xdpfeed_filter" and again.mode == "native copy"
    dropped = open_b(pair, mode="skb")
    del dropped
    gc.collect()
    assert xdp_prog(pair.ns_b, pair.if_b) is None


@pytest.mark.root
@needs_module
@pytest.mark.skipif(not shutil.which("setpriv") or not shutil.which("prlimit"), reason="needs util-linux setpriv")
@pytest.mark.parametrize("caps, limit, needle", [
    ("+net_admin,+bpf,+ipc_lock", None, "grant CAP_NET_RAW to open an AF_XDP socket"),
    ("+net_raw,+ipc_lock", None, "grant CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN) to load the XDP program"),
    ("+net_admin,+bpf,+net_raw", 1 << 20, "RLIMIT_MEMLOCK is 1048576 bytes"),
    ("+net_admin,+bpf,+net_raw,+ipc_lock", None, "OK native copy"),
])
def test_capabilities(pair, caps, limit, needle):
    """What each capability is needed for, found by running without it (CAP_PERFMON is not needed)."""
    code = ("import sys\nfrom xdpfeed.capture.afxdp import AfXdpSource\n"
            "from xdpfeed.capture.errors import SourceError\n"
            f"try:\n    print('OK', AfXdpSource(sys.argv[1], mode='native', groups=[('{G}', {P})]).mode)\n"
            "except SourceError as e:\n    print(e)\n")
    cmd = ["ip", "netns", "exec", pair.ns_b, "setpriv", f"--bounding-set=-all,{caps}", f"--inh-caps=-all,{caps}",
           f"--ambient-caps=-all,{caps}"]
    cmd += ["prlimit", f"--memlock={limit}"] if limit else []
    out = subprocess.run([*cmd, sys.executable, "-c", code, pair.if_b], capture_output=True, text=True, timeout=30)
    assert needle in out.stdout, out.stdout + out.stderr
    assert len(out.stdout.strip().splitlines()) == 1


@pytest.mark.root
@needs_module
def test_rx_timestamps_from_the_driver_or_the_reason(pair):
    """Native mode loads the device-bound program that asks the driver for each frame's RX time
    (bpf_xdp_metadata_rx_timestamp). veth implements the call but has no clock: every frame is counted as
    without one, left as it was, and the source says why its times are software; skb mode cannot call it."""
    with open_b(pair, mode="native") as src, sender(pair) as tx:
        assert src._res.prog.rx_timestamps  # the device-bound program loaded and attached
        sent = [b"stamp %d" % i for i in range(25)]
        for d in sent:
            tx.sendto(d, (G, P))
        frames = drain(src, len(sent))
        assert [payload_of(f)[2] for f in frames] == sent  # the frames are untouched
        c = src.xdp_counters()
        assert (c["rx_timestamp"], c["no_rx_timestamp"]) == (0, len(sent))
        assert src.timestamp_source == {"source": "software", "reason": "one CLOCK_REALTIME reading per recv(): the "
                                        f"driver gives no RX timestamp (bpf_xdp_metadata_rx_timestamp: none in "
                                        f"{len(sent)} frames)"}
    with open_b(pair, mode="skb") as src:
        assert not src._res.prog.rx_timestamps
        assert src.timestamp_source["reason"].endswith("skb mode: the RX timestamp kfunc needs native mode")
