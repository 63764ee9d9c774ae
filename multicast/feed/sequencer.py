"""The sequencer's Python face: one per feed; lines A and B, re-request answers and TCP replay all
enter it, and every message leaves it exactly once, in sequence order (compiled core:
multicast.feed.sequencer_core). It is the one owner of the feed's state, read through `view()` and
`line(n)` (multicast.feed.state).

`Sequencer.feed(buf, index, line, sink)` takes the PacketIndex rows of one line (extract them with
`control=True` so heartbeats and End of Session count too); delivered messages reach
`sink(stream, first_seq, count, timestamp_ns)`: `stream` a NASDAQ binary ITCH stream ([uint16
length][message] ...), `timestamp_ns` the receive time of the packet that brought each message. State
changes reach the status listener `on_status(event, a, b, line)`: "gap" [a, b) found missing,
"synchronized" at a, "session" (a: session name, b: messages the previous session abandoned),
"snapshot" (a: the sequence it continues from after a snapshot, b: held messages the snapshot covered),
"end_of_session" (a: its next sequence), "overflow" (hold queue full at a), "stale" (recovery gave up;
a: reason), "wrong_session".
"""

import time

import numpy as np

from xdpfeed.multicast.feed import sequencer_core as K
from xdpfeed.multicast.feed.state import (
    GAP_FILL,
    LINE_NAMES,
    SNAPSHOT,
    STALE,
    STATES,
    SYNCHRONIZED,
    FeedState,
    LineState,
)
from xdpfeed.multicast.wire.moldudp64 import KIND_DATA, KIND_END_OF_SESSION, MAX_SESSIONS, Sessions

__all__ = ["GAP_FILL", "LINE_A", "LINE_B", "LINE_NAMES", "LINE_REPLAY", "LINE_REREQUEST", "SNAPSHOT", "STALE",
           "STATES", "SYNCHRONIZED", "Sequencer"]

