"""A feed's latency, stage by stage: one compiled histogram per stage (multicast.latency.hdr), recorded
where each stage ends, from the packet's receive timestamp (docs/latency.md).

Stages, each measured from the receive timestamp of the packet that brought the message (so a row is the
latency from the wire up to that point):
- `venue` (only with `venue_time`): the venue's time (the ITCH timestamp of a packet's first message, ns since
  midnight US Eastern) → received: the time on the wire, when both clocks are synchronized; per packet of
  lines A and B (recovered messages are not on the wire now);
- `venue_to_delivered` (only with `venue_time`): the venue's time of each message → delivered, end to end,
  whatever the source's timestamps are (messages whose ITCH timestamp is not a recent send time are
  skipped and counted as unknown); per message;
- `read`: received → the handler's read of the packet returned; per packet;
- `delivered`: → sequenced and handed to the Feed (in order, exactly once); per message;
- `book`: → the order book applied the batch; per message;
- `consumer:NAME` / `output:NAME`: → that consumer's (that output's) `on_messages` returned; per message.
  An output that encodes on a thread of its own (dbn:, parquet:) is measured to its hand-off.
Timestamps of 0 (unknown) are skipped and counted. `timestamp_sources` says, per line, where the receive
timestamps come from (hardware, software, the capture's, ...) and why not better.
"""

import datetime
import json
import time

import numpy as np

from xdpfeed.capture.byteorder import be16, be48
from xdpfeed.capture.jit import njit
from xdpfeed.multicast.latency import hdr

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
FILE_VERSION = 1


PLAUSIBLE_NS = 60_000_000_000  # a venue time further back than this is not a send time (a simulator's replay)


@njit(cache=True)
def _since_venue(counts, row, stream, nbytes, count, now_ns, midnight_ns, stats):
    """now − the venue's time of each message (its ITCH timestamp), for messages whose time is a plausible
    send time (not in the future, at most PLAUSIBLE_NS ago); the others counted as unknown."""
    p = np.int64(0)
    k = 0
    while k < count and p + 2 <= nbytes:
        n = np.int64(be16(stream, p))
        d = now_ns - (midnight_ns + np.int64(be48(stream, p + 2 + 5))) if n >= 11 else np.int64(-1)
        if 0 <= d <= PLAUSIBLE_NS:
            hdr.record(counts, row, d, stats, 1)
        else:
            stats[row, hdr.UNKNOWN] += 1
        p += 2 + n
        k += 1


@njit(cache=True)
def _wire(counts, row, buf, offset, blocks, ts, rows, midnight_ns, stats):
    """Per packet of a line: its receive time − the venue's time of its first message (its ITCH timestamp)."""
    for r in range(rows):
        if blocks[r] <= 0:
            continue
        p = offset[r]
        if be16(buf, p) < 11 or ts[r] <= 0:
            stats[row, hdr.UNKNOWN] += 1
            continue
        hdr.record(counts, row, ts[r] - (midnight_ns + np.int64(be48(buf, p + 2 + 5))), stats, 1)


def midnight_eastern_ns(ns: int) -> int:
    """Midnight US Eastern of the day `ns` (since the epoch) falls on, in ns since the epoch."""
    from zoneinfo import ZoneInfo

    east = ZoneInfo("America/New_York")
    day = datetime.datetime.fromtimestamp(ns / 1e9, tz=east).date()
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=east).timestamp()) * 1_000_000_000


