"""Sequencer: hand-written MoldUDP64 packet sequences on lines A and B (and recovery lines), checking
the exact delivered stream, counters and status events."""

import struct
import time

import numpy as np
import pytest

from xdpfeed.capture.batch import LINKTYPE_UDP_PAYLOAD, FrameBatch
from xdpfeed.multicast.feed.sequencer import (
    GAP_FILL,
    LINE_A,
    LINE_B,
    LINE_REPLAY,
    LINE_REREQUEST,
    STALE,
    SYNCHRONIZED,
    Sequencer,
)
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import PacketIndex, Sessions, extract_batch

from helpers import mold

S1 = b"SESSION001"
S2 = b"SESSION002"
NO_GROUPS = np.zeros((0, 2), dtype=np.int64)


def msg(seq: int, size: int = 12) -> bytes:
    """A fake message carrying its sequence number, so the delivered stream proves the order."""
    return b"Z" + struct.pack(">Q", seq) + bytes(max(0, size - 9))


def pkt(first: int, n: int, session=S1, size=12) -> bytes:
    return mold(session, first, [msg(s, size) for s in range(first, first + n)])


def heartbeat(seq, session=S1):
    return mold(session, seq, count=0)


def eos(seq, session=S1):
    return mold(session, seq, count=0xFFFF)


class Harness:
    """A sequencer plus what it delivered (sequence numbers parsed from the delivered stream)."""

    def __init__(self, **kw):
        self.sessions = Sessions()
        self.events = []
        self.seq = Sequencer(self.sessions, on_status=lambda *e: self.events.append(e), **kw)
        self.delivered = []  # (sequence from the message body, sequence the sequencer said)
        self.received = []  # the receive time the sequencer gave each delivered message
        self.t0 = 1000  # packet i of a send() is received at t0 + i; each send() moves t0 on by 1000
        self.frames = FrameBatch(64)
        self.index = PacketIndex(64)
        self.cnt = C.new()

    def sink(self, out, first, count, timestamp_ns):
        assert timestamp_ns.size == count
        p = 0
        for k in range(count):
            ln = int(out[p]) << 8 | int(out[p + 1])
            body = bytes(out[p + 2 : p + 2 + ln])
            self.delivered.append((struct.unpack(">Q", body[1:9])[0], first + k))
            self.received.append(int(timestamp_ns[k]))
            p += 2 + ln
        assert p == out.size

    def send(self, line, *payloads):
        data = b"".join(payloads)
        self.frames.data = np.frombuffer(data, dtype=np.uint8).copy()
        o = 0
        for i, p in enumerate(payloads):
            self.frames.offset[i], self.frames.length[i] = o, len(p)
            self.frames.linktype[i] = LINKTYPE_UDP_PAYLOAD
            self.frames.timestamp_ns[i] = self.t0 + i
            o += len(p)
        self.t0 += 1000
        self.frames.count = len(payloads)
        start = 0
        while start < self.frames.count:
            start = extract_batch(self.frames, start, NO_GROUPS, self.sessions, self.index, self.cnt, control=True)
            self.seq.feed(self.frames.data, self.index, line, self.sink)

    @property
    def seqs(self):
        body = [a for a, _ in self.delivered]
        assert body == [b for _, b in self.delivered]  # the sequencer's numbering matches the bodies
        return body

    def kinds(self):
        return [e[0] for e in self.events]


def test_in_order_delivery_and_duplicates_across_lines():
    h = Harness()
    h.send(LINE_A, pkt(1, 3), pkt(4, 2))
    h.send(LINE_B, pkt(1, 3), pkt(4, 2), pkt(6, 1))
    h.send(LINE_A, pkt(6, 1))
    assert h.seqs == [1, 2, 3, 4, 5, 6]
    st = h.seq.stats()
    assert st["delivered"] == 6 and st["duplicates"] == 6 and st["gaps"] == 0
    a, b = h.seq.line_stats(LINE_A), h.seq.line_stats(LINE_B)
    assert (a["packets"], a["first"], a["duplicates"]) == (3, 5, 1)
    assert (b["packets"], b["first"], b["duplicates"]) == (3, 1, 5)
    assert h.seq.state == SYNCHRONIZED and h.kinds() == ["session"]


def test_each_message_carries_the_receive_time_of_the_packet_that_brought_it():
    """Delivered at once or after waiting in the hold queue, a message's receive time is that of the first
    packet that carried it; a duplicate on the other line changes nothing."""
    h = Harness()
    h.send(LINE_A, pkt(1, 2), pkt(5, 2))  # t 1000, 1001: 1-2 delivered, 5-6 held
    h.send(LINE_B, pkt(1, 2), pkt(3, 2))  # t 2000 (duplicates), 2001: 3-4 delivered, then 5-6 from the hold
    h.send(LINE_A, pkt(7, 1))  # t 3000
    assert h.seqs == list(range(1, 8))
    assert h.received == [1000, 1000, 2001, 2001, 1001, 1001, 3000]


