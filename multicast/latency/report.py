"""Reading a latency file (`run --latency-out`, multicast.latency.stages.write_log) and showing it the way
the field reads latency: a STAC-style table per stage (count, p50, p90, p99, p99.9, p99.99, max), the same as
JSON, and an HdrHistogram percentile-distribution plot (matplotlib) that puts the tail in plain sight.

The file is an HdrHistogram log (V1.3): one interval line per feed and stage, tagged `FEED/STAGE`, its
histogram in HdrHistogram's compressed V2 encoding (HistogramLogProcessor and the other HdrHistogram tools
read it), and a `#[xdpfeed] {...}` comment with the stages' units and each line's timestamp source. A file
that is not one is a LatencyFileError naming the line.
"""

import json

from xdpfeed.multicast.latency.stages import PERCENTILES, stage_summary


class LatencyFileError(ValueError):
    pass


def read(path: str) -> dict:
    """{feed: {"stages": {stage: {"histogram": hdrh HdrHistogram, "unit": ..., ...}}, "timestamps": {...}}}."""
    from hdrh.histogram import HdrHistogram

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
            out.setdefault(feed, {"stages": {}, "timestamps": {}})["stages"][stage] = {"histogram": h}
    if meta is None or not out:
        raise LatencyFileError(f"{path}: not an xdpfeed latency file (no #[xdpfeed] header or no Tag= lines)")
    for feed, info in out.items():
        m = meta.get("feeds", {}).get(feed, {})
        info["timestamps"] = m.get("timestamps", {})
        for stage, st in info["stages"].items():
            st.update(m.get("stages", {}).get(stage, {"unit": "message"}))
    return out


def summary(report: dict) -> dict:
    """JSON: per feed, per stage count, p50 … p99.99 and max in ns, its unit and counters; the timestamp
    sources per line."""
    res = {}
    for feed, info in report.items():
        stages = {}
        for stage, st in info["stages"].items():
            d = stage_summary(st["histogram"], st.get("unit", "message"))
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
            h = st["histogram"]
            if not h.get_total_count():
                continue
            xs, ys = [], []
            for it in h.get_percentile_iterator(5):
                p = it.percentile_level_iterated_to
                if p >= 100.0:
                    break
                xs.append(1.0 / (1.0 - p / 100.0))
                ys.append(max(it.value_iterated_to, 1) / 1000.0)
            label = stage if len(report) == 1 else f"{feed}/{stage}"
            ax.plot(xs, ys, label=label)
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency from the packet's receive timestamp (µs)")
    ax.set_title("xdpfeed latency by stage (HdrHistogram percentile distribution)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
