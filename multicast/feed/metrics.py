"""Prometheus metrics for a running feed handler: a prometheus_client custom Collector that reads the
numbers the hot path already keeps in numpy arrays (sequencer state and per-line statistics, frame
counters, source statistics, book statistics, the delivery latency histogram) at scrape time. Nothing
is incremented per packet for metrics' sake; the only extra hot-path work is counting delivered
messages by type (multicast.feed.stream_stats.count_types, one compiled pass over the delivered stream).

Names follow Prometheus conventions: `xdpfeed_` prefix, base units, `_total` on counters; labels
`feed`, `line`, `source`, `reason`, `method`, `type`, `state`. `serve()` starts prometheus_client's
HTTP server, on 127.0.0.1 unless told otherwise.
"""

import time

import numpy as np
from prometheus_client import start_http_server
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from xdpfeed.multicast.book import apply as A
from xdpfeed.multicast.feed import sequencer_core as K
from xdpfeed.multicast.feed.recovery import RECOVERY_BUCKETS
from xdpfeed.multicast.feed.sequencer import LINE_NAMES, LINE_REPLAY, LINE_REREQUEST, STATES
from xdpfeed.multicast.itch.schema import TYPES
from xdpfeed.multicast.wire import counters as C

DEFAULT_ADDR = ("127.0.0.1", 9464)
SKIP_REASONS = ("non_ipv4", "non_udp", "ip_fragments", "truncated_frames", "bad_headers", "unsupported_linktype",
                "filtered", "sessions_overflow")
LATENCY_FIRST_BUCKET = 10  # 2^10 ns ≈ 1 µs: the smallest bucket bound exported
METRIC_NAMES = (
    "xdpfeed_receive_packets_total", "xdpfeed_receive_bytes_total", "xdpfeed_receive_drop_total",
    "xdpfeed_source_info", "xdpfeed_frames_skipped_total", "xdpfeed_malformed_packets_total",
    "xdpfeed_messages_total", "xdpfeed_unknown_message_types_total", "xdpfeed_delivered_messages_total",
    "xdpfeed_sequence_gaps_total", "xdpfeed_gap_messages_total", "xdpfeed_duplicate_messages_total",
    "xdpfeed_hold_queue_messages", "xdpfeed_hold_overflow_messages_total", "xdpfeed_next_sequence",
    "xdpfeed_feed_state", "xdpfeed_end_of_session", "xdpfeed_lost_messages", "xdpfeed_recovery_requests_total",
    "xdpfeed_recovered_messages_total", "xdpfeed_recovery_failures_total", "xdpfeed_recovery_seconds",
    "xdpfeed_line_packets_total", "xdpfeed_line_first_messages_total", "xdpfeed_line_duplicate_messages_total",
    "xdpfeed_line_gaps_total", "xdpfeed_line_last_packet_age_seconds", "xdpfeed_book_live_orders",
    "xdpfeed_book_stale_stocks", "xdpfeed_book_top_of_book_events_total", "xdpfeed_delivery_latency_seconds",
    "xdpfeed_stale_episodes_total", "xdpfeed_stale_seconds_total", "xdpfeed_stale_longest_seconds",
    "xdpfeed_consumer_batches_total", "xdpfeed_consumer_errors_total", "xdpfeed_consumer_detached",
    "xdpfeed_output_messages_total", "xdpfeed_output_bytes_total", "xdpfeed_output_failed",
    "xdpfeed_output_subscribers", "xdpfeed_output_dropped_messages_total", "xdpfeed_output_pending_messages",
    "xdpfeed_output_twin_messages_total", "xdpfeed_output_conflicts_total", "xdpfeed_output_retries_total",
    "xdpfeed_output_reconnects_total", "xdpfeed_output_connected", "xdpfeed_output_gap_messages_total",
    "xdpfeed_snapshots_total", "xdpfeed_snapshot_messages_total", "xdpfeed_snapshot_skipped_messages_total",
    "xdpfeed_stage_latency_seconds",
)
# served by a handler with a live parallel run (`run --shadow`, multicast.compare.live)
SHADOW_METRIC_NAMES = (
    "xdpfeed_shadow_compared_messages_total", "xdpfeed_shadow_divergent_messages_total",
    "xdpfeed_shadow_uncompared_messages_total", "xdpfeed_shadow_first_total", "xdpfeed_shadow_lag_messages",
    "xdpfeed_shadow_receive_difference_seconds",
)
# the buckets of the per-stage histograms (seconds): 1 µs to 10 s, 1-2-5 steps
STAGE_BOUNDS_S = tuple(m * 10.0 ** e for e in range(-6, 1) for m in (1, 2, 5)) + (10.0,)
# served by a handler of several feeds (multicast.feed.feeds), with its consolidated book
CONSOLIDATED_METRIC_NAMES = (
    "xdpfeed_consolidated_events_total", "xdpfeed_consolidated_crossings_total",
    "xdpfeed_consolidated_crossed_symbols", "xdpfeed_consolidated_venue_included", "xdpfeed_consolidated_symbols",
)

