"""The live feed handler: lines A and B → MoldUDP64 → sequencer → (record file, order book), with
recovery beside it, in one loop.

`FeedHandler.run()` waits on the line sources and the recovery sockets, reads whatever is waiting
in batches (each batch: compiled MoldUDP64 walk, compiled sequencer, compiled book), lets recovery
plan, and reports status. Messages reach consumers only through the sequencer, so the record file is
exactly the delivered stream. Status events are logged and steer the book: STALE (or a hold
overflow) marks every book stale, SYNCHRONIZED clears it, a new session clears the book (a new day).
"""

import logging
import select
import time

import numpy as np

from xdpfeed.capture.batch import FrameBatch, source_ended
from xdpfeed.multicast.feed import sequencer_core as K
from xdpfeed.multicast.feed.recovery import Recovery
from xdpfeed.multicast.feed.sequencer import LINE_NAMES, Sequencer
from xdpfeed.multicast.feed.stream_stats import count_types
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import PacketIndex, extract_batch

log = logging.getLogger("xdpfeed.handler")

FRAMES_PER_BATCH = 1024


class Line:
    """One line's source and the buffers its batches go through."""

    def __init__(self, number: int, source, groups=None):
        self.number = number
        self.source = source
        self.groups = np.zeros((0, 2), dtype=np.int64) if groups is None else groups
        self.frames = FrameBatch(FRAMES_PER_BATCH)
        self.index = PacketIndex(FRAMES_PER_BATCH)
        self.counters = C.new()
        self.exhausted = False  # a file source reached its end

    def pump(self, seq: Sequencer, sink) -> int:
        """Read one batch and sequence it; returns frames read."""
        n = self.source.recv(self.frames)
        if not n:
            self.exhausted = source_ended(self.source)
            return 0
        start = 0
        while start < self.frames.count:
            start = extract_batch(self.frames, start, self.groups, seq.sessions, self.index, self.counters,
                                  control=True)
            if self.index.rows:
                seq.feed(self.frames.data, self.index, self.number, sink)
        self.source.release(self.frames)
        return n


