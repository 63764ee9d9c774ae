"""A live parallel run (`xdpfeed run --shadow URI`): the same feed through a second path, compared message by
message while both run (docs/golive.md).

`LiveCompare` has two consumers, `primary` and `shadow`, given to the two paths when they are built. Each
keeps, for the latest WINDOW sequence numbers it delivered, a 64-bit hash (FNV-1a over 8-byte words) of
every message and its
receive time, in preallocated arrays indexed by sequence number (compiled, no Python per message). As both
sides advance, every sequence number both have delivered is compared once: the same bytes or a divergence
(the first one's sequence kept); for equal messages, which side received it first and the difference of the
two receive times (a histogram, multicast.latency.hdr). A side more than WINDOW messages ahead of the other
cannot be compared for what the other has not reached yet: those are counted as uncompared. A new session on
either side starts over. The counts become Prometheus metrics (`ShadowCollector`) and the summary.
"""

import numpy as np

from xdpfeed.capture.byteorder import be16
from xdpfeed.capture.jit import njit
from xdpfeed.multicast.latency import hdr

WINDOW = 1 << 20
FNV_OFFSET, FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
# counts[]
COMPARED, DIVERGENT, UNCOMPARED, PRIMARY_FIRST, SHADOW_FIRST, SAME_TIME, FIRST_DIVERGENCE = range(7)
N_COUNTS = 7


@njit(cache=True, inline="always")
def _hash(b, p, n):
    """FNV-1a over 8-byte words (then the last bytes one by one), seeded with the length."""
    h = (FNV_OFFSET ^ np.uint64(n)) * FNV_PRIME
    i = np.int64(0)
    while i + 8 <= n:
        q = p + i
        w = (np.uint64(b[q]) | np.uint64(b[q + 1]) << np.uint64(8) | np.uint64(b[q + 2]) << np.uint64(16)
             | np.uint64(b[q + 3]) << np.uint64(24) | np.uint64(b[q + 4]) << np.uint64(32)
             | np.uint64(b[q + 5]) << np.uint64(40) | np.uint64(b[q + 6]) << np.uint64(48)
             | np.uint64(b[q + 7]) << np.uint64(56))
        h = (h ^ w) * FNV_PRIME
        i += 8
    while i < n:
        h = (h ^ np.uint64(b[p + i])) * FNV_PRIME
        i += 1
    return h


@njit(cache=True)
def _keep(stream, first_seq, count, ts, hashes, times, seqs, mask):
    """Hash and receive time of each message, at slot seq & mask."""
    p = np.int64(0)
    for k in range(count):
        n = np.int64(be16(stream, p))
        h = _hash(stream, p + 2, n)
        s = first_seq + k
        slot = s & mask
        hashes[slot] = h
        times[slot] = ts[k]
        seqs[slot] = s
        p += 2 + n


@njit(cache=True)
def _compare(ha, ta, sa, hb, tb, sb, lo, hi, mask, counts, diff_counts, stats):
    """Compare sequence numbers [lo, hi) that both sides hold."""
    for s in range(lo, hi):
        slot = s & mask
        if sa[slot] != s or sb[slot] != s:
            counts[UNCOMPARED] += 1
            continue
        counts[COMPARED] += 1
        if ha[slot] != hb[slot]:
            counts[DIVERGENT] += 1
            if counts[FIRST_DIVERGENCE] == 0:
                counts[FIRST_DIVERGENCE] = s
            continue
        a, b = ta[slot], tb[slot]
        if a <= 0 or b <= 0:
            continue
        if a < b:
            counts[PRIMARY_FIRST] += 1
        elif b < a:
            counts[SHADOW_FIRST] += 1
        else:
            counts[SAME_TIME] += 1
        hdr.record(diff_counts, 0, abs(b - a), stats, 1)


class _Side:
    def __init__(self, window: int):
        self.hashes = np.zeros(window, dtype=np.uint64)
        self.times = np.zeros(window, dtype=np.int64)
        self.seqs = np.zeros(window, dtype=np.int64)
        self.next = 0  # next sequence number this side will deliver (0: nothing yet)
        self.first = 0  # the first sequence number it delivered in this session
        self.session = ""