# what a nats: output adds (its stats key, family, help, counter or gauge)
_DISTRIBUTION = (
    ("dropped_messages", "xdpfeed_output_dropped_messages_total",
     "Messages an output could not take (past its buffer's bound) and never published.", True),
    ("pending_messages", "xdpfeed_output_pending_messages", "Messages an output holds, not yet confirmed published.",
     False),
    ("twin", "xdpfeed_output_twin_messages_total",
     "Messages the stream already held, stored by the other handler publishing the same feed.", True),
    ("conflicts", "xdpfeed_output_conflicts_total",
     "Chunks the stream refused because the other handler stored first (then trimmed and retried).", True),
    ("retries", "xdpfeed_output_retries_total", "Publishes unanswered or refused for a while (node down, election).",
     True),
    ("reconnects", "xdpfeed_output_reconnects_total", "Reconnections of an output to another server.", True),
    ("connected", "xdpfeed_output_connected", "1 while an output is connected to its servers.", False),
    ("gap_messages", "xdpfeed_output_gap_messages_total",
     "Messages no handler published that an output published over (a gap in the stream).", True),
)


def _counter(name, doc, labels):
    return CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)


class FeedCollector:
    """Everything one Feed knows, as metric families, read when Prometheus scrapes; with `more` (a list of
    (Feed, name)), several feeds of one handler, each family once with every feed's samples."""

    def __init__(self, handler, feed: str = "feed", more=()):
        self.h = handler
        self.feed = feed
        self.handlers = [(handler, feed), *more]

    def describe(self):
        return []  # collected on demand only: names and labels depend on the handler's lines

    def collect(self):
        merged: dict = {}
        for h, f in self.handlers:
            for fam in self._collect_one(h, f):
                if fam.name in merged:
                    merged[fam.name].samples.extend(fam.samples)
                else:
                    merged[fam.name] = fam
        yield from merged.values()

    def _collect_one(self, h, f):
        yield from self._capture(h, f)
        yield from self._sequencing(h, f)
        yield from self._recovery(h, f)
        yield from self._lines(h, f)
        yield from self._book(h, f)
        yield from self._consumers(h, f)
        yield from self._outputs(h, f)

    def _capture(self, h, f):
        pk = _counter("xdpfeed_receive_packets_total", "Packets received by the line's source.",
                      ["feed", "line", "source"])
        by = _counter("xdpfeed_receive_bytes_total", "Bytes received by the line's source.", ["feed", "line", "source"])
        dr = _counter("xdpfeed_receive_drop_total", "Packets the source or the kernel dropped, by reason.",
                      ["feed", "line", "source", "reason"])
        info = GaugeMetricFamily("xdpfeed_source_info", "The line's source and the mode in use.",
                                 labels=["feed", "line", "source", "mode"])
        sk = _counter("xdpfeed_frames_skipped_total", "Frames that carried no MoldUDP64 packet, by reason.",
                      ["feed", "line", "reason"])
        mal = _counter("xdpfeed_malformed_packets_total", "MoldUDP64 packets malformed (counted, skipped).",
                       ["feed", "line"])
        for ln in h.lines:
            name = LINE_NAMES[ln.number]
            kind = type(ln.source).__name__.removesuffix("Source").lower() or "source"
            stats = ln.source.stats() if hasattr(ln.source, "stats") else None
            if stats is not None:
                pk.add_metric([f, name, kind], stats["packets"])
                by.add_metric([f, name, kind], stats["bytes"])
                for reason, v in stats["drops"].items():
                    dr.add_metric([f, name, kind, reason], v)
                info.add_metric([f, name, kind, stats["mode"]], 1)
            cnt = C.as_dict(ln.counters)
            for reason in SKIP_REASONS:
                sk.add_metric([f, name, reason], cnt[reason])
            mal.add_metric([f, name], cnt["malformed_packets"])
        yield from (pk, by, dr, info, sk, mal)

    def _sequencing(self, h, f):
        st = h.seq.view()
        msgs = _counter("xdpfeed_messages_total", "Messages delivered, by ITCH message type.", ["feed", "type"])
        known = 0
        for t in TYPES:
            v = int(h.type_counts[ord(t)])
            known += v
            msgs.add_metric([f, t], v)
        unknown = _counter("xdpfeed_unknown_message_types_total", "Delivered messages of a type ITCH 5.0 lacks.",
                           ["feed"])
        unknown.add_metric([f], int(h.type_counts.sum()) - known)
        yield msgs
        yield unknown
        for name, doc, value in (
            ("xdpfeed_delivered_messages_total", "Messages delivered in sequence order, once.", st.delivered),
            ("xdpfeed_sequence_gaps_total", "Gaps detected (a new missing range).", st.gaps),
            ("xdpfeed_gap_messages_total", "Messages in the gaps when detected.", st.gap_messages),
            ("xdpfeed_duplicate_messages_total", "Messages dropped as already delivered or held.", st.duplicates),
            ("xdpfeed_hold_overflow_messages_total", "Messages dropped because the hold queue was full.",
             st.hold_overflow),
            ("xdpfeed_stale_episodes_total", "Times the feed went STALE (a recovered one included).",
             st.stale_episodes),
            ("xdpfeed_stale_seconds_total", "Seconds the feed spent STALE, the current episode included.",
             st.stale_seconds_total),
        ):
            c = _counter(name, doc, ["feed"])
            c.add_metric([f], value)
            yield c
        for name, doc, value in (
            ("xdpfeed_hold_queue_messages", "Messages waiting in the hold queue.", st.held),
            ("xdpfeed_next_sequence", "The next sequence number to deliver.", st.next_seq),
            ("xdpfeed_end_of_session", "1 once End of Session was seen.", int(st.end_of_session)),
            ("xdpfeed_lost_messages", "Messages known to exist and not delivered (missing or abandoned).", st.lost),
            ("xdpfeed_stale_longest_seconds", "The longest STALE episode so far, in seconds.",
             st.stale_seconds_longest),
        ):
            g = GaugeMetricFamily(name, doc, labels=["feed"])
            g.add_metric([f], value)
            yield g
        state = GaugeMetricFamily("xdpfeed_feed_state", "1 for the feed's current state.", labels=["feed", "state"])
        for s in STATES:
            state.add_metric([f, s], int(s == st.state))
        yield state
        yield self._latency(h, f)
        yield self._stages(h, f)

    def _stages(self, h, f):
        """Each stage's latency from the packet's receive time (multicast.latency), from its HdrHistogram."""
        from xdpfeed.multicast.latency.hdr import cumulative_at

        hist = HistogramMetricFamily("xdpfeed_stage_latency_seconds",
                                     "Packet receive timestamp to the end of each stage (read, delivered, book, each "
                                     "consumer and output; venue: the venue's timestamp to received).",
                                     labels=["feed", "stage"])
        lat = h.latency
        if lat is None:
            return hist
        bounds_ns = np.array([b * 1e9 for b in STAGE_BOUNDS_S], dtype=np.int64)
        for i, stage in enumerate(lat.stages):
            below, total, sum_ns = cumulative_at(lat.counts[i], bounds_ns)
            buckets = [(f"{b:g}", int(c)) for b, c in zip(STAGE_BOUNDS_S, below.tolist(), strict=True)]
            buckets.append(("+Inf", total))
            hist.add_metric([f, stage], buckets, sum_ns * 1e-9)
        return hist

    def _latency(self, h, f):
        lat = h.seq.latency
        buckets, acc, total_s = [], 0, 0.0
        acc = int(lat[:LATENCY_FIRST_BUCKET].sum())
        for k in range(K.LATENCY_BUCKETS):
            total_s += int(lat[k]) * (1.5 * 2.0**k) * 1e-9  # bucket midpoint: the sum is an estimate
            if k >= LATENCY_FIRST_BUCKET:
                acc += int(lat[k])
                buckets.append((f"{2.0 ** (k + 1) * 1e-9:.9g}", acc))
        buckets.append(("+Inf", acc))
        hist = HistogramMetricFamily("xdpfeed_delivery_latency_seconds",
                                     "Packet receive timestamp to delivery (log2 buckets; sum estimated).",
                                     labels=["feed"])
        hist.add_metric([f], buckets, total_s)
        return hist

    def _recovery(self, h, f):
        req = _counter("xdpfeed_recovery_requests_total", "Recovery requests: re-request packets, replay sessions, "
                       "GLIMPSE snapshot logins.", ["feed", "method"])
        got = _counter("xdpfeed_recovered_messages_total", "Messages first delivered by recovery, by method.",
                       ["feed", "method"])
        fail = _counter("xdpfeed_recovery_failures_total", "Failed recovery attempts, by method and reason.",
                        ["feed", "method", "reason"])
        hist = HistogramMetricFamily("xdpfeed_recovery_seconds", "Gap detected to gap filled.", labels=["feed"])
        got.add_metric([f, "rerequest"], h.seq.line(LINE_REREQUEST).first)
        got.add_metric([f, "replay"], h.seq.line(LINE_REPLAY).first)
        r = h.recovery
        if r is not None:
            s = r.stats
            req.add_metric([f, "rerequest"], s.rerequests)
            req.add_metric([f, "replay"], s.replay_sessions)
            fail.add_metric([f, "rerequest", "timeout"], s.rerequest_timeouts)
            if r.rerequest is not None:
                fail.add_metric([f, "rerequest", "send_failed"], r.rerequest.stats["send_failures"])
            for reason, v in s.replay_failures.items():
                fail.add_metric([f, "replay", reason], v)
            acc, buckets = 0, []
            for bound, v in zip(RECOVERY_BUCKETS, s.recovery_buckets, strict=False):
                acc += v
                buckets.append((f"{bound:g}", acc))
            buckets.append(("+Inf", acc + s.recovery_buckets[-1]))
            hist.add_metric([f], buckets, s.recovery_sum)
        yield from self._snapshots(h, f, req, fail)
        yield from (req, got, fail, hist)

    def _snapshots(self, h, f, req, fail):
        """Late joins and resyncs from GLIMPSE (multicast.feed.snapshot): attempts and failures go with the
        recovery families (method "snapshot")."""
        used = _counter("xdpfeed_snapshots_total", "GLIMPSE snapshots the feed went on from.", ["feed"])
        msgs = _counter("xdpfeed_snapshot_messages_total", "Messages of the snapshots delivered.", ["feed"])
        skipped = _counter("xdpfeed_snapshot_skipped_messages_total",
                           "Messages a resync snapshot stood in for (never delivered).", ["feed"])
        st, loader = h.seq.view(), h.snapshots
        used.add_metric([f], st.snapshots)
        msgs.add_metric([f], loader.stats.messages if loader is not None else 0)
        skipped.add_metric([f], st.snapshot_skipped)
        if loader is not None:
            req.add_metric([f, "snapshot"], loader.stats.attempts)
            for reason, v in loader.stats.failures.items():
                fail.add_metric([f, "snapshot", reason], v)
        yield from (used, msgs, skipped)

    def _lines(self, h, f):
        now_ns = time.time_ns()
        fams = {
            "packets": _counter("xdpfeed_line_packets_total", "MoldUDP64 packets the line brought.", ["feed", "line"]),
            "first": _counter("xdpfeed_line_first_messages_total", "Messages this line delivered first.",
                              ["feed", "line"]),
            "duplicates": _counter("xdpfeed_line_duplicate_messages_total", "Messages another line had brought.",
                                   ["feed", "line"]),
            "gaps": _counter("xdpfeed_line_gaps_total", "Gaps this line shows on its own.", ["feed", "line"]),
        }
        age = GaugeMetricFamily("xdpfeed_line_last_packet_age_seconds", "Seconds since the line's last packet.",
                                labels=["feed", "line"])
        for ln in h.lines:
            name = LINE_NAMES[ln.number]
            ls = h.seq.line(ln.number)
            fams["packets"].add_metric([f, name], ls.packets)
            fams["first"].add_metric([f, name], ls.first)
            fams["duplicates"].add_metric([f, name], ls.duplicates)
            fams["gaps"].add_metric([f, name], ls.gaps)
            last = ls.last_packet_ns
            age.add_metric([f, name], (now_ns - last) / 1e9 if 0 < last <= now_ns else float("inf"))
        yield from fams.values()
        yield age

    def _book(self, h, f):
        b = h.book
        if b is None:
            return
        live = GaugeMetricFamily("xdpfeed_book_live_orders", "Orders live in the book.", labels=["feed"])
        live.add_metric([f], b.live_orders)
        stale = GaugeMetricFamily("xdpfeed_book_stale_stocks", "Stocks whose book is flagged stale.", labels=["feed"])
        stale.add_metric([f], int(np.count_nonzero(b.stocks["stale"][1:])))
        ev = _counter("xdpfeed_book_top_of_book_events_total", "Best bid/offer changes.", ["feed"])
        ev.add_metric([f], int(b.stats[A.BBO_EVENTS]))
        yield from (live, stale, ev)


    def _consumers(self, h, f):
        batches = _counter("xdpfeed_consumer_batches_total", "Batches a consumer took without raising.",
                           ["feed", "consumer"])
        errors = _counter("xdpfeed_consumer_errors_total", "Exceptions a consumer raised (it is then detached, or "
                          "the feed stops).", ["feed", "consumer"])
        detached = GaugeMetricFamily("xdpfeed_consumer_detached", "1 once a consumer was detached after an error.",
                                     labels=["feed", "consumer"])
        for name, s in h.consumers.stats().items():
            batches.add_metric([f, name], s["batches"])
            errors.add_metric([f, name], s["errors"])
            detached.add_metric([f, name], int(s["detached"]))
        yield from (batches, errors, detached)


    def _outputs(self, h, f):
        msgs = _counter("xdpfeed_output_messages_total", "Messages an output (sink) wrote.", ["feed", "output"])
        nbytes = _counter("xdpfeed_output_bytes_total", "Bytes of delivered stream an output (sink) wrote.",
                          ["feed", "output"])
        failed = GaugeMetricFamily("xdpfeed_output_failed", "1 once an output failed and was detached.",
                                   labels=["feed", "output"])
        subs = GaugeMetricFamily("xdpfeed_output_subscribers", "Processes subscribed to an ipc: output.",
                                 labels=["feed", "output"])
        bad = dict(h.sink_failures)
        labels = ["feed", "output"]
        extra = {key: _counter(name, doc, labels) if counter else GaugeMetricFamily(name, doc, labels=labels)
                 for key, name, doc, counter in _DISTRIBUTION}
        for sink in h.sinks:
            st = sink.stats()
            msgs.add_metric([f, sink.name], st["messages"])
            nbytes.add_metric([f, sink.name], st["bytes"])
            failed.add_metric([f, sink.name], int(sink.name in bad))
            if "subscribers" in st:
                subs.add_metric([f, sink.name], st["subscribers"])
            for key, family in extra.items():
                if key in st:
                    family.add_metric([f, sink.name], int(st[key]))
        yield from (msgs, nbytes, failed, subs, *extra.values())