class FeedHandler:
    def __init__(self, lines: list[Line], seq: Sequencer, recovery_factory=None, book=None, record=None,
                 clock=time.monotonic, count_types: bool = False):
        """recovery_factory(seq, sink, clock) builds the Recovery (it needs the sink defined here).
        count_types: count delivered messages by type (for metrics)."""
        self.lines, self.seq, self.book, self.record, self.clock = lines, seq, book, record, clock
        self.delivered_bytes = 0
        self.type_counts = np.zeros(256, dtype=np.int64)
        self.count_types = count_types
        self.seq.on_status = self._status
        self.recovery: Recovery | None = None
        if recovery_factory is not None:
            self.attach_recovery(recovery_factory)
        self.events: list[tuple] = []  # (time, event, a, b, line) for summaries and tests

    def attach_recovery(self, factory) -> None:
        """Add recovery once its servers are known; factory(seq, sink, clock) → Recovery."""
        self.recovery = factory(self.seq, self.deliver, self.clock)

    # -- consumers ------------------------------------------------------------------------------
    def deliver(self, out: np.ndarray, first_seq: int, count: int) -> None:
        if self.count_types:
            count_types(out, out.size, self.type_counts)
        if self.record is not None:
            self.record.write(memoryview(out))
        if self.book is not None:
            self.book.apply_stream(out)
        self.delivered_bytes += out.size

    def _status(self, event: str, a, b, line: int) -> None:
        self.events.append((self.clock(), event, a, b, line))
        who = LINE_NAMES[line] if 0 <= line < len(LINE_NAMES) else "-"
        if event == "gap":
            log.info("gap [%d, %d) (%d messages) seen on line %s", a, b, b - a, who)
        elif event == "synchronized":
            log.info("synchronized at %d", a)
            if self.book is not None:
                self.book.mark_stale(stale=False)
        elif event in ("stale", "overflow"):
            log.error("feed STALE: %s", a if event == "stale" else f"hold queue full at sequence {a}")
            if self.book is not None:
                self.book.mark_stale()
        elif event == "session":
            if b < 0:
                log.info("following session %r", a)
            else:
                log.warning("new session %r; %d messages of the last one abandoned; book cleared", a, b)
            if self.book is not None and b >= 0:
                self.book.clear()
        elif event == "end_of_session":
            log.info("end of session at %d (line %s)", a, who)
        elif event == "wrong_session":
            log.warning("recovery answer for session %r dropped", a)

    # -- the loop -------------------------------------------------------------------------------
    def step(self, wait: float) -> int:
        """Wait up to `wait` seconds for input, then process everything waiting; returns frames read."""
        files = [ln.source for ln in self.lines if hasattr(ln.source, "fileno") and not ln.exhausted]
        writers = []
        polled = any(not hasattr(ln.source, "fileno") and not ln.exhausted for ln in self.lines)
        if self.recovery is not None:
            readers, writers = self.recovery.fileobjs()
            files += readers
            wait = min(wait, self.recovery.next_timer())
        if (files or writers) and not polled:
            select.select(files, writers, [], wait)
        frames = 0
        while True:
            got = 0
            for ln in self.lines:
                if not ln.exhausted:
                    got += ln.pump(self.seq, self.deliver)
            if self.recovery is not None:
                self.recovery.poll()
            frames += got
            if not got or frames >= 64 * FRAMES_PER_BATCH:
                return frames

    def run(self, until_eos: bool = False, stop=None, on_tick=None, tick: float = 0.5,
            idle_timeout: float | None = None) -> str:
        """Loop until `stop` is set, or (until_eos) the session is complete, or after End of Session the
        feed is STALE and recovery made no progress for a gap deadline plus a server timeout, or every file
        source is exhausted and nothing is left to recover.
        Returns why: "complete", "stale", "stopped", "sources exhausted" or "idle"."""
        last_tick = last_input = self.clock()
        stale_at_end = None  # (since, next sequence then): End of Session seen with the feed STALE
        while True:
            got = self.step(0.05)
            now = self.clock()
            if got:
                last_input = now
            if on_tick is not None and now - last_tick >= tick:
                last_tick = now
                on_tick(self)
            if stop is not None and stop.is_set():
                return "stopped"
            if until_eos and self.seq.finished:
                return "complete"
            if until_eos and self.seq.end_of_session and self.recovery_gave_up:
                # recovery keeps trying: the session is given up once it made no progress for a gap deadline
                # plus a server timeout (a replay server that went silent was detected and replaced)
                if stale_at_end is None or self.seq.expected != stale_at_end[1]:
                    stale_at_end = (now, self.seq.expected)
                p = self.recovery.policy if self.recovery is not None else None
                if p is None or now - stale_at_end[0] >= p.deadline + p.server_timeout:
                    return "stale"
            else:
                stale_at_end = None
            if self.lines and all(ln.exhausted for ln in self.lines):
                if not self.seq.missing():
                    return "sources exhausted"
                if self.recovery is None or self.recovery_gave_up:
                    return "stale"
            if idle_timeout is not None and now - last_input > idle_timeout:
                return "idle"

    @property
    def lost(self) -> int:
        """Messages known to exist and not delivered: missing or held now, or abandoned with a session."""
        return int(self.seq.st[K.ST_ABANDONED]) + max(0, self.seq.highest - self.seq.expected)

    @property
    def recovery_gave_up(self) -> bool:
        return self.seq.state == "STALE" and bool(self.seq.stale_reason)

    def close(self) -> None:
        if self.recovery is not None:
            self.recovery.close()
        for ln in self.lines:
            ln.source.close()

    # -- results --------------------------------------------------------------------------------
    def line_summaries(self) -> dict:
        """Per line: the sequencer's counts and the source's own (packets, bytes, drops by reason)."""
        out = {}
        for ln in self.lines:
            d = self.seq.line_stats(ln.number)
            stats = getattr(ln.source, "stats", None)
            if stats is not None:
                d["source"] = stats()
            out[LINE_NAMES[ln.number]] = d
        return out

    def summary(self) -> dict:
        st = self.seq.stats()
        filled = self.recovery.filled() if self.recovery is not None else {"rerequest": 0, "replay": 0}
        lost = self.lost
        out = {
            "delivered": st["delivered"], "duplicates": st["duplicates"], "gaps": st["gaps"],
            "filled_rerequest": filled["rerequest"], "filled_replay": filled["replay"], "lost": lost,
            "stale": st["state"] == "STALE", "state": st["state"], "session": st["session"],
            "next_seq": st["next_seq"], "end_of_session": st["end_of_session"], "hold_overflow": st["hold_overflow"],
            "stale_episodes": st["stale_episodes"], "stale_seconds_total": st["stale_seconds_total"],
            "stale_seconds_longest": st["stale_seconds_longest"], "lines": self.line_summaries(),
        }
        if self.recovery is not None:
            r = self.recovery.stats
            secs = sorted(r.recovery_seconds)
            out["recovery"] = {
                "rerequests": r.rerequests, "rerequest_timeouts": r.rerequest_timeouts,
                "replay_sessions": r.replay_sessions, "replay_failures": dict(r.replay_failures),
                "gaps_filled": r.gaps_filled, "gave_up": r.gave_up,
                "recovery_seconds_median": secs[len(secs) // 2] if secs else None,
                "recovery_seconds_max": secs[-1] if secs else None,
            }
            if self.recovery.rerequest is not None:
                out["recovery"]["rerequest_client"] = dict(self.recovery.rerequest.stats)
        for ln in self.lines:
            dropped = {k: v for k, v in C.as_dict(ln.counters).items() if v and k in (
                "malformed_packets", "filtered", "non_ipv4", "non_udp", "ip_fragments", "truncated_frames",
                "bad_headers", "sessions_overflow")}
            if dropped:
                out["lines"][LINE_NAMES[ln.number]]["skipped"] = dropped
        return out
