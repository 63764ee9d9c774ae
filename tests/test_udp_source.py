"""The kernel-socket source on loopback multicast: batches, payload bytes, kernel timestamps,
truncation counting, and MoldUDP64 extraction straight from its slab."""

import socket
import time

import numpy as np
import pytest

from xdpfeed.capture.batch import LINKTYPE_UDP_PAYLOAD, FrameBatch
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.uri import open_source
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import PacketIndex, Sessions, extract_batch

from helpers import kernel_realtime, mold

GROUP = "239.193.7.7"


@pytest.fixture
def port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sender():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    return s


def recv_all(src, batch, want, timeout=5.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        if src.recv(batch):
            got += [(batch.frame(i), int(batch.timestamp_ns[i])) for i in range(batch.count)]
        else:
            time.sleep(0.001)
    return got


def _until_stamped(src, tx, port, batch, timeout=10.0):
    """Send probes until one comes back with a kernel time; the probes' timestamps. The kernel turns receive
    timestamps on for the whole system when the first socket asks (net_enable_timestamp), but from a work queue:
    until it has run, datagrams arrive with none and the source says 0 (unknown). On a loaded machine that took a
    whole 300-datagram test."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        tx.sendto(b"probe", (GROUP, port))
        got = recv_all(src, batch, 1)
        seen += [ts for _, ts in got]
        if got and got[-1][1]:
            return seen
    raise AssertionError(f"no kernel receive timestamp in {timeout} s")


def test_batches_of_datagrams(port):
    payloads = [bytes([i % 256]) * (i + 1) for i in range(300)]
    with open_source(f"udp:{GROUP}:{port}@lo") as src, sender() as tx:
        batch = FrameBatch(1024)
        probes = _until_stamped(src, tx, port, batch)
        t0 = time.time_ns()
        for p in payloads:
            tx.sendto(p, (GROUP, port))
        got = recv_all(src, batch, len(payloads))
        assert batch.linktype[0] == LINKTYPE_UDP_PAYLOAD and batch.layer == "L4"
        # SO_TIMESTAMPING: loopback has no clock, so the kernel's time, and the reason
        assert src.timestamp_source == {"source": "software", "reason": "the kernel's receive time (SIOCGHWTSTAMP "
                                        "lo: Operation not supported)"}
        assert src.stats()["hardware_timestamps"] == 0
        # every datagram that came without a time (probes before the kernel turned stamping on) is counted
        assert src.stats()["unstamped"] == sum(ts == 0 for ts in probes + [ts for _, ts in got])
    t1 = time.time_ns()
    assert [g for g, _ in got] == payloads
    assert all(kernel_realtime(ts, t0, t1) for _, ts in got)  # the kernel's time at receive, each of them
    assert [ts for _, ts in got] == sorted(ts for _, ts in got)


def test_datagrams_without_a_receive_time_are_counted():
    """A socket that asked for no time stamps: every datagram comes with timestamp 0, and each is counted."""
    from xdpfeed.native._udp import ffi, lib

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        for i in range(5):
            tx.sendto(bytes([i]) * 10, rx.getsockname())
        slab, offset = np.zeros(8 * 64, np.uint8), np.zeros(8, np.int64)
        length, ts = np.zeros(8, np.uint32), np.full(8, -1, np.int64)
        trunc, drops, hw, un = (np.zeros(1, t) for t in (np.uint64, np.uint32, np.uint64, np.uint64))
        got, deadline = 0, time.monotonic() + 5
        while got < 5 and time.monotonic() < deadline:
            n = lib.xdpfeed_udp_recv_batch(
                rx.fileno(), ffi.from_buffer("uint8_t[]", slab), 64, 8 - got,
                ffi.from_buffer("int64_t[]", offset[got:]), ffi.from_buffer("uint32_t[]", length[got:]),
                ffi.from_buffer("int64_t[]", ts[got:]), ffi.from_buffer("uint64_t[]", trunc),
                ffi.from_buffer("uint32_t[]", drops), ffi.from_buffer("uint64_t[]", hw),
                ffi.from_buffer("uint64_t[]", un))
            assert n >= 0
            got += n
    assert got == 5 and (ts[:5] == 0).all() and int(un[0]) == 5 and int(hw[0]) == 0


def test_oversized_datagram_is_cut_and_counted(port):
    from xdpfeed.capture.udp import UdpSource

    with UdpSource(GROUP, port, "lo", slot_size=64) as src, sender() as tx:
        tx.sendto(b"x" * 100, (GROUP, port))
        got = recv_all(src, FrameBatch(4), 1)
        assert got[0][0] == b"x" * 64 and src.truncated[0] == 1


def test_moldudp64_from_socket_frames(port):
    d = b"D" + bytes(18)
    with open_source(f"udp:{GROUP}:{port}@lo") as src, sender() as tx:
        for seq in (1, 3):
            tx.sendto(mold(b"LOOP", seq, [d, d]), (GROUP, port))
        batch = FrameBatch(16)
        assert len(recv_all(src, batch, 2)) == 2
        cnt, sessions, index = C.new(), Sessions(), PacketIndex()
        extract_batch(batch, 0, np.zeros((0, 2), np.int64), sessions, index, cnt)
    assert list(index.message_seqs()) == [1, 2, 3, 4] and cnt[C.PACKETS] == 2 and index.rows == 2


@pytest.mark.parametrize("uri, needle", [
    ("udp:10.0.0.1:5000@lo", "not a multicast group"),
    ("udp:239.1.1.1@lo", "expected udp:GROUP:PORT@IFACE"),
    ("udp:239.1.1.1:5000@nosuchif0", "no such interface"),
    ("udp:239.1.1.1:5000@lo?speed=2", "unknown option 'speed'"),
    ("dpdkx:eth0", "unknown source scheme 'dpdkx'"),
    ("afxdp:eth0", "afxdp needs at least one group"),
    ("afxdp:eth0?group=239.1.1.1:5000&mode=fast", "mode='fast'; expected one of auto, native, skb"),
    ("afxdp:eth0?group=239.1.1.1", "is not GROUP:PORT"),
    ("afxdp:eth0?group=239.1.1.1:5000&queue=x", "queue='x' must be an integer"),
    ("packet:eth0?fanout=-1", "fanout='-1' must be an integer"),
    ("packet:eth0?speed=1", "unknown option 'speed'; packet: takes"),
    ("pcap:x.pcap?speed=fast", "speed='fast' must be a positive number"),
    ("udp:", "nothing after 'udp:'"),
])
def test_bad_uris(uri, needle):
    with pytest.raises(SourceError, match=needle):
        open_source(uri)
