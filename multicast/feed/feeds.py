"""`Feeds`: several feeds in one handler (Nasdaq, BX and PSX: each its own lines, recovery servers, session
and stock locates), one loop, and the consolidated book across their books.

    with Feeds(config.load_any("venues.toml"), consumers=[MyStrategy()]) as feeds:
        why = feeds.run(until_eos=True)
        print(feeds.consolidated.bbo("AAPL"))

Each feed is a whole `Feed` (multicast.feed.feed) with its own sequencer, recovery, book, state, outputs
and consumers; this loop waits on every feed's sources and recovery sockets at once (`select`) and pumps
each. The feeds' books feed the consolidated book (multicast.book.consolidated) with their top-of-book
events; a feed that goes STALE has its quotes left out until it is SYNCHRONIZED again, a feed that starts a
new session has its quotes dropped. Consumers given here receive `on_consolidated(events)` (CEVENT: each
with the feed and sequence number of the message that caused it) and the feeds' `on_status(event)` with
the feed's name (`on_feed_status(name, event)`); `[consolidated] outputs` are sinks that receive the
consolidated events. One metrics server serves every feed (labelled `feed=`) and the consolidated book.

One process with one loop, or one process per feed (`xdpfeed run -c venues.toml --feed NAME`, pinned to a
core of its own): `bench/bench_feeds.py` measures both; docs/architecture.md says how to choose.
"""

import logging
import select
import time

from xdpfeed.multicast.book.consolidated import ConsolidatedBook
from xdpfeed.multicast.feed import config as cfgmod
from xdpfeed.multicast.feed.consumers import ConsumerSet
from xdpfeed.multicast.feed.feed import Feed
from xdpfeed.multicast.feed.state import STALE, SYNCHRONIZED
from xdpfeed.multicast.feed.status import FeedStatus, SessionChanged, StateChanged
from xdpfeed.multicast.sinks.base import close_sinks

log = logging.getLogger("xdpfeed.feeds")

# how a run of several feeds ended, worst first: the first that applies to any feed
PRECEDENCE = ("consumer failed", "stale", "stopped", "idle", "sources exhausted", "complete")


class _Tap:
    """What one feed tells the consolidated book: its top-of-book events and its state."""

    name = "consolidated book"

    def __init__(self, owner: "Feeds", index: int):
        self.owner, self.index = owner, index

    def on_top_of_book(self, events) -> None:
        if self.owner.consolidated is not None:
            self.owner.consolidated.apply(self.index, events)

    def on_status(self, event) -> None:
        self.owner._feed_status(self.index, event)


