"""The venue's MoldUDP64 publisher: packing, delivery on loopback multicast, the fault plan and its
counters, bursts lost on both lines, heartbeats, End of Session and pacing (fake clock)."""

import socket
import struct
import threading
import time

import numpy as np
import pytest

from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.udp import UdpSource
from xdpfeed.multicast.exchange.publisher import LineFaults, Publisher, packetize
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.exchange.synthetic import generate

from helpers import eventually

EOS = 0xFFFF


@pytest.fixture(scope="module")
def store():
    return DayStore(generate(20_000, seed=7)[0], "PUBTEST001")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_lines(tag: int) -> list[tuple[str, int]]:
    return [(f"239.193.{tag}.1", free_port()), (f"239.193.{tag}.2", free_port())]


def parse(pkt: bytes):
    """(session, sequence, count, blocks bytes)."""
    session, seq, count = struct.unpack_from(">10sQH", pkt)
    return session, seq, count, pkt[20:]


def publish_and_receive(pub: Publisher, lines, timeout=30.0):
    """Run `pub` in a thread while receiving both lines on lo; every datagram per line, in arrival order."""
    sources = [UdpSource(g, p, "lo") for g, p in lines]
    got = [[] for _ in lines]
    batch = FrameBatch(256)
    t = threading.Thread(target=pub.run, args=(threading.Event(),))
    try:
        t.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            idle = True
            for src, out in zip(sources, got, strict=True):
                if src.recv(batch):
                    idle = False
                    out += [batch.frame(i) for i in range(batch.count)]
            if all(sum(parse(p)[2] == EOS for p in out) == pub.eos_repeats for out in got):
                break
            if idle:
                time.sleep(0.0005)
    finally:
        t.join()
        for src in sources:
            src.close()
    return got


def data_packets(packets):
    return [p for p in packets if parse(p)[2] not in (0, EOS)]


def expected_packet(store, first, n):
    return store.session + struct.pack(">QH", first, n) + store.block_bytes(first, first + n).tobytes()


# ------------------------------------------------------------------------------------------ packetize
@pytest.mark.parametrize("max_block", [1452, 300, 40])
def test_packetize_covers_every_sequence_once_with_whole_blocks(store, max_block):
    first, n, start, blen = packetize(store.records, store.offsets, store.count, max_block)
    assert first[0] == 1 and np.all(first[1:] == first[:-1] + n[:-1]) and first[-1] + n[-1] == store.next_seq
    assert n.sum() == store.count
    assert np.all(start == store.offsets[first - 1]) and np.all(blen == store.offsets[first + n - 1] - start)
    assert np.all((blen <= max_block) | (n == 1))  # an 'I' (52 bytes with its prefix) travels alone at 40
    block_len = np.diff(store.offsets)  # the next block would not have fit: packets are full
    assert np.all(blen[:-1] + block_len[(first + n - 1)[:-1]] > max_block)
    if max_block == 40:
        assert np.any(blen > 40)


def test_packetize_empty_and_count_limit():
    empty = DayStore(np.zeros(0, dtype=np.uint8))
    assert all(a.size == 0 for a in packetize(empty.records, empty.offsets, 0, 1452))
    zero_len = DayStore(np.zeros(2 * 70_000, dtype=np.uint8))  # 70000 empty messages: 0xFFFE per packet at most
    first, n, _, blen = packetize(zero_len.records, zero_len.offsets, zero_len.count, 1 << 20)
    assert list(n) == [0xFFFE, 70_000 - 0xFFFE] and list(first) == [1, 0xFFFF]


# ---------------------------------------------------------------------------------------- publishing
def test_every_packet_in_order_on_both_lines(store):
    lines = two_lines(11)
    pub = Publisher(store, lines, eos_interval=0.01)
    got = publish_and_receive(pub, lines)
    first, n, _, _ = packetize(store.records, store.offsets, store.count, 1452)
    want = [expected_packet(store, int(f), int(c)) for f, c in zip(first, n, strict=True)]
    eos = store.session + struct.pack(">QH", store.next_seq, EOS)
    for packets in got:
        assert data_packets(packets) == want
        assert packets[-3:] == [eos] * 3 and len(packets) == len(want) + 3
    assert pub.published == store.next_seq and pub.ended
    s = pub.stats()
    for name in "AB":
        assert s["lines"][name] == {"packets_sent": len(want), "messages_sent": store.count, "packets_lost": 0,
                                    "messages_lost": 0, "duplicated": 0, "reordered": 0, "heartbeats": 0,
                                    "end_of_session": 3}
    assert s["lost_on_both"] == [] and s["total"]["messages_sent"] == 2 * store.count


