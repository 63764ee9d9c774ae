"""Compiled, allocation-free latency histograms in HdrHistogram's own layout (docs/latency.md).

A row of `counts` (int64) is exactly the counts array of an HdrHistogram with lowest trackable value 1 ns,
highest HIGHEST ns (one hour) and SIGNIFICANT_FIGURES (3: every value is kept to within 0.1 %), so the
recording here is a few integer operations and no Python per value. Percentiles are computed here the way
HdrHistogram computes them, so a handler needs nothing more; the row becomes an `hdrh` HdrHistogram (the
`hdrhistogram` package, an optional dependency: `pip install 'xdpfeed[latency]'`) by copying it, for the V2
encoding and the log format HdrHistogram's tools read. Values below 1 ns count as 0 ns; values above HIGHEST
are counted at HIGHEST and in `saturated`.

`record_since(counts, row, now_ns, ts, first, n, stats)` records now_ns − ts[i] for n timestamps (one per
message or per packet), skipping unknown (≤ 0) timestamps and counting them, with one index computation
per run of equal timestamps (messages of one packet share theirs).
"""

import numpy as np

from xdpfeed.capture.jit import njit

LOWEST = 1
HIGHEST = 3_600_000_000_000  # ns: one hour
SIGNIFICANT_FIGURES = 3

# HdrHistogram's derived sizes for (1, HIGHEST, 3), as its constructor computes them
_LARGEST_SINGLE_UNIT = 2 * 10 ** SIGNIFICANT_FIGURES
SUB_BUCKET_COUNT = 1 << int(np.ceil(np.log2(_LARGEST_SINGLE_UNIT)))  # 2048
SUB_BUCKET_HALF_MAGNITUDE = int(np.log2(SUB_BUCKET_COUNT)) - 1  # 10
SUB_BUCKET_HALF = SUB_BUCKET_COUNT // 2
SUB_BUCKET_MASK = SUB_BUCKET_COUNT - 1


def _bucket_count(highest: int) -> int:
    smallest_untrackable = SUB_BUCKET_COUNT
    buckets = 1
    while smallest_untrackable <= highest:
        if smallest_untrackable > (1 << 62):
            return buckets + 1
        smallest_untrackable <<= 1
        buckets += 1
    return buckets


BUCKET_COUNT = _bucket_count(HIGHEST)
COUNTS_LEN = (BUCKET_COUNT + 1) * SUB_BUCKET_HALF

# stats[row, k]
UNKNOWN, SATURATED, NEGATIVE = 0, 1, 2  # timestamps unknown; values over HIGHEST; clocks out of order (< 0)
N_STATS = 3


@njit(cache=True, inline="always")
def _bit_length(v):
    n = np.int64(0)
    for s in (32, 16, 8, 4, 2, 1):
        if v >> s:
            v >>= s
            n += s
    return n + (1 if v else 0)


@njit(cache=True, inline="always")
def index_of(v):
    """HdrHistogram's counts index of value v (0 <= v <= HIGHEST)."""
    bucket = _bit_length(v | SUB_BUCKET_MASK) - (SUB_BUCKET_HALF_MAGNITUDE + 1)
    sub = v >> bucket
    return ((bucket + 1) << SUB_BUCKET_HALF_MAGNITUDE) + (sub - SUB_BUCKET_HALF)


@njit(cache=True, inline="always")
def record(counts, row, v, stats, n):
    """Count value v (ns) n times in counts[row]."""
    if v < 0:
        stats[row, NEGATIVE] += n
        v = 0
    elif v > HIGHEST:
        stats[row, SATURATED] += n
        v = HIGHEST
    counts[row, index_of(v)] += n


@njit(cache=True)
def record_since(counts, row, now_ns, ts, first, n, stats):
    """now_ns − ts[first + i] for i < n, unknown (≤ 0) timestamps skipped and counted."""
    i = first
    end = first + n
    while i < end:
        t = ts[i]
        j = i + 1
        while j < end and ts[j] == t:
            j += 1
        if t <= 0:
            stats[row, UNKNOWN] += j - i
        else:
            record(counts, row, now_ns - t, stats, j - i)
        i = j


@njit(cache=True)
def record_values(counts, row, values, stats):
    for k in range(values.size):
        record(counts, row, values[k], stats, 1)


def value_at_percentile(row: np.ndarray, percentile: float, cum: np.ndarray | None = None) -> int:
    """HdrHistogram's getValueAtPercentile on a counts row: the highest value equivalent to the one at the
    percentile (the lowest for percentile 0); 0 for an empty row."""
    cum = np.cumsum(row) if cum is None else cum
    total = int(cum[-1])
    if not total:
        return 0
    target = max(int(min(percentile, 100.0) * total / 100 + 0.5), 1)
    i = int(np.searchsorted(cum, target, side="left"))
    return int(INDEX_VALUES[i] if percentile else INDEX_LOWEST[i])


def max_value(row: np.ndarray) -> int:
    nz = np.flatnonzero(row)
    return int(INDEX_VALUES[nz[-1]]) if nz.size else 0


def to_hdrh(row: np.ndarray):
    """The counts row as an `hdrh` HdrHistogram (percentiles, encoding, logs)."""
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(LOWEST, HIGHEST, SIGNIFICANT_FIGURES)
    if h.counts_len != COUNTS_LEN:
        raise RuntimeError(f"hdrh counts {h.counts_len} != {COUNTS_LEN}: the layouts differ")
    nz = np.flatnonzero(row)
    for i in nz.tolist():
        h.counts[i] = int(row[i])
    h.set_internal_tacking_values(int(nz[0]) if nz.size else -1, int(nz[-1]) if nz.size else -1, int(row.sum()))
    return h



def index_values(lowest: bool = False) -> np.ndarray:
    """The highest (or lowest) value each counts index stands for (increasing with the index)."""
    i = np.arange(COUNTS_LEN, dtype=np.int64)
    bucket = (i >> SUB_BUCKET_HALF_MAGNITUDE) - 1
    sub = (i & (SUB_BUCKET_HALF - 1)) + SUB_BUCKET_HALF
    low = bucket < 0
    sub[low] -= SUB_BUCKET_HALF
    bucket[low] = 0
    return (sub << bucket) if lowest else (sub << bucket) + (np.int64(1) << bucket) - 1


INDEX_VALUES = index_values()
INDEX_LOWEST = index_values(lowest=True)


def cumulative_at(row: np.ndarray, bounds_ns: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Counts at or below each bound (the HDR values each index stands for, at their upper end), the total, and
    the sum of the values in ns (each at its index's upper end): a Prometheus histogram of the row."""
    cum = np.cumsum(row)
    at = np.searchsorted(INDEX_VALUES, bounds_ns, side="right") - 1
    below = np.where(at >= 0, cum[np.maximum(at, 0)], 0)
    return below, int(cum[-1]), float(np.dot(row.astype(np.float64), INDEX_VALUES))