def test_gap_then_fill_from_the_other_line():
    h = Harness()
    h.send(LINE_A, pkt(1, 2), pkt(5, 2))  # 3, 4 lost on A
    assert h.seqs == [1, 2] and h.seq.state == GAP_FILL
    assert h.seq.missing() == [(3, 5)] and h.seq.held == 2
    h.send(LINE_B, pkt(3, 2))
    assert h.seqs == [1, 2, 3, 4, 5, 6] and h.seq.state == SYNCHRONIZED and h.seq.held == 0
    assert [e for e in h.events if e[0] != "session"] == [("gap", 3, 5, LINE_A), ("synchronized", 7, 0, LINE_B)]
    assert h.seq.line_stats(LINE_A)["gaps"] == 1 and h.seq.line_stats(LINE_A)["gap_messages"] == 2
    assert h.seq.line_stats(LINE_B)["gaps"] == 0  # B's own sequence had no hole
    assert h.seq.stats()["gaps"] == 1 and h.seq.stats()["gap_messages"] == 2


def test_fill_arriving_before_the_later_packet():
    h = Harness()
    h.send(LINE_A, pkt(1, 2))
    h.send(LINE_B, pkt(5, 1))  # B is ahead: gap [3, 5)
    h.send(LINE_A, pkt(3, 2))  # the fill, before A's own copy of 5
    h.send(LINE_A, pkt(5, 1))
    assert h.seqs == [1, 2, 3, 4, 5] and h.seq.stats()["duplicates"] == 1


def test_partially_overlapping_packets_deliver_only_new_messages():
    h = Harness()
    h.send(LINE_A, pkt(1, 4))
    h.send(LINE_B, pkt(3, 4))  # 3, 4 old; 5, 6 new
    h.send(LINE_A, pkt(2, 6))  # everything old except 7
    assert h.seqs == [1, 2, 3, 4, 5, 6, 7]
    assert h.seq.stats()["duplicates"] == 2 + 5
    assert h.seq.line_stats(LINE_B)["first"] == 2


def test_packet_overlapping_the_hold_queue():
    h = Harness()
    h.send(LINE_A, pkt(1, 1), pkt(5, 3))  # hold 5..7
    h.send(LINE_B, pkt(4, 3))  # 4 new but ahead, 5, 6 already held
    assert h.seqs == [1] and h.seq.held == 4 and h.seq.stats()["duplicates"] == 2
    h.send(LINE_A, pkt(2, 2))
    assert h.seqs == list(range(1, 8))


def test_heartbeat_reveals_a_gap_without_data():
    h = Harness()
    h.send(LINE_A, pkt(1, 2), heartbeat(3))
    assert h.seq.state == SYNCHRONIZED
    h.send(LINE_A, heartbeat(6))
    assert h.seq.state == GAP_FILL and h.seq.missing() == [(3, 6)]
    h.send(LINE_REREQUEST, pkt(3, 3))
    assert h.seqs == [1, 2, 3, 4, 5] and h.seq.state == SYNCHRONIZED
    assert h.seq.line_stats(LINE_REREQUEST)["first"] == 3
    assert h.seq.line_stats(LINE_A)["heartbeats"] == 2


def test_late_join_recovers_from_sequence_one_unless_told_otherwise():
    h = Harness()
    h.send(LINE_A, pkt(100, 2))
    assert h.seqs == [] and h.seq.missing() == [(1, 100)]
    h2 = Harness(start_at_one=False)
    h2.send(LINE_A, pkt(100, 2))
    assert h2.seqs == [100, 101] and h2.seq.state == SYNCHRONIZED


def test_end_of_session_with_a_gap_pending():
    h = Harness()
    h.send(LINE_A, pkt(1, 2), pkt(4, 1), eos(5))
    assert h.seq.end_of_session and not h.seq.finished and h.seq.state == GAP_FILL
    assert ("end_of_session", 5, 0, LINE_A) in h.events
    h.send(LINE_B, eos(5))  # repeated End of Session: one event only
    assert h.kinds().count("end_of_session") == 1
    h.send(LINE_REREQUEST, pkt(3, 1))  # re-requests still fill during End of Session
    assert h.seqs == [1, 2, 3, 4] and h.seq.finished and h.seq.state == SYNCHRONIZED
    assert h.seq.line_stats(LINE_A)["end_of_session"] == 1


def test_end_of_session_reveals_the_tail_gap():
    h = Harness()
    h.send(LINE_A, pkt(1, 2), eos(6))  # 3..5 never seen on any line
    assert h.seq.missing() == [(3, 6)] and not h.seq.finished


