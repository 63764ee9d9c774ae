"""The sequencer's Python face: one per feed; lines A and B, re-request answers and TCP replay all
enter it, and every message leaves it exactly once, in sequence order (compiled core:
multicast.feed.sequencer_core).

`Sequencer.feed(buf, index, line, sink)` takes the PacketIndex rows of one line (extract them with
`control=True` so heartbeats and End of Session count too); delivered messages reach
`sink(out, first_seq, count)` as a NASDAQ binary ITCH stream ([uint16 length][message] ...), and
state changes reach the status listener `on_status(event, a, b, line)`: "gap" [a, b) found
missing, "synchronized" at a, "session" (a: session name, b: messages the previous session
abandoned), "end_of_session" (a: its next sequence), "overflow" (hold queue full at a), "stale"
(recovery gave up; a: reason), "wrong_session". States: SYNCHRONIZED, GAP_FILL, STALE.
"""

import time

import numpy as np

from xdpfeed.multicast.feed import sequencer_core as K
from xdpfeed.multicast.wire.moldudp64 import KIND_DATA, KIND_END_OF_SESSION, MAX_SESSIONS, Sessions

SYNCHRONIZED, GAP_FILL, STALE = "SYNCHRONIZED", "GAP_FILL", "STALE"
STATES = (SYNCHRONIZED, GAP_FILL, STALE)  # index = the number metrics export
LINE_NAMES = ("A", "B", "rerequest", "replay")
LINE_A, LINE_B, LINE_REREQUEST, LINE_REPLAY = K.LINE_A, K.LINE_B, K.LINE_REREQUEST, K.LINE_REPLAY
_EVENT_NAMES = {K.EV_GAP: "gap", K.EV_SYNCHRONIZED: "synchronized", K.EV_SESSION: "session",
                K.EV_END_OF_SESSION: "end_of_session", K.EV_OVERFLOW: "overflow", K.EV_WRONG_SESSION: "wrong_session"}
