"""`xdpfeed run -c venues.toml` when the config holds several feeds: all of them in one process and one loop
(multicast.feed.feeds), with the consolidated book; progress per feed, a summary per feed and of the
consolidated book, and the exit statuses of `run` (multicast.cli.run) over all of them: 1 when any feed
ended STALE (with --until-eos: or lost messages) or a consumer failed, 3 when an output failed or is
incomplete."""

import json
import sys
import time

from xdpfeed.multicast.cli.run import EXIT_OUTPUT_FAILED, EXIT_STALE, EXIT_USAGE, format_summary, metrics_key
from xdpfeed.multicast.feed import config as cfgmod
from xdpfeed.multicast.feed.stop import StopOnSignal


class FeedsProgress:
    """One line per tick on stderr: each feed's state, next sequence and rate; the consolidated book's
    locked/crossed symbols and the feeds it leaves out. With as_json, one JSON object per tick."""

    def __init__(self, stream=sys.stderr, as_json: bool = False):
        self.stream, self.as_json = stream, as_json
        self.t0 = time.monotonic()
        self.last: dict[str, tuple[float, int]] = {}

    def __call__(self, feeds) -> None:
        now = time.monotonic()
        parts, doc = [], {"seconds": round(now - self.t0, 3), "feeds": {}}
        for f in feeds.feeds:
            st = f.state
            t, n = self.last.get(f.name, (self.t0, 0))
            rate = (st.delivered - n) / max(now - t, 1e-9)
            self.last[f.name] = (now, st.delivered)
            parts.append(f"{f.name} {st.state} {st.delivered:,} ({rate / 1e6:.2f}M/s, gaps {st.gaps})")
            doc["feeds"][f.name] = {"state": st.state, "delivered": st.delivered, "next_seq": st.next_seq,
                                    "gaps": st.gaps, "msgs_per_s": round(rate)}
        if feeds.consolidated is not None:
            c = feeds.consolidated.summary()
            out = ",".join(c["excluded_venues"]) or "none"
            parts.append(f"consolidated: locked {c['locked_now']} crossed {c['crossed_now']} left out {out}")
            doc["consolidated"] = c
        if self.as_json:
            print(json.dumps(doc, sort_keys=True), file=self.stream, flush=True)
        else:
            print(f"[{now - self.t0:6.1f}s] " + "  |  ".join(parts), file=self.stream, flush=True)


def format_feeds_summary(s: dict) -> str:
    lines = []
    for name, fs in s["feeds"].items():
        lines.append(f"== feed {name} (venue {fs['venue']}): {s.get('why', {}).get(name, '')}")
        lines.append(format_summary(fs))
    c = s.get("consolidated")
    if c:
        lines.append(f"== consolidated book: {c['symbols']:,} symbols, {c['events']:,} best bid/offer changes; "
                     f"locked now {c['locked_now']} (became locked {c['locked_entered']:,} times), crossed now "
                     f"{c['crossed_now']} ({c['crossed_entered']:,} times); left out: "
                     f"{', '.join(c['excluded_venues']) or 'none'}")
    for name, o in s.get("outputs", {}).items():
        lines.append(f"consolidated output {name}: {o['messages']:,} messages"
                     + (f"; FAILED: {o['failed']}" if o.get("failed") else ""))
    return "\n".join(lines)


def run_feeds(args, cfg: cfgmod.FeedsConfig) -> int:
    from xdpfeed.multicast.feed.feeds import Feeds

    progress = None if args.quiet else FeedsProgress(as_json=args.fmt == "json")
    with StopOnSignal() as stop:
        try:
            feeds = Feeds(cfg, metrics=metrics_key(args.metrics_addr, cfg))
        except (cfgmod.ConfigError, ValueError) as e:
            print(f"xdpfeed run: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        with feeds:
            why = feeds.run(until_eos=args.until_eos, stop=stop, on_tick=progress, idle_timeout=args.idle_timeout)
    summary = feeds.summary()
    summary["exit"] = why
    print(json.dumps(summary, sort_keys=True) if args.fmt == "json" else format_feeds_summary(summary))
    whys = feeds.whys
    if any(w in ("stale", "consumer failed") for w in whys.values()) or (
            args.until_eos and any(fs["lost"] for fs in summary["feeds"].values())):
        return EXIT_STALE
    failed = [(n, e) for f in feeds.feeds for n, e in f.sink_failures] + list(feeds.sink_failures)
    incomplete = [n for fs in summary["feeds"].values() for n, o in fs.get("outputs", {}).items()
                  if o.get("dropped_messages") or o.get("unpublished")]
    for name in incomplete:
        print(f"xdpfeed run: error: output {name} is incomplete (dropped or unpublished messages)", file=sys.stderr)
    for name, error in failed:
        print(f"xdpfeed run: error: output {name} failed: {error}", file=sys.stderr)
    return EXIT_OUTPUT_FAILED if failed or incomplete else 0