def test_session_change_resets_sequencing():
    h = Harness()
    h.send(LINE_A, pkt(1, 3))
    h.send(LINE_A, pkt(1, 2, session=S2))
    h.send(LINE_B, pkt(3, 1))  # a late packet of the old session on B: dropped, not a new session
    h.send(LINE_B, pkt(2, 2, session=S2))
    assert h.seqs == [1, 2, 3, 1, 2, 3]
    assert [e for e in h.events if e[0] == "session"] == [("session", "SESSION001", -1, LINE_A),
                                                          ("session", "SESSION002", 0, LINE_A)]
    st = h.seq.stats()
    assert st["session"] == "SESSION002" and st["sessions"] == 2 and st["old_session_packets"] == 1


def test_session_change_abandons_what_the_old_session_missed():
    h = Harness()
    h.send(LINE_A, pkt(1, 1), pkt(4, 1))  # 2, 3 missing, 4 held
    h.send(LINE_A, pkt(1, 1, session=S2))
    assert h.seq.stats()["abandoned"] == 3 and h.seq.state == SYNCHRONIZED and h.seq.held == 0
    assert h.seqs == [1, 1]


def test_session_change_hands_over_old_messages_first():
    h = Harness()
    h.send(LINE_A, pkt(1, 2), pkt(1, 2, session=S2), pkt(3, 1, session=S2))  # one batch, both sessions
    assert h.seqs == [1, 2, 1, 2, 3]


def test_recovery_answers_for_another_session_are_dropped():
    h = Harness()
    h.send(LINE_A, pkt(1, 1), pkt(3, 1))
    h.send(LINE_REREQUEST, pkt(2, 1, session=S2))
    assert h.seqs == [1] and h.seq.stats()["wrong_session_answers"] == 1 and h.seq.stats()["sessions"] == 1
    assert h.seq.session == "SESSION001"


def test_hold_queue_overflow_turns_stale_and_recovery_brings_it_back():
    h = Harness(hold_messages=4)
    h.send(LINE_A, pkt(1, 1), pkt(3, 6))  # slots cover [2, 6): 3..5 held; 6..8 overflow
    assert h.seq.state == STALE and h.seq.stats()["hold_overflow"] == 3
    assert ("overflow", 6, 0, LINE_A) in h.events
    assert h.seq.missing() == [(2, 3), (6, 9)]
    h.send(LINE_REPLAY, pkt(2, 7))  # replay from 2: fills 2, duplicates 3..5, brings 6..8
    assert h.seqs == list(range(1, 9)) and h.seq.state == SYNCHRONIZED


def test_give_up_marks_stale_until_caught_up():
    h = Harness()
    h.send(LINE_A, pkt(1, 1), pkt(3, 1))
    h.seq.give_up("recovery deadline passed")
    assert h.seq.state == STALE and ("stale", "recovery deadline passed", 0, -1) in h.events
    h.send(LINE_B, pkt(2, 1))
    assert h.seq.state == SYNCHRONIZED and h.seqs == [1, 2, 3]


def test_stale_episodes_that_recovered_are_counted_with_their_time():
    """A feed that was STALE and came back is SYNCHRONIZED now, but the episodes, their total and their
    longest time stay on record (the summary and metrics show them)."""
    h = Harness(hold_messages=4)
    v = h.seq.view()
    assert (v.stale_episodes, v.stale_seconds_total, v.stale_seconds_longest, v.reason) == (0, 0.0, 0.0, "")
    h.send(LINE_A, pkt(1, 1), pkt(3, 1))
    h.seq.give_up("recovery deadline passed")
    h.seq.give_up("again")  # already STALE: the same episode, the first reason
    assert h.seq.view().reason == "recovery deadline passed"
    time.sleep(0.05)
    h.send(LINE_B, pkt(2, 1))
    first = h.seq.view()
    assert first.state == SYNCHRONIZED and first.stale_episodes == 1 and first.reason == ""
    assert 0.05 <= first.stale_seconds_total == first.stale_seconds_longest < 5
    h.send(LINE_A, pkt(5, 8))  # slots cover [4, 8): 8..12 overflow, a second episode
    assert h.seq.state == STALE and h.seq.view().stale_episodes == 2
    h.send(LINE_REPLAY, pkt(4, 9))
    v = h.seq.view()
    assert v.state == SYNCHRONIZED and v.stale_episodes == 2
    assert v.stale_seconds_total >= first.stale_seconds_total and v.stale_seconds_longest >= 0.05