def registry_for(handler, feed: str = "feed", more=(), extra=()) -> CollectorRegistry:
    """The registry of a handler's feed (and `more` (Feed, name) pairs, and `extra` collectors)."""
    reg = CollectorRegistry()
    reg.register(FeedCollector(handler, feed, more))
    for collector in extra:
        reg.register(collector)
    return reg


def parse_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--metrics-addr: expected HOST:PORT, not {text!r}")
    return host or "127.0.0.1", int(port)


def serve(handler, addr: tuple[str, int] = DEFAULT_ADDR, feed: str = "feed", more=(), extra=()):
    """Serve /metrics for `handler` (and `more` feeds, `extra` collectors); returns (server, thread). Binds
    127.0.0.1 unless told otherwise."""
    return start_http_server(addr[1], addr=addr[0], registry=registry_for(handler, feed, more, extra))


def shutdown(server) -> None:
    """Stop serving /metrics and close the socket."""
    server.shutdown()
    server.server_close()


class ConsolidatedCollector:
    """The consolidated book of several feeds (multicast.book.consolidated)."""

    def __init__(self, feeds):
        self.feeds = feeds

    def describe(self):
        return []

    def collect(self):
        cb = self.feeds.consolidated
        if cb is None:
            return
        st = cb.summary()
        ev = _counter("xdpfeed_consolidated_events_total", "Consolidated best bid/offer changes.", [])
        ev.add_metric([], st["events"])
        entered = _counter("xdpfeed_consolidated_crossings_total",
                           "Times a symbol's consolidated market became locked (bid = offer) or crossed (bid > "
                           "offer) across venues.", ["kind"])
        entered.add_metric(["locked"], st["locked_entered"])
        entered.add_metric(["crossed"], st["crossed_entered"])
        now = GaugeMetricFamily("xdpfeed_consolidated_crossed_symbols",
                                "Symbols whose consolidated market is locked or crossed now.", labels=["kind"])
        now.add_metric(["locked"], st["locked_now"])
        now.add_metric(["crossed"], st["crossed_now"])
        inc = GaugeMetricFamily("xdpfeed_consolidated_venue_included",
                                "1 while a venue's quotes are in the consolidated book (0: left out, STALE).",
                                labels=["feed"])
        for v, name in enumerate(cb.names):
            inc.add_metric([name], int(cb.ok[v]))
        syms = GaugeMetricFamily("xdpfeed_consolidated_symbols", "Symbols the consolidated book knows.")
        syms.add_metric([], st["symbols"])
        yield from (ev, entered, now, inc, syms)
