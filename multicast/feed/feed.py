"""`Feed`: the one way to build a live or replayed pipeline, and the loop that runs it.

A Feed owns everything between the wire and its consumers: the line sources (any source URI: `pcap:`,
`udp:`, `afxdp:`, `packet:`, `dpdk:`), the sequencer (A/B arbitration, hold queue, exactly once and in
order), recovery (MoldUDP64 re-request, SoupBinTCP replay), the order book, metrics, the consumers given
when it is built (multicast.feed.consumers) and the sinks opened from its `outputs` URIs (multicast.sinks:
`itch:`, `dbn:`, `parquet:`, `ipc:`; `record=PATH` is `itch:PATH`), and the snapshots of a late join
(`start="snapshot"`) or a resync (`resync="snapshot"`) from GLIMPSE servers (multicast.feed.snapshot). It
takes the keys of the TOML config as keyword arguments (multicast.feed.config):

    with Feed(line_a="pcap:day.pcap", consumers=[MyStrategy()]) as feed:
        why = feed.run(until_eos=True)
        print(feed.summary())

For each delivered batch, in this order: the book, `on_messages(batch)` of every consumer and then of every
sink, then `on_top_of_book(events)` with the book's changes that batch caused. A sink that fails is logged,
counted, detached and listed in `sink_failures`; the feed goes on. Status changes become typed events
(multicast.feed.status) for `on_status`, the log and the book (STALE flags every book, SYNCHRONIZED
clears the flags, a new session clears the book). A snapshot is delivered like messages, between a
SnapshotBegin and a SnapshotEnd event, in batches marked `batch.snapshot`, into a cleared book; the feed
then goes on from the snapshot's sequence + 1. `run()` loops until told to stop; `step(timeout)`
serves callers that own their loop.
"""

import logging
import select
import time
from collections import deque

import numpy as np

from xdpfeed.capture.uri import open_source, parse
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.feed import config as cfgmod
from xdpfeed.multicast.feed.consumers import ConsumerSet, MessageBatch
from xdpfeed.multicast.feed.lines import FRAMES_PER_BATCH, Line
from xdpfeed.multicast.feed.recovery import Recovery
from xdpfeed.multicast.feed.sequencer import LINE_A, LINE_B, LINE_NAMES, Sequencer
from xdpfeed.multicast.feed.snapshot import Snapshot, SnapshotLoader
from xdpfeed.multicast.feed.state import GAP_FILL, SNAPSHOT, STALE, SYNCHRONIZED, FeedState
from xdpfeed.multicast.feed.status import (
    ConsumerFailed,
    EndOfSession,
    GapOpened,
    SessionChanged,
    SnapshotBegin,
    SnapshotEnd,
    StateChanged,
    StatusEvent,
    WrongSession,
)
from xdpfeed.multicast.feed.stream_stats import count_types
from xdpfeed.multicast.feed.warmup import warm_up
from xdpfeed.multicast.sinks.base import close_sinks
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.glimpse import batch_ends

log = logging.getLogger("xdpfeed.handler")

OUT_MESSAGES = 1 << 16  # most messages in one delivered batch
SKIPPED = ("malformed_packets", "filtered", "non_ipv4", "non_udp", "ip_fragments", "truncated_frames", "bad_headers",
           "sessions_overflow")
WHY = ("complete", "stale", "stopped", "sources exhausted", "idle", "consumer failed")


def _may_read_afxdp(cfg: cfgmod.FeedConfig, given: dict) -> bool:
    """A line is an AF_XDP source, or may be (a source given open)."""
    return bool(given) or any(getattr(cfg, k) and parse(getattr(cfg, k))[0] == "afxdp" for k in ("line_a", "line_b"))