def test_long_messages_are_held_in_the_arena():
    h = Harness(slot_bytes=16, hold_arena_bytes=200)
    h.send(LINE_A, pkt(1, 1), mold(S1, 3, [msg(3, 60), msg(4, 60), msg(5, 10)]))
    assert h.seq.held == 3 and h.seq.arena_live == 2
    h.send(LINE_B, pkt(2, 1, size=100))
    assert h.seqs == [1, 2, 3, 4, 5]
    # the arena is empty again, so later long messages fit
    h.send(LINE_A, mold(S1, 7, [msg(7, 90)]), mold(S1, 8, [msg(8, 90)]))
    assert h.seq.held == 2 and h.seq.stats()["hold_overflow"] == 0
    h.send(LINE_A, mold(S1, 9, [msg(9, 90)]))  # 3 x 92 bytes > 200: overflow
    assert h.seq.stats()["hold_overflow"] == 1 and h.seq.state == STALE


def test_output_buffer_smaller_than_a_drain_resumes_without_loss():
    big = 2000  # 80,000 held messages x 42 bytes: the drain fills `out` about 50 times
    h2 = Harness(out_bytes=65537, hold_messages=1 << 17)
    h2.send(LINE_A, pkt(1, 1))
    for first in range(3, 3 + big * 40, 40):
        h2.send(LINE_A, pkt(first, 40, size=40))
    assert h2.seq.held == big * 40
    h2.send(LINE_B, pkt(2, 1, size=40))
    assert h2.seqs == list(range(1, 3 + big * 40)) and h2.seq.state == SYNCHRONIZED


def test_replay_blocks_enter_like_any_other_line():
    h = Harness()
    h.send(LINE_A, pkt(1, 1), pkt(5, 1))
    blocks = b"".join(struct.pack(">H", len(msg(s))) + msg(s) for s in range(2, 6))
    buf = np.frombuffer(b"xx" + blocks, dtype=np.uint8).copy()
    h.seq.feed_blocks(buf, 2, 4, 2, LINE_REPLAY, h.sink)
    assert h.seqs == [1, 2, 3, 4, 5]
    assert h.seq.line_stats(LINE_REPLAY)["first"] == 3 and h.seq.line_stats(LINE_REPLAY)["duplicates"] == 1


@pytest.mark.parametrize("seed", range(5))
def test_random_loss_reorder_duplication_on_two_lines_delivers_everything_once(seed):
    rng = np.random.default_rng(seed)
    packets = []
    s = 1
    while s <= 3000:
        n = int(rng.integers(1, 20))
        packets.append(pkt(s, n))
        s += n
    h = Harness(hold_messages=1 << 13)
    lines = []
    for _ in (LINE_A, LINE_B):
        order = [p for p in packets if rng.random() > 0.2]  # 20% loss per line
        order += [order[i] for i in rng.integers(0, len(order), len(order) // 10)]  # duplicates
        rng.shuffle(order[: len(order) // 2])  # heavy reordering in the first half
        lines.append(order)
    for i in range(max(map(len, lines))):
        for line in (LINE_A, LINE_B):
            if i < len(lines[line]):
                h.send(line, lines[line][i])
    for a, b in h.seq.missing():  # what both lines lost comes back by re-request
        h.send(LINE_REREQUEST, *[pkt(x, 1) for x in range(a, b)])
    assert h.seqs == list(range(1, s)) and h.seq.state == SYNCHRONIZED and h.seq.held == 0


def test_end_of_session_learned_from_replay():
    h = Harness()
    h.send(LINE_A, pkt(1, 2))
    h.seq.feed_end_of_session(5, LINE_REPLAY, h.sink)
    assert h.seq.end_of_session and h.seq.missing() == [(3, 5)]
    h.send(LINE_REPLAY, pkt(3, 2))
    assert h.seq.finished and h.seqs == [1, 2, 3, 4]


def test_delivery_latency_histogram_counts_packets_delivered_right_away():
    import time

    h = Harness()
    h.send(LINE_A, pkt(1, 2))
    assert h.seq.latency.sum() == 0  # the harness' timestamps are from 1970: outside every bucket
    now = time.time_ns()
    h.frames.timestamp_ns[:] = now - 3000
    data = pkt(3, 2)
    h.frames.data = np.frombuffer(data, dtype=np.uint8).copy()
    h.frames.offset[0], h.frames.length[0], h.frames.count = 0, len(data), 1
    extract_batch(h.frames, 0, NO_GROUPS, h.sessions, h.index, h.cnt, control=True)
    h.seq.feed(h.frames.data, h.index, LINE_A, h.sink)
    assert h.seqs == [1, 2, 3, 4]
    k = int(np.flatnonzero(h.seq.latency)[0])
    assert h.seq.latency.sum() == 1 and 2**k <= time.time_ns() - (now - 3000) and 2**k >= 3000 // 2