def test_faults_match_stats_and_repeat_with_the_seed(store):
    lines = two_lines(12)
    faults = [LineFaults(loss=0.1, reorder=0.05, duplicate=0.05), LineFaults(loss=0.2)]
    pub = Publisher(store, lines, faults=faults, seed=5, eos_interval=0.01)
    got = publish_and_receive(pub, lines)
    s = pub.stats()
    npk = pub.packets
    for name, packets in zip("AB", got, strict=True):
        st = s["lines"][name]
        seqs = [parse(p)[1] for p in data_packets(packets)]
        assert len(seqs) == st["packets_sent"]
        assert npk - len(set(seqs)) == st["packets_lost"] > 0
        assert len(seqs) - len(set(seqs)) == st["duplicated"]
        assert sum(b < a for a, b in zip(seqs, seqs[1:], strict=False)) == st["reordered"]
        lost_msgs = store.count - sum(parse(p)[2] for p in {bytes(p) for p in data_packets(packets)})
        assert lost_msgs == st["messages_lost"]
    assert s["lines"]["A"]["duplicated"] > 0 and s["lines"]["A"]["reordered"] > 0
    assert s["lines"]["B"]["duplicated"] == s["lines"]["B"]["reordered"] == 0
    # same seed, same plan; another seed, another plan
    again = Publisher(store, two_lines(13), faults=faults, seed=5)
    other = Publisher(store, two_lines(14), faults=faults, seed=6)
    try:
        for a, b in zip(pub.lines, again.lines, strict=True):
            assert np.array_equal(a.sched_pkt, b.sched_pkt) and np.array_equal(a.lost, b.lost)
        assert not np.array_equal(pub.lines[0].lost, other.lines[0].lost)
        assert pub.lost_on_both == again.lost_on_both
    finally:
        again.close()
        other.close()
    # what both lines lost is exactly the union's hole
    received = set()
    for packets in got:
        for p in data_packets(packets):
            _, seq, count, _ = parse(p)
            received.update(range(seq, seq + count))
    holes = {q for f, e in s["lost_on_both"] for q in range(f, e)}
    assert received | holes == set(range(1, store.next_seq)) and not received & holes


def test_reorder_holds_published_back_and_duplicates_go_twice(store):
    lines = two_lines(23)
    pub = Publisher(store, lines, faults=[LineFaults(reorder=1.0), LineFaults(duplicate=1.0)])
    try:
        a, b = pub.lines
        assert list(a.sched_pkt[:6]) == [1, 0, 3, 2, 5, 4] and list(a.sched_slot[:6]) == [1, 1, 3, 3, 5, 5]
        assert list(b.sched_pkt[:6]) == [0, 0, 1, 1, 2, 2]
        # packet 0 is still held once slot 0 is done: recovery may serve nothing yet
        assert [int(pub._pub[k]) for k in range(5)] == [0, 0, 2, 2, 4]
        pub._send_slots(0, 1, threading.Event())
        assert pub.published == 1 and a.pos == 0 and b.pos == 2
        pub._send_slots(1, 2, threading.Event())
        assert pub.published == pub.first_seq[2] and a.pos == 2 and b.pos == 4
        s = pub.stats()["lines"]
        assert s["A"]["reordered"] == 1 and s["B"]["duplicated"] == 2 and s["B"]["packets_sent"] == 4
    finally:
        pub.close()


def test_bursts_are_lost_on_both_lines(store):
    lines = two_lines(15)
    pub = Publisher(store, lines, burst_loss=500, bursts=2, seed=3, eos_interval=0.01)
    got = publish_and_receive(pub, lines)
    both = pub.stats()["lost_on_both"]
    assert len(both) == 2 and both == [list(r) for r in pub.lost_on_both]
    first, n, _, _ = packetize(store.records, store.offsets, store.count, 1452)
    starts = set(first.tolist()) | {store.next_seq}
    for f, e in both:
        assert e - f >= 500 and f in starts and e in starts  # whole packets
        assert f > first[0] + n[0] and e < first[-1]  # clear of the first and last packets
        assert e - f - 500 < 200  # no more whole packets than needed: the last one pushed it past 500
    for packets in got:
        for p in data_packets(packets):
            _, seq, count, _ = parse(p)
            assert all(e <= seq or seq + count <= f for f, e in both)
    lost = sum(e - f for f, e in both)
    for name in "AB":
        assert pub.stats()["lines"][name]["messages_lost"] == lost
    again = Publisher(store, two_lines(16), burst_loss=500, bursts=2, seed=3)
    moved = Publisher(store, two_lines(17), burst_loss=500, bursts=2, seed=4)
    assert again.lost_on_both == pub.lost_on_both != moved.lost_on_both
    again.close()
    moved.close()
    with pytest.raises(ValueError, match="burst_loss"):
        Publisher(store, two_lines(18), burst_loss=9500, bursts=2)


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def clock(self):
        return self.now

    def sleep(self, s):
        self.now += s