class Feeds:
    """Several feeds, one loop, the consolidated book (`consolidated`, None when off)."""

    def __init__(self, config: cfgmod.FeedsConfig, consumers=(), on_consumer_error: str = "stop",
                 metrics: str | None = "auto", warm: bool = True, clock=time.monotonic, feed_consumers=None):
        """consumers: of the whole (on_consolidated, on_status with FeedStatus); feed_consumers: {feed name:
        [consumers]} given to that feed's Feed (on_messages, on_top_of_book, on_status of its own)."""
        if not isinstance(config, cfgmod.FeedsConfig):
            raise TypeError("Feeds takes a FeedsConfig (config.load_any or config.feeds_from_dict)")
        self.config = config
        self.clock = clock
        self.feeds: list[Feed] = []
        self.consolidated: ConsolidatedBook | None = None
        self.sinks: list = []
        self.sink_failures: list[tuple[str, str]] = []
        self.metrics_server = None
        self.whys: dict[str, str] = {}
        self._closed = False
        try:
            own = dict(feed_consumers or {})
            unknown = set(own) - {fc.name for fc in config.feeds}
            if unknown:
                raise cfgmod.ConfigError(f"feed_consumers: no feed named {', '.join(sorted(unknown))}")
            for i, fc in enumerate(config.feeds):
                taps = [*own.get(fc.name, ()), _Tap(self, i)]
                self.feeds.append(Feed(fc, consumers=taps, metrics=None, warm=warm and i == 0, clock=clock,
                                       on_consumer_error=on_consumer_error))
            if config.consolidated:
                self.consolidated = ConsolidatedBook([f.name for f in self.feeds], [f.book for f in self.feeds],
                                                     on_events=self._consolidated_events)
            from xdpfeed.multicast.sinks.uri import open_sink

            for uri in config.consolidated_outputs:
                sink = open_sink(uri, feed="consolidated")
                getattr(sink, "sink", sink).consolidated = self.consolidated  # names of symbols, venues
                self.sinks.append(sink)
            self.consumers = ConsumerSet([*consumers, *self.sinks], on_consumer_error, self._consumer_failed)
            self._start_metrics(metrics if metrics != "auto" or config.metrics_addr is None else config.metrics_addr)
        except BaseException:
            self.close()
            raise

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.feeds]

    def feed(self, name: str) -> Feed:
        for f in self.feeds:
            if f.name == name:
                return f
        raise KeyError(name)

    # -- what the feeds tell ------------------------------------------------------------------------
    def _consolidated_events(self, events) -> None:
        if self.consumers.wants("on_consolidated"):
            self.consumers.call("on_consolidated", events)

    def _feed_status(self, index: int, event) -> None:
        cb = self.consolidated
        if cb is not None:
            if isinstance(event, StateChanged) and event.state in (STALE, SYNCHRONIZED):
                included = event.state == SYNCHRONIZED
                if included != bool(cb.ok[index]):
                    log.info("consolidated book: %s %s", self.config.feeds[index].name,
                             "taken in again" if included else f"left out ({event.reason or 'STALE'})")
                cb.set_included(index, included)
            elif isinstance(event, SessionChanged) and event.abandoned >= 0:
                cb.clear_venue(index)  # its book was cleared: a new session is a new day
        if hasattr(self, "consumers") and self.consumers.wants("on_status"):
            name = self.feeds[index].name if index < len(self.feeds) else self.config.feeds[index].name
            self.consumers.call("on_status", FeedStatus(event.time, name, event))

    def _consumer_failed(self, name: str, error: str, detached: bool) -> None:
        if any(s.name == name for s in self.sinks):
            self.sink_failures.append((name, error))

    def _start_metrics(self, addr: str | None) -> None:
        if addr in (None, "off"):
            return
        from xdpfeed.multicast.feed import metrics

        auto = addr == "auto"
        host_port = metrics.DEFAULT_ADDR if auto else metrics.parse_addr(addr)
        for f in self.feeds:
            f.count_types = True
        first, *rest = self.feeds
        try:
            self.metrics_server, _ = metrics.serve(first, host_port, first.name, more=[(f, f.name) for f in rest],
                                                   extra=[metrics.ConsolidatedCollector(self)])
        except OSError as e:
            if not auto:
                raise cfgmod.ConfigError(f"metrics {addr}: {e.strerror}") from None
            log.warning("metrics not served: %s:%d: %s", *host_port, e.strerror)
            return
        log.info("metrics on http://%s:%d/metrics", *self.metrics_server.server_address[:2])

    # -- the loop -------------------------------------------------------------------------------------
    def step(self, timeout: float = 0.05) -> int:
        """Wait up to `timeout` seconds for input on any feed, then process everything waiting; returns the
        frames read."""
        files, writers, polled = [], [], False
        for f in self.feeds:
            fr, fw, fp, timeout = f.wait_set(timeout)
            files += fr
            writers += fw
            polled = polled or fp
        if (files or writers) and not polled:
            select.select(files, writers, [], timeout)
        return sum(f.pump() for f in self.feeds)

    def run(self, until_eos: bool = False, stop=None, idle_timeout: float | None = None, on_tick=None,
            tick: float = 0.5) -> str:
        """Loop until every feed has ended (each as `Feed.run` would end it: `whys` holds why), `stop` is set,
        a consumer of the consolidated events failed, or nothing arrived for `idle_timeout` seconds. Returns
        the worst of the feeds' reasons (PRECEDENCE)."""
        last_tick = last_input = self.clock()
        self.whys = {}
        while True:
            got = self.step(0.05)
            now = self.clock()
            if got:
                last_input = now
            if on_tick is not None and now - last_tick >= tick:
                last_tick = now
                on_tick(self)
            if self.consumers.failed:
                return self._end("consumer failed")
            if stop is not None and stop.is_set():
                return self._end("stopped")
            for f in self.feeds:
                if f.name not in self.whys:
                    why = f.verdict(until_eos, now)
                    if why is not None:
                        self.whys[f.name] = why
                        log.info("feed %s: %s", f.name, why)
            if len(self.whys) == len(self.feeds):
                return min(self.whys.values(), key=PRECEDENCE.index)
            if idle_timeout is not None and now - last_input > idle_timeout:
                return self._end("idle")

    def _end(self, why: str) -> str:
        for f in self.feeds:
            self.whys.setdefault(f.name, why)
        return min(self.whys.values(), key=PRECEDENCE.index)

    # -- what it did -----------------------------------------------------------------------------------
    def summary(self) -> dict:
        out = {"feeds": {f.name: {**f.summary(), "venue": f.config.venue or f.name} for f in self.feeds}}
        if self.whys:
            out["why"] = dict(self.whys)
        if self.consolidated is not None:
            out["consolidated"] = self.consolidated.summary()
        if self.sinks:
            out["outputs"] = {s.name: s.stats() for s in self.sinks}
            out["outputs_failed"] = dict(self.sink_failures)
        return out

    # -- lifetime ---------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for f in self.feeds:
            f.close()
        close_sinks(self.sinks, self.sink_failures)
        if self.metrics_server is not None:
            from xdpfeed.multicast.feed import metrics

            metrics.shutdown(self.metrics_server)

    def __enter__(self) -> "Feeds":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Feeds {', '.join(self.names)}>"
