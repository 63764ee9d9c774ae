"""Reading a latency file (`run --latency-out`, multicast.latency.stages.write_log) and showing it the way
the field reads latency: a STAC-style table per stage (count, p50, p90, p99, p99.9, p99.99, max), the same as
JSON, and an HdrHistogram percentile-distribution plot (matplotlib) that puts the tail in plain sight.

The file is an HdrHistogram log (V1.3): one interval line per feed and stage, tagged `FEED/STAGE`, its
histogram in HdrHistogram's compressed V2 encoding (HistogramLogProcessor and the other HdrHistogram tools
read it), and a `#[xdpfeed] {...}` comment with the stages' units and each line's timestamp source. A file
that is not one is a LatencyFileError naming the line.
"""

import json

import numpy as np

from xdpfeed.multicast.latency import hdr
from xdpfeed.multicast.latency.stages import PERCENTILES, stage_summary


class LatencyFileError(ValueError):
    pass


def read(path: str) -> dict:
    """{feed: {"stages": {stage: {"counts": counts row (multicast.latency.hdr), "unit": ..., ...}},
    "timestamps": {...}}}."""
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError:
        raise LatencyFileError("reading a latency file needs the hdrhistogram package (pip install "
                               "'xdpfeed[latency]')") from None

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise LatencyFileError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise LatencyFileError(f"{path}: not a latency file (byte {e.start} is not text)") from None
    meta, out = None, {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#[xdpfeed] "):
            try:
                meta = json.loads(line[len("#[xdpfeed] "):])
            except ValueError as e:
                raise LatencyFileError(f"{path}:{number}: bad xdpfeed header: {e}") from None
        elif line.startswith("Tag="):
            parts = line[4:].split(",")
            if len(parts) != 5 or "/" not in parts[0]:
                raise LatencyFileError(f"{path}:{number}: expected Tag=FEED/STAGE,start,length,max,histogram")
            feed, stage = parts[0].split("/", 1)
            try:
                h = HdrHistogram.decode(parts[4])
            except Exception as e:  # the codec raises its own types
                raise LatencyFileError(f"{path}:{number}: histogram of {parts[0]} does not decode: {e}") from None
            out.setdefault(feed, {"stages": {}, "timestamps": {}})["stages"][stage] = {"counts": _row(h)}
    if meta is None or not out:
        raise LatencyFileError(f"{path}: not an xdpfeed latency file (no #[xdpfeed] header or no Tag= lines)")
    for feed, info in out.items():
        m = meta.get("feeds", {}).get(feed, {})
        info["timestamps"] = m.get("timestamps", {})
        for stage, st in info["stages"].items():
            st.update(m.get("stages", {}).get(stage, {"unit": "message"}))
    return out


def _row(h) -> np.ndarray:
    """A decoded HdrHistogram as a counts row of ours (whatever its own range and precision were)."""
    row = np.zeros(hdr.COUNTS_LEN, dtype=np.int64)
    counts = np.ctypeslib.as_array(h.counts)[: h.counts_len]
    for i in np.flatnonzero(counts).tolist():
        v = min(max(int(h.get_value_from_index(i)), 0), hdr.HIGHEST)
        row[hdr.index_of(v)] += int(counts[i])
    return row


def summary(report: dict) -> dict:
    """JSON: per feed, per stage count, p50 … p99.99 and max in ns, its unit and counters; the timestamp
    sources per line."""
    res = {}
    for feed, info in report.items():
        stages = {}
        for stage, st in info["stages"].items():
            d = stage_summary(st["counts"], st.get("unit", "message"))
            d.update({k: st[k] for k in ("unknown_timestamps", "saturated", "negative") if k in st})
            stages[stage] = d
        res[feed] = {"stages": stages, "timestamps": info["timestamps"]}
    return res


def _us(ns) -> str:
    return "-" if ns is None else f"{ns / 1000:.2f}"


def table(report: dict) -> str:
    """The STAC-style table: one row per stage, latencies in microseconds."""
    cols = [f"p{p:g}" for p in PERCENTILES] + ["max"]
    lines = []
    for feed, info in summary(report).items():
        lines.append(f"feed {feed}: latency from the packet's receive timestamp, microseconds")
        for line, ts in sorted(info["timestamps"].items()):
            lines.append(f"  line {line} timestamps: {ts.get('source', '?')} ({ts.get('reason', '')})")
        head = f"  {'stage':<24} {'unit':<8} {'count':>12} " + " ".join(f"{c:>10}" for c in cols)
        lines.append(head)
        lines.append("  " + "-" * (len(head) - 2))
        for stage, d in info["stages"].items():
            lines.append(f"  {stage:<24} {d['unit']:<8} {d['count']:>12,} "
                         + " ".join(f"{_us(d[c]):>10}" for c in cols))
    return "\n".join(lines)


def plot(report: dict, out: str) -> None:
    """The percentile distribution of every stage (x: percentile on HdrHistogram's 1/(1 − p) scale, y:
    latency in µs, both logarithmic), one line per feed and stage, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6))
    for feed, info in report.items():
        for stage, st in info["stages"].items():
            row = st["counts"]
            nz = np.flatnonzero(row)
            if not nz.size:
                continue
            q = np.cumsum(row)[nz] / row.sum()  # the fraction at or below each recorded value
            keep = q < 1.0
            xs = np.concatenate(([1.0], 1.0 / (1.0 - q[keep])))
            ys = np.concatenate(([hdr.INDEX_LOWEST[nz[0]]], hdr.INDEX_VALUES[nz][keep])) / 1000.0
            label = stage if len(report) == 1 else f"{feed}/{stage}"
            ax.step(xs, np.maximum(ys, 0.001), where="post", label=label)
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("µs: venue → received; the other stages from the receive timestamp")
    ax.set_title("xdpfeed latency by stage (HdrHistogram percentile distribution)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