class FeedLatency:
    """The per-stage histograms of one Feed. `consumers` and `outputs`: names, in the order the Feed calls
    them."""

    def __init__(self, consumers=(), outputs=(), venue_time: bool = False):
        self.venue_time = venue_time
        self.stages = (["venue", "venue_to_delivered"] if venue_time else []) + ["read", "delivered", "book"] \
            + [f"consumer:{n}" for n in consumers] + [f"output:{n}" for n in outputs]
        self.units = {s: "packet" if s in ("read", "venue") else "message" for s in self.stages}
        self.row = {s: i for i, s in enumerate(self.stages)}
        self.counts = np.zeros((len(self.stages), hdr.COUNTS_LEN), dtype=np.int64)
        self.stats = np.zeros((len(self.stages), hdr.N_STATS), dtype=np.int64)
        self.timestamp_sources: dict[str, dict] = {}
        self.started_ns = time.time_ns()
        self._midnight = 0
        self._r_venue = self.row.get("venue", -1)
        self._r_v2d = self.row.get("venue_to_delivered", -1)
        self._r_read, self._r_delivered, self._r_book = self.row["read"], self.row["delivered"], self.row["book"]
        self._first_consumer = self._r_book + 1

    # -- recording (the Feed calls these where each stage ends) ---------------------------------
    def read(self, ts: np.ndarray, n: int) -> None:
        hdr.record_since(self.counts, self._r_read, time.time_ns(), ts, 0, n, self.stats)

    def packets(self, buf: np.ndarray, index) -> None:
        """Packets of a line, indexed (their receive time and first message): the wire stage."""
        if not self.venue_time:
            return
        if not self._midnight:
            self._midnight = midnight_eastern_ns(time.time_ns())
        _wire(self.counts, self._r_venue, buf, index.offset, index.blocks, index.timestamp_ns, index.rows,
              self._midnight, self.stats)

    def delivered(self, ts: np.ndarray, count: int, stream: np.ndarray | None = None) -> None:
        now = time.time_ns()
        hdr.record_since(self.counts, self._r_delivered, now, ts, 0, count, self.stats)
        if self.venue_time and stream is not None and count:
            if not self._midnight:
                self._midnight = midnight_eastern_ns(now)
            _since_venue(self.counts, self._r_v2d, stream, stream.size, count, now, self._midnight, self.stats)

    def book(self, ts: np.ndarray, count: int) -> None:
        hdr.record_since(self.counts, self._r_book, time.time_ns(), ts, 0, count, self.stats)

    def consumer_done(self, index: int, ts: np.ndarray, count: int) -> None:
        """Consumer number `index` (outputs follow the consumers) returned from on_messages."""
        hdr.record_since(self.counts, self._first_consumer + index, time.time_ns(), ts, 0, count, self.stats)

    # -- results --------------------------------------------------------------------------------
    def percentiles(self, stage: str) -> dict:
        """count, p50 … p99.99 and max in ns (None when nothing was recorded), and the stage's unit."""
        return stage_summary(self.counts[self.row[stage]], self.units[stage], self.stats[self.row[stage]])

    def summary(self) -> dict:
        return {"stages": {s: self.percentiles(s) for s in self.stages}, "timestamps": self.timestamp_sources}

    def write(self, path: str, feed: str) -> None:
        """The histograms as an HdrHistogram log (V1.3 text: one interval line per stage, tagged FEED/STAGE,
        readable by HdrHistogram's HistogramLogProcessor), with the stages' units and timestamp sources in
        a `#[xdpfeed]` comment; replaced atomically. Needs the hdrhistogram package (its V2 encoding)."""
        write_log(path, {feed: self}, time.time_ns())


def stage_summary(row: np.ndarray, unit: str, stats=None) -> dict:
    """count, p50 … p99.99 and max (ns) of one stage's counts row; None for a stage that recorded nothing."""
    cum = np.cumsum(row)
    n = int(cum[-1])
    out = {"unit": unit, "count": n}
    for p in PERCENTILES:
        out[f"p{p:g}"] = hdr.value_at_percentile(row, p, cum) if n else None
    out["max"] = hdr.max_value(row) if n else None
    if stats is not None:
        out.update(unknown_timestamps=int(stats[hdr.UNKNOWN]), saturated=int(stats[hdr.SATURATED]),
                   negative=int(stats[hdr.NEGATIVE]))
    return out


def write_log(path: str, feeds: dict, now_ns: int) -> None:
    """Several feeds' histograms into one HdrHistogram log file."""
    import os

    try:
        import hdrh  # noqa: F401
    except ImportError:
        raise OSError(0, "needs the hdrhistogram package (pip install 'xdpfeed[latency]')") from None

    lines = ["#[HdrHistogram log written by xdpfeed]", "#[Histogram log format version 1.3]"]
    start = min(f.started_ns for f in feeds.values())
    lines.append(f"#[StartTime: {start / 1e9:.3f} (seconds since epoch)]")
    meta = {"version": FILE_VERSION, "unit": "ns", "feeds": {}}
    for name, f in feeds.items():
        meta["feeds"][name] = {"stages": {s: {"unit": f.units[s], "unknown_timestamps": int(f.stats[i, hdr.UNKNOWN]),
                                              "saturated": int(f.stats[i, hdr.SATURATED]),
                                              "negative": int(f.stats[i, hdr.NEGATIVE])}
                                          for i, s in enumerate(f.stages)},
                               "timestamps": f.timestamp_sources}
    lines.append("#[xdpfeed] " + json.dumps(meta, sort_keys=True))
    lines.append('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"')
    for name, f in feeds.items():
        for i, s in enumerate(f.stages):
            h = hdr.to_hdrh(f.counts[i])
            blob = h.encode().decode("ascii")
            mx = h.get_max_value() / 1e6 if h.get_total_count() else 0.0  # the log's max is in ms
            lines.append(f"Tag={name}/{s},{(f.started_ns - start) / 1e9:.3f},{(now_ns - f.started_ns) / 1e9:.3f},"
                         f"{mx:.3f},{blob}")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def timestamp_source(src) -> dict:
    """Where a source's receive timestamps come from: {"source": hardware | software | capture, "reason": ...}."""
    info = getattr(src, "timestamp_source", None)
    return dict(info) if info else {"source": "unknown", "reason": f"{type(src).__name__} does not say"}