LINE_A, LINE_B, LINE_REREQUEST, LINE_REPLAY = K.LINE_A, K.LINE_B, K.LINE_REREQUEST, K.LINE_REPLAY
_EVENT_NAMES = {K.EV_GAP: "gap", K.EV_SYNCHRONIZED: "synchronized", K.EV_SESSION: "session",
                K.EV_END_OF_SESSION: "end_of_session", K.EV_OVERFLOW: "overflow", K.EV_WRONG_SESSION: "wrong_session"}


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class Sequencer:
    """Sequencing of one feed.

    hold_messages: messages the hold queue keeps ahead of the next expected one (rounded up to a
    power of two); slot_bytes: messages up to this size (length prefix included) are held in their
    slot, longer ones in an arena of hold_arena_bytes; out_bytes / out_messages: the most bytes and
    messages one delivery hands to the sink. start_at_one: follow a session from sequence 1 (a late
    joiner recovers the start) rather than from the first packet seen. await_snapshot: a late join from
    a snapshot: hold what the lines bring from the first packet on, deliver nothing until `resume_at`."""

    def __init__(self, sessions: Sessions | None = None, hold_messages: int = 1 << 18, slot_bytes: int = 64,
                 hold_arena_bytes: int = 1 << 20, out_bytes: int = 4 << 20, out_messages: int = 1 << 16,
                 start_at_one: bool = True, events: int = 4096, on_status=None, await_snapshot: bool = False):
        if (hold_messages < 2 or slot_bytes < 2 or out_bytes < 65537 or events < 2 * K.EV_ROOM
                or out_messages < 1 << 15):
            raise ValueError("sequencer sizes too small: hold_messages >= 2, slot_bytes >= 2, out_bytes >= 65537, "
                             "out_messages >= 32768")
        self.sessions = sessions if sessions is not None else Sessions()
        m = _pow2(hold_messages)
        self.slot_bytes = int(slot_bytes)
        self._st = np.zeros(1, dtype=K.FEED)
        self._st[0]["session"] = -1
        self._st[0]["start_at_one"] = 1 if start_at_one else 0
        self._st[0]["await_snapshot"] = 1 if await_snapshot else 0
        self._ls = np.zeros(K.N_LINES, dtype=K.LINE)
        self._retired = np.zeros(MAX_SESSIONS, dtype=np.uint8)
        self._slot_seq = np.zeros(m, dtype=np.int64)
        self._slot_len = np.zeros(m, dtype=np.uint32)
        self._slot_off = np.zeros(m, dtype=np.int64)
        self._slot_ts = np.zeros(m, dtype=np.int64)
        self._slot_data = np.zeros(m * self.slot_bytes, dtype=np.uint8)
        self._arena = np.zeros(max(int(hold_arena_bytes), 1), dtype=np.uint8)
        self.out = np.zeros(int(out_bytes), dtype=np.uint8)  # the delivered stream; a sink sees a view
        self.out_ts = np.zeros(int(out_messages), dtype=np.int64)  # receive time per delivered message
        self._ev = np.zeros((int(events), 4), dtype=np.int64)
        self.latency = np.zeros(K.LATENCY_BUCKETS, dtype=np.int64)  # log2 ns buckets, see sequencer_core
        self._ranges = np.zeros((256, 2), dtype=np.int64)
        self.on_status = on_status
        self.stale_reason = ""
        # one-row index for runs of messages that come without a MoldUDP64 header (TCP replay)
        self._r_off = np.zeros(1, dtype=np.int64)
        self._r_blocks = np.zeros(1, dtype=np.int64)
        self._r_seq = np.zeros(1, dtype=np.uint64)
        self._r_sess = np.zeros(1, dtype=np.uint16)
        self._r_ts = np.zeros(1, dtype=np.int64)
        self._r_kind = np.full(1, KIND_DATA, dtype=np.uint8)
        self._r_bytes = np.zeros(1, dtype=np.int64)

    # -- feeding --------------------------------------------------------------------------------
    def feed(self, buf: np.ndarray, index, line: int, sink) -> None:
        """Sequence every row of `index` (a moldudp64.PacketIndex of packets that came on `line`)."""
        self._run(buf, index.offset, index.blocks, index.seq, index.session, index.timestamp_ns, index.kind,
                  index.nbytes, index.rows, line, sink)

    def feed_blocks(self, buf: np.ndarray, offset: int, count: int, first_seq: int, line: int, sink,
                    timestamp_ns: int = 0, nbytes: int | None = None) -> None:
        """Sequence `count` MoldUDP64-framed blocks at buf[offset:] of the current session, the first
        with sequence first_seq (messages recovered by TCP replay, received at timestamp_ns)."""
        session = self.session_index
        if session < 0 or count <= 0:
            return
        self._r_off[0] = offset
        self._r_blocks[0] = count
        self._r_seq[0] = first_seq
        self._r_sess[0] = session
        self._r_ts[0] = timestamp_ns
        self._r_bytes[0] = nbytes if nbytes is not None else K.block_bytes(buf, offset, count)
        self._run(buf, self._r_off, self._r_blocks, self._r_seq, self._r_sess, self._r_ts, self._r_kind,
                  self._r_bytes, 1, line, sink)

    def feed_end_of_session(self, next_seq: int, line: int, sink) -> None:
        """End of Session learned outside MoldUDP64 (a SoupBinTCP 'Z' after the replay's last message):
        the session ends before next_seq."""
        session = self.session_index
        if session < 0:
            return
        self._r_off[0] = 0
        self._r_blocks[0] = 0
        self._r_seq[0] = next_seq
        self._r_sess[0] = session
        self._r_ts[0] = 0
        self._r_bytes[0] = 0
        self._r_kind[0] = KIND_END_OF_SESSION
        try:
            self._run(self.out, self._r_off, self._r_blocks, self._r_seq, self._r_sess, self._r_ts, self._r_kind,
                      self._r_bytes, 1, line, sink)
        finally:
            self._r_kind[0] = KIND_DATA

    def _run(self, buf, off, blocks, seq, sess, ts, kind, nbytes, rows, line, sink):
        self._st[0]["now_ns"] = time.time_ns()
        row = 0
        while True:
            row, status = K.process(buf, off, blocks, seq, sess, ts, kind, nbytes, row, rows, line, self._retired,
                                    self._st, self._ls, self._slot_seq, self._slot_len, self._slot_off,
                                    self._slot_ts, self._slot_data, self._arena, self.slot_bytes, self.out,
                                    self.out_ts, self._ev, self.latency)
            self._hand_over(sink)
            if status == K.DONE:
                return

    def _hand_over(self, sink):
        """Status events first (a new session must be known before its messages), then messages."""
        s = self._st[0]
        n = int(s["n_events"])
        if n:
            s["n_events"] = 0
            if self.on_status is not None:
                for kind, a, b, line in self._ev[:n].tolist():
                    if kind in (K.EV_SESSION, K.EV_WRONG_SESSION):  # a is a session index
                        a = self.sessions.name(a)
                    self.on_status(_EVENT_NAMES[kind], a, b, line)
        count = int(s["out_count"])
        if count:
            length = int(s["out_len"])
            first = int(s["out_first"])
            s["out_count"] = 0
            s["out_len"] = 0
            sink(self.out[:length], first, count, self.out_ts[:count])

    def resume_at(self, next_seq: int, sink) -> int:
        """A snapshot holds every message before `next_seq`: continue from there (held messages it covers
        are dropped, what is held after it is delivered now); returns how many held messages it covered."""
        covered = int(K.jump(self._st, self._slot_seq, self._slot_off, next_seq))
        if self.on_status is not None:
            self.on_status("snapshot", next_seq, covered, -1)
        self._run(self.out, self._r_off, self._r_blocks, self._r_seq, self._r_sess, self._r_ts, self._r_kind,
                  self._r_bytes, 0, 0, sink)
        return covered

    # -- control plane --------------------------------------------------------------------------
    def missing(self) -> list[tuple[int, int]]:
        """Missing ranges [first, end), coalesced, oldest first (at most 256)."""
        n = K.missing(self._st, self._slot_seq, self._ranges)
        return [(int(a), int(b)) for a, b in self._ranges[:n]]

    def give_up(self, reason: str) -> None:
        """Recovery gave up on what is missing: the feed is STALE until it catches up after all."""
        if K.give_up(self._st, time.time_ns()):
            self.stale_reason = reason
            if self.on_status is not None:
                self.on_status("stale", reason, 0, -1)

    # -- typed views ----------------------------------------------------------------------------
    def view(self, now_ns: int | None = None) -> FeedState:
        """The feed's state now, as named fields (an open STALE episode counted up to now_ns)."""
        s = self._st[0]
        total, longest = int(s["stale_total_ns"]), int(s["stale_longest_ns"])
        stale = bool(s["stale"])
        if stale:
            open_ns = max(0, (time.time_ns() if now_ns is None else now_ns) - int(s["stale_since_ns"]))
            total, longest = total + open_ns, max(longest, open_ns)
        session = int(s["session"])
        expected, highest, held = int(s["expected"]), int(s["highest"]), int(s["held"])
        return FeedState(
            state=self.state, reason=self.stale_reason if stale else "",
            session=self.sessions.name(session) if session >= 0 else "", next_seq=expected, highest_seq=highest,
            held=held, missing=max(0, highest - expected - held), end_of_session=bool(s["eos"]),
            delivered=int(s["delivered"]), duplicates=int(s["duplicates"]), gaps=int(s["gaps"]),
            gap_messages=int(s["gap_messages"]), hold_overflow=int(s["overflow"]),
            old_session_packets=int(s["old_session"]), wrong_session_answers=int(s["wrong_session"]),
            sessions=int(s["sessions"]), abandoned=int(s["abandoned"]), stale_episodes=int(s["stale_episodes"]),
            stale_seconds_total=round(total / 1e9, 3), stale_seconds_longest=round(longest / 1e9, 3),
            snapshots=int(s["snapshots"]), snapshot_covered=int(s["snapshot_covered"]),
            snapshot_skipped=int(s["snapshot_skipped"]), awaiting_snapshot=bool(s["await_snapshot"]))

    def line(self, line: int) -> LineState:
        """One line's statistics (LINE_A, LINE_B, LINE_REREQUEST or LINE_REPLAY)."""
        ln = self._ls[line]
        return LineState(
            packets=int(ln["packets"]), messages=int(ln["messages"]), first=int(ln["first"]),
            duplicates=int(ln["duplicates"]), gaps=int(ln["gaps"]), gap_messages=int(ln["gap_messages"]),
            last_packet_ns=int(ln["last_ns"]), next_seq=int(ln["next"]), heartbeats=int(ln["heartbeats"]),
            end_of_session=int(ln["end_of_session"]))

    @property
    def state(self) -> str:
        s = self._st[0]
        if s["stale"]:
            return STALE
        if s["await_snapshot"]:
            return SNAPSHOT
        return GAP_FILL if s["in_gap"] else SYNCHRONIZED

    @property
    def expected(self) -> int:
        """Next sequence to deliver (0 before the first packet)."""
        return int(self._st[0]["expected"])

    @property
    def highest(self) -> int:
        """Next sequence known to exist."""
        return int(self._st[0]["highest"])

    @property
    def session_index(self) -> int:
        """Index (in `sessions`) of the session followed; -1 before the first packet."""
        return int(self._st[0]["session"])

    @property
    def session(self) -> str:
        s = self.session_index
        return self.sessions.name(s) if s >= 0 else ""

    @property
    def awaiting_snapshot(self) -> bool:
        return bool(self._st[0]["await_snapshot"])

    @property
    def end_of_session(self) -> bool:
        return bool(self._st[0]["eos"])

    @property
    def finished(self) -> bool:
        """End of Session seen and nothing missing: the session is complete."""
        return self.end_of_session and self.expected >= self.highest and not self.awaiting_snapshot

    @property
    def held(self) -> int:
        return int(self._st[0]["held"])

    @property
    def arena_live(self) -> int:
        """Held messages that live in the arena (longer than a slot)."""
        return int(self._st[0]["arena_live"])

    def stats(self) -> dict:
        """view() as a dict (JSON summaries)."""
        return self.view().as_dict()

    def line_stats(self, line: int) -> dict:
        return self.line(line).as_dict()