def tiny_store(n=10, size=20):
    rec = b"".join(struct.pack(">H", size) + bytes([65 + i % 26]) * size for i in range(n))
    return DayStore(np.frombuffer(rec, dtype=np.uint8), "TINY")


def test_heartbeats_when_idle_then_end_of_session():
    st = tiny_store()  # 10 blocks of 22 bytes, two per packet at 44 bytes: a packet every 2 s at 1 msg/s
    lines = two_lines(19)
    ft = FakeTime()
    pub = Publisher(st, lines, rate=1.0, heartbeat_interval=0.5, eos_interval=0.2, max_block_bytes=44,
                    clock=ft.clock, sleep=ft.sleep)
    t0 = ft.now
    got = publish_and_receive(pub, lines)
    for packets in got:
        kinds = [(parse(p)[1], parse(p)[2]) for p in packets]
        assert [k for k in kinds if k[1] not in (0, EOS)] == [(1, 2), (3, 2), (5, 2), (7, 2), (9, 2)]
        assert kinds[-3:] == [(11, EOS)] * 3
        expected = 1
        beats = [0]  # heartbeats before the first data packet, then after each
        for seq, count in kinds[:-3]:
            assert seq == expected  # a heartbeat names the next sequence
            if count == 0:
                beats[-1] += 1
            else:
                expected = seq + count
                beats.append(0)
        assert beats == [3, 3, 3, 3, 3, 0]  # idle 2 s before each packet: beats at +0.5, +1.0, +1.5
    assert pub.stats()["lines"]["A"]["heartbeats"] == 15
    assert ft.now - t0 == pytest.approx(10.0 + 2 * 0.2, abs=0.06)  # 10 messages at 1/s, then 2 EOS gaps


def test_paced_rate_in_batches(store):
    lines = two_lines(20)
    ft = FakeTime()
    pub = Publisher(store, lines, rate=100_000, eos_repeats=1, clock=ft.clock, sleep=ft.sleep)
    t0 = ft.now
    sent_at = []
    real_send = pub._send_slots

    def spy(k0, k1, stop):
        sent_at.append((ft.now - t0, int(pub._cum_end[k1 - 1])))
        real_send(k0, k1, stop)

    pub._send_slots = spy
    pub.run()
    assert ft.now - t0 == pytest.approx(store.count / 100_000, abs=0.002)
    for t, msgs in sent_at:  # never ahead of the rate, never more than ≈ 1 ms + a packet behind
        assert msgs <= t * 100_000 + 1e-6 and msgs >= t * 100_000 - 200
    assert len(sent_at) >= 150  # ≈ 200 ms in ≈ 1 ms batches


def test_stop_ends_publishing_without_end_of_session(store):
    lines = two_lines(21)
    pub = Publisher(store, lines, rate=20_000)
    stop = threading.Event()
    t = threading.Thread(target=pub.run, args=(stop,))
    t.start()
    eventually(lambda: pub.published > 1)
    stop.set()
    t.join(5)
    assert not t.is_alive() and not pub.ended
    assert 1 < pub.published < store.next_seq
    assert pub.stats()["lines"]["A"]["messages_sent"] == pub.published - 1


def test_bad_arguments(store):
    with pytest.raises(ValueError, match="LineFaults.loss"):
        LineFaults(loss=1.5)
    with pytest.raises(ValueError, match="one LineFaults per line"):
        Publisher(store, two_lines(22), faults=[LineFaults()])
    with pytest.raises(ValueError, match="one LineFaults per line"):
        Publisher(store, [])


def test_send_error_is_one_line(store):
    pub = Publisher(store, two_lines(24))
    pub.close()  # the line's descriptor is gone: sendmmsg fails with EBADF, not a retryable error
    with pytest.raises(OSError, match=r"^line A 239\.193\.24\.1:\d+: send: Bad file descriptor$"):
        pub.run()