_LINE_STATS = ("packets", "messages", "first", "duplicates", "gaps", "gap_messages", "last_packet_ns", "next_seq",
               "heartbeats", "end_of_session")


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class Sequencer:
    """Sequencing of one feed.

    hold_messages: messages the hold queue keeps ahead of the next expected one (rounded up to a
    power of two); slot_bytes: messages up to this size (length prefix included) are held in their
    slot, longer ones in an arena of hold_arena_bytes; out_bytes: delivery buffer handed to the sink.
    start_at_one: follow a session from sequence 1 (a late joiner recovers the start) rather than
    from the first packet seen."""

    def __init__(self, sessions: Sessions | None = None, hold_messages: int = 1 << 18, slot_bytes: int = 64,
                 hold_arena_bytes: int = 1 << 20, out_bytes: int = 4 << 20, start_at_one: bool = True,
                 events: int = 4096, on_status=None):
        if hold_messages < 2 or slot_bytes < 2 or out_bytes < 65537 or events < 2 * K.EV_ROOM:
            raise ValueError("sequencer sizes too small: hold_messages >= 2, slot_bytes >= 2, out_bytes >= 65537")
        self.sessions = sessions if sessions is not None else Sessions()
        m = _pow2(hold_messages)
        self.slot_bytes = int(slot_bytes)
        self.st = np.zeros(K.N_ST, dtype=np.int64)
        self.st[K.ST_SESSION] = -1
        self.st[K.ST_START_AT_ONE] = 1 if start_at_one else 0
        self.ls = np.zeros((K.N_LINES, K.N_LS), dtype=np.int64)
        self.retired = np.zeros(MAX_SESSIONS, dtype=np.uint8)
        self.slot_seq = np.zeros(m, dtype=np.int64)
        self.slot_len = np.zeros(m, dtype=np.uint32)
        self.slot_off = np.zeros(m, dtype=np.int64)
        self.slot_data = np.zeros(m * self.slot_bytes, dtype=np.uint8)
        self.arena = np.zeros(max(int(hold_arena_bytes), 1), dtype=np.uint8)
        self.out = np.zeros(int(out_bytes), dtype=np.uint8)
        self.ev = np.zeros((int(events), 4), dtype=np.int64)
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
        with sequence first_seq (messages recovered by TCP replay)."""
        if self.st[K.ST_SESSION] < 0 or count <= 0:
            return
        self._r_off[0] = offset
        self._r_blocks[0] = count
        self._r_seq[0] = first_seq
        self._r_sess[0] = self.st[K.ST_SESSION]
        self._r_ts[0] = timestamp_ns
        self._r_bytes[0] = nbytes if nbytes is not None else K.block_bytes(buf, offset, count)
        self._run(buf, self._r_off, self._r_blocks, self._r_seq, self._r_sess, self._r_ts, self._r_kind,
                  self._r_bytes, 1, line, sink)

    def feed_end_of_session(self, next_seq: int, line: int, sink) -> None:
        """End of Session learned outside MoldUDP64 (a SoupBinTCP 'Z' after the replay's last message):
        the session ends before next_seq."""
        if self.st[K.ST_SESSION] < 0:
            return
        self._r_off[0] = 0
        self._r_blocks[0] = 0
        self._r_seq[0] = next_seq
        self._r_sess[0] = self.st[K.ST_SESSION]
        self._r_ts[0] = 0
        self._r_bytes[0] = 0
        self._r_kind[0] = KIND_END_OF_SESSION
        try:
            self._run(self.out, self._r_off, self._r_blocks, self._r_seq, self._r_sess, self._r_ts, self._r_kind,
                      self._r_bytes, 1, line, sink)
        finally:
            self._r_kind[0] = KIND_DATA

    def _run(self, buf, off, blocks, seq, sess, ts, kind, nbytes, rows, line, sink):
        self.st[K.ST_NOW_NS] = time.time_ns()
        row = 0
        while True:
            row, status = K.process(buf, off, blocks, seq, sess, ts, kind, nbytes, row, rows, line, self.retired,
                                    self.st, self.ls, self.slot_seq, self.slot_len, self.slot_off, self.slot_data,
                                    self.arena, self.slot_bytes, self.out, self.ev, self.latency)
            self._hand_over(sink)
            if status == K.DONE:
                return

    def _hand_over(self, sink):
        """Status events first (a new session must be known before its messages), then messages."""
        n = int(self.st[K.ST_N_EVENTS])
        if n:
            self.st[K.ST_N_EVENTS] = 0
            if self.on_status is not None:
                for kind, a, b, line in self.ev[:n].tolist():
                    if kind in (K.EV_SESSION, K.EV_WRONG_SESSION):  # a is a session index
                        a = self.sessions.name(a)
                    self.on_status(_EVENT_NAMES[kind], a, b, line)
        count = int(self.st[K.ST_OUT_COUNT])
        if count:
            length = int(self.st[K.ST_OUT_LEN])
            first = int(self.st[K.ST_OUT_FIRST])
            self.st[K.ST_OUT_COUNT] = 0
            self.st[K.ST_OUT_LEN] = 0
            sink(self.out[:length], first, count)

    # -- control plane --------------------------------------------------------------------------
    def missing(self) -> list[tuple[int, int]]:
        """Missing ranges [first, end), coalesced, oldest first (at most 256)."""
        n = K.missing(self.st, self.slot_seq, self._ranges)
        return [(int(a), int(b)) for a, b in self._ranges[:n]]

    def give_up(self, reason: str) -> None:
        """Recovery gave up on what is missing: the feed is STALE until it catches up after all."""
        if not self.st[K.ST_STALE]:
            K.enter_stale(self.st, time.time_ns())
            self.stale_reason = reason
            if self.on_status is not None:
                self.on_status("stale", reason, 0, -1)

    @property
    def state(self) -> str:
        if self.st[K.ST_STALE]:
            return STALE
        return GAP_FILL if self.st[K.ST_IN_GAP] else SYNCHRONIZED

    @property
    def expected(self) -> int:
        """Next sequence to deliver (0 before the first packet)."""
        return int(self.st[K.ST_EXPECTED])

    @property
    def highest(self) -> int:
        """Next sequence known to exist."""
        return int(self.st[K.ST_HIGHEST])

    @property
    def session(self) -> str:
        s = int(self.st[K.ST_SESSION])
        return self.sessions.name(s) if s >= 0 else ""

    @property
    def end_of_session(self) -> bool:
        return bool(self.st[K.ST_EOS])

    @property
    def finished(self) -> bool:
        """End of Session seen and nothing missing: the session is complete."""
        return self.end_of_session and self.expected >= self.highest

    @property
    def held(self) -> int:
        return int(self.st[K.ST_HELD])

    @property
    def missing_messages(self) -> int:
        """Messages known to exist and not delivered (outside the hold queue)."""
        return max(0, self.highest - self.expected - self.held)

    def stats(self) -> dict:
        st = self.st
        return {
            "state": self.state, "session": self.session, "next_seq": self.expected, "highest_seq": self.highest,
            "delivered": int(st[K.ST_DELIVERED]), "duplicates": int(st[K.ST_DUPLICATES]),
            "gaps": int(st[K.ST_GAPS]), "gap_messages": int(st[K.ST_GAP_MESSAGES]), "held": self.held,
            "missing": self.missing_messages, "hold_overflow": int(st[K.ST_OVERFLOW]),
            "old_session_packets": int(st[K.ST_OLD_SESSION]), "wrong_session_answers": int(st[K.ST_WRONG_SESSION]),
            "sessions": int(st[K.ST_SESSIONS]), "abandoned": int(st[K.ST_ABANDONED]),
            "end_of_session": self.end_of_session, **self.stale_episodes(),
        }

    def stale_episodes(self, now_ns: int | None = None) -> dict:
        """How often the feed went STALE and for how long (seconds; an episode still open counts up to now)."""
        st = self.st
        total, longest = int(st[K.ST_STALE_TOTAL_NS]), int(st[K.ST_STALE_LONGEST_NS])
        if st[K.ST_STALE]:
            open_ns = max(0, (time.time_ns() if now_ns is None else now_ns) - int(st[K.ST_STALE_SINCE_NS]))
            total, longest = total + open_ns, max(longest, open_ns)
        return {"stale_episodes": int(st[K.ST_STALE_EPISODES]), "stale_seconds_total": round(total / 1e9, 3),
                "stale_seconds_longest": round(longest / 1e9, 3)}

    def line_stats(self, line: int) -> dict:
        return {name: int(v) for name, v in zip(_LINE_STATS, self.ls[line], strict=True)}