class LiveCompare:
    def __init__(self, window: int = WINDOW):
        if window & (window - 1):
            raise ValueError("window must be a power of two")
        self.mask = window - 1
        self.window = window
        self.sides = (_Side(window), _Side(window))
        self.counts = np.zeros(N_COUNTS, dtype=np.int64)
        self.diff = np.zeros((1, hdr.COUNTS_LEN), dtype=np.int64)  # |shadow − primary| receive times, ns
        self._stats = np.zeros((1, hdr.N_STATS), dtype=np.int64)
        self.compared_to = 0  # every sequence number below this one was compared (or counted uncompared)
        self.primary = _Consumer(self, 0, "shadow-compare:primary")
        self.shadow = _Consumer(self, 1, "shadow-compare:shadow")

    def take(self, which: int, batch) -> None:
        if batch.snapshot or not batch.count:
            return
        side = self.sides[which]
        if batch.session != side.session:  # a new session (or the first): the comparison starts over
            side.session, side.first = batch.session, batch.first_seq
            self.compared_to = 0
        _keep(batch.stream, batch.first_seq, batch.count, batch.timestamp_ns, side.hashes, side.times, side.seqs,
              self.mask)
        side.next = batch.first_seq + batch.count
        self._advance()

    def _advance(self) -> None:
        a, b = self.sides
        if not a.next or not b.next or a.session != b.session:
            return
        if not self.compared_to:  # what both can have: from the later of the two first sequence numbers
            self.compared_to = max(a.first, b.first)
        hi = min(a.next, b.next)
        lo = max(self.compared_to, max(a.next, b.next) - self.window)  # the leader overwrote older slots
        if lo > self.compared_to:
            self.counts[UNCOMPARED] += lo - self.compared_to
            self.compared_to = lo
        if hi > lo:
            _compare(a.hashes, a.times, a.seqs, b.hashes, b.times, b.seqs, lo, hi, self.mask, self.counts, self.diff,
                     self._stats)
            self.compared_to = hi

    def summary(self) -> dict:
        from xdpfeed.multicast.latency.stages import stage_summary

        c = self.counts
        return {"compared": int(c[COMPARED]), "divergent": int(c[DIVERGENT]), "uncompared": int(c[UNCOMPARED]),
                "first_divergence": int(c[FIRST_DIVERGENCE]) or None, "primary_first": int(c[PRIMARY_FIRST]),
                "shadow_first": int(c[SHADOW_FIRST]), "same_time": int(c[SAME_TIME]),
                "receive_time_difference": stage_summary(self.diff[0], "message"),
                "primary_next": self.sides[0].next, "shadow_next": self.sides[1].next}


class _Consumer:
    def __init__(self, owner: LiveCompare, which: int, name: str):
        self.owner, self.which, self.name = owner, which, name

    def on_messages(self, batch) -> None:
        self.owner.take(self.which, batch)


class ShadowCollector:
    """The live comparison as Prometheus families."""

    def __init__(self, compare: LiveCompare, feed: str):
        self.compare, self.feed = compare, feed

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from xdpfeed.multicast.feed.metrics import STAGE_BOUNDS_S

        c, f = self.compare.counts, self.feed
        for name, doc, k in (
            ("xdpfeed_shadow_compared_messages", "Messages both paths delivered, compared byte for byte.", COMPARED),
            ("xdpfeed_shadow_divergent_messages", "Messages the two paths delivered differently.", DIVERGENT),
            ("xdpfeed_shadow_uncompared_messages", "Messages one path delivered too far ahead of the other to be "
             "compared.", UNCOMPARED),
        ):
            fam = CounterMetricFamily(name, doc, labels=["feed"])
            fam.add_metric([f], int(c[k]))
            yield fam
        first = CounterMetricFamily("xdpfeed_shadow_first", "Equal messages by the path that received them first.",
                                    labels=["feed", "path"])
        first.add_metric([f, "primary"], int(c[PRIMARY_FIRST]))
        first.add_metric([f, "shadow"], int(c[SHADOW_FIRST]))
        first.add_metric([f, "same"], int(c[SAME_TIME]))
        yield first
        lag = GaugeMetricFamily("xdpfeed_shadow_lag_messages", "How far the shadow path is behind the primary "
                                "(negative: ahead).", labels=["feed"])
        a, b = self.compare.sides
        lag.add_metric([f], (a.next - b.next) if a.next and b.next else 0)
        yield lag
        hist = HistogramMetricFamily("xdpfeed_shadow_receive_difference_seconds", "|shadow − primary| receive time "
                                     "of each equal message.", labels=["feed"])
        bounds = np.array([x * 1e9 for x in STAGE_BOUNDS_S], dtype=np.int64)
        below, total, sum_ns = hdr.cumulative_at(self.compare.diff[0], bounds)
        buckets = [(f"{x:g}", int(v)) for x, v in zip(STAGE_BOUNDS_S, below.tolist(), strict=True)]
        hist.add_metric([f], buckets + [("+Inf", total)], sum_ns * 1e-9)
        yield hist