class Feed:
    """A feed handler: lines → sequencer → (record, book, consumers), recovery beside it.

    Keyword arguments are the config keys (`line_a`, `line_b`, `rerequest`, `replay`, `user`,
    `password_file`, the recovery policy's, `hold_messages`, `slot_bytes`, `hold_arena_bytes`, `start`,
    `book`, `record`, `metrics`, `name`), over `config` when given. A line may also be an open source
    object. `consumers` are called for every batch; `on_consumer_error` is "stop" or "detach"; `collectors`
    are more Prometheus collectors served with the feed's metrics (a live comparison's)."""

    def __init__(self, config: cfgmod.FeedConfig | None = None, *, consumers=(), on_consumer_error: str = "stop",
                 clock=time.monotonic, warm: bool = True, collectors=(), **keys):
        given = {k: keys.pop(k) for k in ("line_a", "line_b") if keys.get(k) is not None
                 and not isinstance(keys[k], str)}  # open sources
        cfg = cfgmod.with_keys(config or cfgmod.FeedConfig(), keys)
        if not (cfg.line_a or cfg.line_b or given):
            raise cfgmod.ConfigError("no line to read: give line_a and/or line_b (a source URI)")
        problem = cfgmod.login_problem(cfg)
        if problem is not None:
            raise cfgmod.ConfigError(cfgmod.login_problem_text(problem))
        self.config = cfg
        self.name = cfg.name
        self.clock = clock
        self.sinks: list = []  # opened from cfg.outputs (and cfg.record) below
        self._polled: list = []
        self.sink_failures: list[tuple[str, str]] = []  # (sink, why) of every sink that failed
        self.status_log: deque[StatusEvent] = deque(maxlen=10_000)  # the latest status events
        self._state = SYNCHRONIZED  # as the status events told it (always the sequencer's, once handed over)
        self.batch = MessageBatch(OUT_MESSAGES)
        self.type_counts = np.zeros(256, dtype=np.int64)
        self.count_types = False  # metrics turn it on
        self.delivered_bytes = 0
        self.recovery: Recovery | None = None
        self.snapshots: SnapshotLoader | None = None
        self.latency = None  # multicast.latency.stages.FeedLatency, when cfg.latency
        self.metrics_server = None
        self._collectors = tuple(collectors)
        self.lines: list[Line] = []
        self._closed = False
        self._stale_at_end = None  # (since, next sequence then): End of Session seen with the feed STALE
        if warm:  # compile (or load) before the sockets fill up
            warm_up(afxdp=_may_read_afxdp(cfg, given), replay=bool(cfg.replay),
                    consumers=bool(consumers or cfg.outputs), latency=cfg.latency,
                    snapshot=bool(cfg.start_snapshot or cfg.glimpse))
        try:
            for number, key in ((LINE_A, "line_a"), (LINE_B, "line_b")):
                src = given.get(key) or (open_source(getattr(cfg, key)) if getattr(cfg, key) else None)
                if src is not None:
                    self.lines.append(Line(number, src, on_read=self._frames_read,
                                           on_packets=self._packets if cfg.venue_time else None))
            self.seq = Sequencer(hold_messages=cfg.hold_messages, slot_bytes=cfg.slot_bytes,
                                 hold_arena_bytes=cfg.hold_arena_bytes, out_messages=OUT_MESSAGES,
                                 start_at_one=cfg.start_at_one, on_status=self._on_sequencer,
                                 await_snapshot=cfg.start_snapshot)
            if cfg.start_snapshot:
                self._state = SNAPSHOT
            # one batch's top-of-book events fit: they reach consumers after the batch's messages
            self.book = OrderBook(events=OUT_MESSAGES, on_events=self._top_of_book) if cfg.book else None
            if self.book is not None:
                self.book.prefault(background=True)  # its pages the process's before the first burst
            for uri in ([f"itch:{cfg.record}"] if cfg.record else []) + list(cfg.outputs):
                from xdpfeed.multicast.sinks.uri import open_sink  # (a feed without outputs does not import them)

                self.sinks.append(open_sink(uri, feed=self.name))
            self._polled = [s for s in self.sinks if hasattr(s, "poll")]  # sinks with work between batches
            # sinks come after the caller's consumers, and are detached (never stop the feed) when they fail
            self.consumers = ConsumerSet([*consumers, *self.sinks], on_consumer_error, self._consumer_failed,
                                         after_messages=self._consumer_done)
            if cfg.latency:
                from xdpfeed.multicast.latency.stages import FeedLatency, timestamp_source  # (only when measured)

                names = [s.name for s in self.consumers.slots]
                self.latency = FeedLatency(names[:len(consumers)], names[len(consumers):], cfg.venue_time)
                for ln in self.lines:
                    self.latency.timestamp_sources[LINE_NAMES[ln.number]] = timestamp_source(ln.source)
            if cfg.rerequest or cfg.replay:
                self.recovery = Recovery(self.seq, self.deliver, clock, cfg.policy, cfg.rerequest, cfg.replay,
                                         cfg.user, cfg.password, on_status=self._emit)
            if cfg.glimpse:
                self.snapshots = SnapshotLoader(cfg.glimpse, cfg.user, cfg.password, clock, cfg.policy,
                                                on_status=self._emit)
            self._start_metrics(cfg.metrics_addr)
        except BaseException:
            self.close()
            raise
        log.info("ready: line A %s, line B %s; re-request %s; replay %s", self._line_text(LINE_A),
                 self._line_text(LINE_B), ", ".join(f"{h}:{p}" for h, p in cfg.rerequest) or "-",
                 ", ".join(f"{h}:{p}" for h, p in cfg.replay) or "-")

    @classmethod
    def from_config(cls, path: str, **overrides) -> "Feed":
        """A Feed from a TOML config file, keys given here overriding the file's."""
        consumers = {k: overrides.pop(k) for k in ("consumers", "on_consumer_error", "clock", "warm")
                     if k in overrides}
        return cls(cfgmod.load(path), **consumers, **overrides)

    def _line_text(self, number: int) -> str:
        return next((getattr(self.config, "line_a" if number == LINE_A else "line_b") or repr(ln.source)
                     for ln in self.lines if ln.number == number), "-")

    def _start_metrics(self, addr: str | None) -> None:
        """Serve /metrics: `addr` HOST:PORT (must work), "auto" (the default address; skipped with a warning
        when busy), or None / "off" (none)."""
        if addr in (None, "off"):
            return
        from xdpfeed.multicast.feed import metrics

        auto = addr == "auto"
        host_port = metrics.DEFAULT_ADDR if auto else metrics.parse_addr(addr)
        self.count_types = True
        try:
            self.metrics_server, _ = metrics.serve(self, host_port, self.name, extra=self._collectors)
        except OSError as e:
            if not auto:
                raise cfgmod.ConfigError(f"metrics {addr}: {e.strerror}") from None
            log.warning("metrics not served: %s:%d: %s", *host_port, e.strerror)
            return
        log.info("metrics on http://%s:%d/metrics", *self.metrics_server.server_address[:2])

    # -- the delivered stream -------------------------------------------------------------------
    def deliver(self, stream: np.ndarray, first_seq: int, count: int, timestamp_ns: np.ndarray,
                snapshot: bool = False) -> None:
        """Where the sequencer hands over each batch of delivered messages (and the Feed a snapshot's)."""
        lat = None if snapshot else self.latency
        if lat is not None:
            lat.delivered(timestamp_ns, count, stream)
        if self.count_types:
            count_types(stream, stream.size, self.type_counts)
        if self.book is not None:
            self.book.apply_stream(stream, first_seq=first_seq)
            if lat is not None:
                lat.book(timestamp_ns, count)
        if self.consumers.wants("on_messages"):
            self.consumers.call("on_messages", self.batch.set(stream, first_seq, count, timestamp_ns,
                                                              self.seq.session, snapshot))
        if self.book is not None:
            self.book.flush_events()
        self.delivered_bytes += stream.size

    def _frames_read(self, timestamps: np.ndarray, n: int) -> None:
        if self.latency is not None:
            self.latency.read(timestamps, n)

    def _packets(self, data: np.ndarray, index) -> None:
        if self.latency is not None:
            self.latency.packets(data, index)

    def _consumer_done(self, index: int, batch) -> None:
        if self.latency is not None and not batch.snapshot:
            self.latency.consumer_done(index, batch.timestamp_ns, batch.count)

    def _top_of_book(self, events: np.ndarray) -> None:
        if self.consumers.wants("on_top_of_book"):
            self.consumers.call("on_top_of_book", events)

    # -- status ---------------------------------------------------------------------------------
    def _emit(self, event: StatusEvent) -> None:
        self.status_log.append(event)
        if self.consumers.wants("on_status"):
            self.consumers.call("on_status", event)

    def _change_state(self, state: str, reason: str = "") -> None:
        if state != self._state:
            previous, self._state = self._state, state
            self._emit(StateChanged(self.clock(), state, previous, reason))

    def _on_sequencer(self, event: str, a, b, line: int) -> None:
        """The sequencer's status listener: typed events, the log, and the book's flags."""
        now, who = self.clock(), LINE_NAMES[line] if 0 <= line < len(LINE_NAMES) else "-"
        if event == "gap":
            log.info("gap [%d, %d) (%d messages) seen on line %s", a, b, b - a, who)
            self._emit(GapOpened(now, a, b, who))
            if self._state == SYNCHRONIZED:
                self._change_state(GAP_FILL)
        elif event == "synchronized":
            log.info("synchronized at %d", a)
            if self.book is not None and self._state in (STALE, SNAPSHOT):
                self.book.mark_stale(stale=False)
            if self.snapshots is not None and self.snapshots.active and self.snapshots.resync:
                log.info("the gap was recovered after all: no snapshot needed")
                self.snapshots.cancel()
            self._change_state(SYNCHRONIZED)
        elif event in ("stale", "overflow"):
            reason = a if event == "stale" else f"hold queue full at sequence {a}"
            log.error("feed STALE: %s", reason)
            if self.book is not None:
                self.book.mark_stale()
            self._change_state(STALE, reason)
            if self.config.resync == "snapshot" and self.snapshots is not None and self.seq.session:
                log.warning("resynchronising from a snapshot")
                self.snapshots.start(self.seq.session, resync=not self.seq.awaiting_snapshot)
        elif event == "session":
            if b < 0:
                log.info("following session %r", a)
            else:
                log.warning("new session %r; %d messages of the last one abandoned; book cleared", a, b)
                if self.book is not None:
                    self.book.clear()
            self._emit(SessionChanged(now, a, b))
            self._change_state(SNAPSHOT if self.seq.awaiting_snapshot else SYNCHRONIZED)
        elif event == "end_of_session":
            log.info("end of session at %d (line %s)", a, who)
            self._emit(EndOfSession(now, a, who))
        elif event == "snapshot":
            log.info("going on from sequence %d after the snapshot (%d held messages it covered)", a, b)
            if self._state == SNAPSHOT:
                self._change_state(GAP_FILL)  # until everything after the snapshot is delivered
        elif event == "wrong_session":
            log.warning("recovery answer for session %r dropped", a)
            self._emit(WrongSession(now, a))

    def _consumer_failed(self, name: str, error: str, detached: bool) -> None:
        if any(s.name == name for s in self.sinks):
            self.sink_failures.append((name, error))
        self._emit(ConsumerFailed(self.clock(), name, error, detached))

    # -- the loop -------------------------------------------------------------------------------
    def step(self, timeout: float = 0.05) -> int:
        """Wait up to `timeout` seconds for input, then process everything waiting; returns the messages
        delivered."""
        before = self.seq.view().delivered
        self._step(timeout)
        return self.seq.view().delivered - before

    def _step(self, timeout: float, beside=None) -> int:
        files, writers, polled, timeout = self.wait_set(timeout)
        if beside is not None:
            more, more_writers, more_polled, timeout = beside.wait_set(timeout)
            files, writers, polled = files + more, writers + more_writers, polled or more_polled
        if (files or writers) and not polled:
            select.select(files, writers, [], timeout)
        got = self.pump()
        if beside is not None:
            beside.pump()
        return got

    def wait_set(self, timeout: float) -> tuple[list, list, bool, float]:
        """(readable files, writable files, any polled source, timeout) to wait on before `pump()`: several
        Feeds in one loop wait on all their sets at once (multicast.feed.feeds)."""
        live = [ln for ln in self.lines if not ln.exhausted]
        files = [ln.source for ln in live if ln.waitable]
        polled = any(not ln.waitable for ln in live)
        writers = []
        if self.recovery is not None:
            readers, writers = self.recovery.fileobjs()
            files += readers
            timeout = min(timeout, self.recovery.next_timer())
        if self.snapshots is not None and self.snapshots.active:
            readers, more = self.snapshots.fileobjs()
            files += readers
            writers = writers + more
            timeout = min(timeout, self.snapshots.next_timer())
        return files, writers, polled, timeout

    def pump(self) -> int:
        """Process everything waiting, without blocking; returns the frames read."""
        frames = 0
        while True:
            got = 0
            for ln in self.lines:
                if not ln.exhausted:
                    got += ln.pump(self.seq, self.deliver)
            if self.recovery is not None:
                self.recovery.poll()
            if self.snapshots is not None:
                self._snapshot_step()
            for sink in self._polled:
                sink.poll()
            frames += got
            if not got or frames >= 64 * FRAMES_PER_BATCH or self.consumers.failed:
                return frames

    # -- snapshots ------------------------------------------------------------------------------
    def _snapshot_step(self) -> None:
        loader = self.snapshots
        if not loader.active and self.seq.awaiting_snapshot and self.seq.session:
            loader.start(self.seq.session, resync=False)  # the lines told the session: hold them, log in
        loader.poll()
        snap = loader.take()
        if snap is not None:
            self._apply_snapshot(snap)
        elif loader.active and loader.failing_since is not None and self._state == SNAPSHOT \
                and self.clock() - loader.failing_since > loader.policy.deadline:
            self.seq.give_up(loader.last_error)  # a late join that cannot get its snapshot is STALE

    def _apply_snapshot(self, snap: Snapshot) -> None:
        """Deliver the snapshot into a cleared book, then go on from its sequence + 1; or refuse it."""
        nxt = snap.itch_seq + 1
        expected = self.seq.expected
        if not self.seq.awaiting_snapshot:
            if self.seq.view().state != STALE:
                return  # recovered meanwhile: not needed
            if nxt < expected:
                self.snapshots.refuse(snap, f"snapshot at ITCH sequence {snap.itch_seq} is older than what was "
                                            f"delivered (up to {expected - 1})")
                return
        self.snapshots.applied(snap)
        now = self.clock()
        resync = not self.seq.awaiting_snapshot
        self._emit(SnapshotBegin(now, snap.server, snap.itch_seq, snap.messages, resync))
        if self.book is not None:
            self.book.clear()
            self.book.mark_stale()
        recs = snap.records
        ends = np.zeros(recs.size // (OUT_MESSAGES * 3) + 2 + recs.size // self.seq.out.size, dtype=np.int64)
        counts = np.zeros_like(ends)
        nb = int(batch_ends(recs, OUT_MESSAGES, self.seq.out.size, ends, counts))
        ts = np.zeros(OUT_MESSAGES, dtype=np.int64)
        start = first = 0
        for end, n in zip(ends[:nb].tolist(), counts[:nb].tolist(), strict=True):
            self.deliver(recs[start:end], first + 1, n, ts[:n], snapshot=True)
            start, first = end, first + n
        skipped = max(0, nxt - expected) if resync else 0
        self._emit(SnapshotEnd(self.clock(), snap.server, nxt, skipped, snap.seconds))
        if self.recovery is not None:
            self.recovery.restart()  # what it was fetching is in the snapshot
        self.seq.resume_at(nxt, self.deliver)

    def run(self, until_eos: bool = False, stop=None, idle_timeout: float | None = None, on_tick=None,
            tick: float = 0.5, beside=None) -> str:
        """Loop until `stop` (anything with is_set()) is set, or (until_eos) the session is complete, or
        after End of Session the feed is STALE and recovery made no progress for a gap deadline plus a
        server timeout, or every file source is exhausted and nothing is left to recover, or a consumer
        failed (on_consumer_error="stop"), or nothing arrived for `idle_timeout` seconds. `on_tick(feed)`
        is called every `tick` seconds. `beside`: something else this loop serves, with `wait_set(timeout)`
        and `pump()` as a Feed has them (the shadow path of a parallel run, multicast.compare.shadow).
        Returns why, one of WHY."""
        last_tick = last_input = self.clock()
        while True:
            got = self._step(0.05, beside)
            now = self.clock()
            if got:
                last_input = now
            if on_tick is not None and now - last_tick >= tick:
                last_tick = now
                on_tick(self)
            if stop is not None and stop.is_set() and not self.consumers.failed:
                return "stopped"
            why = self.verdict(until_eos, now)
            if why is not None:
                return why
            if idle_timeout is not None and now - last_input > idle_timeout:
                return "idle"

    def verdict(self, until_eos: bool, now: float) -> str | None:
        """Why the run is over now (one of WHY but "stopped" and "idle"), or None while it goes on."""
        if self.consumers.failed:
            return "consumer failed"
        st = self.seq.view()
        if until_eos and st.finished:
            return "complete"
        if until_eos and st.end_of_session and self.recovery_gave_up:
            # recovery keeps trying: the session is given up once it made no progress for a gap deadline plus a
            # server timeout (a replay server that went silent was detected and replaced)
            if self._stale_at_end is None or st.next_seq != self._stale_at_end[1]:
                self._stale_at_end = (now, st.next_seq)
            p = self.recovery.policy if self.recovery is not None else None
            if p is None or now - self._stale_at_end[0] >= p.deadline + p.server_timeout:
                return "stale"
        else:
            self._stale_at_end = None
        if self.lines and all(ln.exhausted for ln in self.lines):
            if not self.seq.missing():
                return "sources exhausted"
            if self.recovery is None or self.recovery_gave_up:
                return "stale"
        return None

    @property
    def recovery_gave_up(self) -> bool:
        st = self.seq.view()
        return st.state == STALE and bool(st.reason)

    # -- state and results ----------------------------------------------------------------------
    @property
    def state(self) -> FeedState:
        """The feed's state now (the sequencer's typed view)."""
        return self.seq.view()

    @property
    def lost(self) -> int:
        return self.seq.view().lost

    def line_summaries(self) -> dict:
        """Per line: the sequencer's counts, the source's own (packets, bytes, drops by reason), and what
        its frames were skipped for."""
        out = {}
        for ln in self.lines:
            d = self.seq.line_stats(ln.number)
            d["source"] = ln.source.stats()
            skipped = {k: v for k, v in C.as_dict(ln.counters).items() if v and k in SKIPPED}
            if skipped:
                d["skipped"] = skipped
            out[LINE_NAMES[ln.number]] = d
        return out

    def summary(self) -> dict:
        """What the feed did, as one JSON-ready dict."""
        st = self.seq.view()
        filled = self.recovery.filled() if self.recovery is not None else {"rerequest": 0, "replay": 0}
        out = {
            "delivered": st.delivered, "duplicates": st.duplicates, "gaps": st.gaps,
            "filled_rerequest": filled["rerequest"], "filled_replay": filled["replay"], "lost": st.lost,
            "stale": st.stale, "state": st.state, "reason": st.reason, "session": st.session,
            "next_seq": st.next_seq, "end_of_session": st.end_of_session, "hold_overflow": st.hold_overflow,
            "stale_episodes": st.stale_episodes, "stale_seconds_total": st.stale_seconds_total,
            "stale_seconds_longest": st.stale_seconds_longest, "lines": self.line_summaries(),
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
        if self.latency is not None:
            out["latency"] = self.latency.summary()
        if self.snapshots is not None:
            out["snapshots"] = {**self.snapshots.stats.as_dict(), "covered": st.snapshot_covered,
                                "skipped": st.snapshot_skipped}
        if self.book is not None:
            out["book_checksum"] = self.book.checksum()
            out["live_orders"] = self.book.live_orders
        if self.consumers.slots:
            out["consumers"] = self.consumers.stats()
        if self.sinks:
            out["outputs"] = {s.name: s.stats() for s in self.sinks}
            out["outputs_failed"] = dict(self.sink_failures)
        return out

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close recovery, the sources, the record file and the metrics server (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.recovery is not None:
            self.recovery.close()
        if self.snapshots is not None:
            self.snapshots.close()
        for ln in self.lines:
            ln.source.close()
        close_sinks(self.sinks, self.sink_failures)
        if self.metrics_server is not None:
            from xdpfeed.multicast.feed import metrics

            metrics.shutdown(self.metrics_server)

    def __enter__(self) -> "Feed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Feed {self.name} {self.seq.state if hasattr(self, 'seq') else 'opening'} lines={len(self.lines)}>"
