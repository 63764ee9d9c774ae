"""`xdpfeed run`: the live handler from the command line (or a TOML config): lines A/B from source
URIs, recovery servers, credentials from the environment or a 0600 file, `--out URI` outputs (and
`--record`, the ITCH file of the delivered stream), `--until-eos`, and a final summary (text, or one JSON
object with -T json).
"""

import json
import logging
import sys
import time

from xdpfeed.multicast.feed import config as cfgmod
from xdpfeed.multicast.feed.feed import Feed
from xdpfeed.multicast.feed.state import LINE_NAMES
from xdpfeed.multicast.feed.stop import SignalFlag, StopOnSignal

EXIT_STALE = 1  # also: a consumer failed
EXIT_USAGE = 2
EXIT_OUTPUT_FAILED = 3  # the run went on, but an output (sink) failed: what it holds is incomplete
EXIT_NOT_READY = 1  # --check-config: the config is valid but this host is not ready for it


def add_arguments(p) -> None:
    p.add_argument("-c", "--config", metavar="FEED.toml", help="feed configuration (flags override it); one with "
                   "several feeds ([[feeds]]) runs them all, with their consolidated book")
    p.add_argument("--feed", metavar="NAME", help="of a several-feeds config, run only this feed (one process per "
                   "feed, each pinned to a core of its own)")
    p.add_argument("-a", dest="line_a", metavar="URI", help="line A source, e.g. udp:233.54.12.111:26477@eth1")
    p.add_argument("-b", dest="line_b", metavar="URI", help="line B source")
    p.add_argument("--replay", action="append", default=[], metavar="HOST:PORT",
                   help="SoupBinTCP replay server (repeat for fallbacks, tried in order)")
    p.add_argument("--rerequest", action="append", default=[], metavar="HOST:PORT",
                   help="MoldUDP64 re-request server (repeat for fallbacks)")
    p.add_argument("--glimpse", action="append", default=[], metavar="HOST:PORT",
                   help="GLIMPSE 5.0 snapshot server (repeat for fallbacks, tried in order): for --start snapshot "
                   "and --resync snapshot")
    p.add_argument("--resync", choices=("stale", "snapshot"),
                   help="a gap recovery gave up on: stay STALE (default) or rebuild the book from a fresh snapshot")
    p.add_argument("--user", help="replay and GLIMPSE login user name (password: $XDPFEED_PASSWORD or the config's "
                   "file)")
    add_output_arguments(p)
    p.add_argument("--until-eos", action="store_true",
                   help="exit 0 once End of Session was seen and every gap is filled (1 if the feed is STALE)")
    p.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="exit when nothing arrives for this long")
    p.add_argument("--start", choices=("one", "first", "snapshot"), help="follow a session from sequence 1 "
                   "(default), the first packet seen, or a GLIMPSE snapshot (a late join: --glimpse)")
    p.add_argument("--no-book", action="store_true", help="do not build the order book")
    add_latency_arguments(p)
    p.add_argument("--shadow", action="append", default=[], metavar="URI",
                   help="run the same feed through a second path and compare it with this one while both run: one "
                   "or two source URIs (its lines A and B), or ipc:NAME / nats://… (another handler's output); "
                   "divergences and the receive-time difference become metrics (docs/golive.md)")
    p.add_argument("--check-config", action="store_true",
                   help="check the config and this host (interfaces, queues, capabilities, huge pages) and exit: "
                   "0 ready, 1 host not ready, 2 bad config")
    add_metrics_argument(p)
    p.add_argument("-T", dest="fmt", choices=("text", "json"), default="text", help="summary format")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr; only errors are logged")


def add_output_arguments(p) -> None:
    p.add_argument("--out", action="append", default=[], metavar="URI",
                   help="an output for the delivered stream (repeatable): itch:FILE, dbn:FILE, parquet:DIR, ipc:NAME, "
                        "nats://HOST:PORT[,...]/STREAM")
    p.add_argument("--record", metavar="OUT.itch", help="write the delivered stream as a NASDAQ binary ITCH file "
                   "(the same as --out itch:OUT.itch)")


def add_latency_arguments(p) -> None:
    p.add_argument("--latency-out", metavar="FILE", help="write the per-stage latency histograms here at the end and "
                   "on SIGUSR1 (an HdrHistogram log: `xdpfeed latency FILE` shows it)")
    p.add_argument("--venue-time", action="store_true", help="the venue's ITCH timestamps are its send time on a "
                   "clock synchronized with ours (`simulate --stamp-time`): measure the time on the wire too")
    p.add_argument("--no-latency", action="store_true", help="no per-stage latency histograms")


def latency_line(summary: dict) -> str:
    """Each stage's p50/p99/p99.9 in µs, one line ("" without latency)."""
    stages = (summary.get("latency") or {}).get("stages", {})
    parts = [f"{stage} {d['p50'] / 1e3:.1f}/{d['p99'] / 1e3:.1f}/{d['p99.9'] / 1e3:.1f}"
             for stage, d in stages.items() if d["count"]]
    return ("latency p50/p99/p99.9 µs (venue: on the wire; the rest from receive): " + "  ".join(parts)) if parts \
        else ""


def write_latency(feed, path: str, where: str = "xdpfeed run") -> bool:
    """The feed's latency file; one line on stderr when it cannot be written."""
    if feed.latency is None:
        return True
    try:
        feed.latency.write(path, feed.name)
        return True
    except OSError as e:
        print(f"{where}: error: --latency-out {path}: {e.strerror}", file=sys.stderr)
        return False


def add_metrics_argument(p) -> None:
    p.add_argument("--metrics-addr", metavar="HOST:PORT|off", default=None,
                   help="serve Prometheus metrics here (default 127.0.0.1:9464, or the config's metrics.addr; "
                   "'off' for none)")


def metrics_key(args_addr: str | None, cfg: cfgmod.FeedConfig) -> str:
    """The `metrics` key of the Feed: the flag, else the config's, else "auto" (127.0.0.1:9464 unless busy)."""
    return args_addr or cfg.metrics_addr or "auto"


ONE_FEED_FLAGS = ("line_a", "line_b", "replay", "rerequest", "glimpse", "resync", "user", "start", "record", "out",
                  "no_book", "latency_out", "venue_time", "no_latency", "shadow")


def build_config(args) -> cfgmod.FeedConfig | cfgmod.FeedsConfig:
    """The config file (if any) with the command line's flags over it; checked as the Feed checks it. A
    several-feeds config is returned whole (its feeds' passwords read), or its `--feed` alone."""
    cfg = cfgmod.load_any(args.config) if args.config else cfgmod.FeedConfig()
    if isinstance(cfg, cfgmod.FeedsConfig):
        if getattr(args, "feed", None):
            cfg = cfg.feed(args.feed)
        else:
            given = [f for f in ONE_FEED_FLAGS if getattr(args, f, None)]
            if given:
                raise cfgmod.ConfigError(f"{args.config} holds several feeds: --{given[0].replace('_', '-')} is for "
                                         "one feed (set it in the config, or run one with --feed NAME)")
            for f in cfg.feeds:
                problem = cfgmod.login_problem(f)
                if problem is not None:
                    raise cfgmod.ConfigError(f"feed {f.name}: {cfgmod.login_problem_text(problem)}")
            return cfg
    elif getattr(args, "feed", None):
        raise cfgmod.ConfigError(f"--feed {args.feed}: the config holds one feed ([[feeds]] holds several)")
    replay = [cfgmod.parse_hostport(s, "--replay") for s in args.replay]  # a bad one names the flag
    rerequest = [cfgmod.parse_hostport(s, "--rerequest") for s in args.rerequest]
    glimpse = [cfgmod.parse_hostport(s, "--glimpse") for s in getattr(args, "glimpse", [])]
    keys = {"line_a": args.line_a, "line_b": args.line_b, "replay": replay or None, "rerequest": rerequest or None,
            "glimpse": glimpse or None, "resync": getattr(args, "resync", None), "user": args.user, "start": args.start,
            "record": getattr(args, "record", None), "book": False if getattr(args, "no_book", False) else None,
            "latency": False if getattr(args, "no_latency", False) else None,
            "venue_time": True if getattr(args, "venue_time", False) else None,
            "outputs": (cfg.outputs + args.out) if getattr(args, "out", None) else None}
    cfg = cfgmod.with_keys(cfg, {k: v for k, v in keys.items() if v is not None})
    if not cfg.line_a and not cfg.line_b:
        raise cfgmod.ConfigError("no line to read: give -a URI and/or -b URI (or feed.line_a in the config)")
    problem = cfgmod.login_problem(cfg)
    if problem is not None:  # in the command line's words
        key, lacks = problem
        raise cfgmod.ConfigError(
            f"--{key} snapshot needs --glimpse HOST:PORT (or recovery.glimpse in the config)" if lacks == "glimpse"
            else f"--{key} needs --user (or recovery.user in the config)" if lacks == "user"
            else f"--{key} needs a password: set ${cfgmod.PASSWORD_ENV} or recovery.password_file")
    return cfg


def status_line(feed: Feed, rate: float) -> str:
    """One compact line: state, position, rate, gaps open/filled, recovery by method, each line's share."""
    s = feed.state
    f = feed.recovery.filled() if feed.recovery is not None else {"rerequest": 0, "replay": 0}
    total = max(s.delivered, 1)
    lines = "  ".join(f"{LINE_NAMES[ln.number]} {100 * feed.seq.line(ln.number).first / total:3.0f}% "
                      f"gaps {feed.seq.line(ln.number).gaps}" for ln in feed.lines)
    return (f"{s.state:<12} next {s.next_seq:>11,}  delivered {s.delivered:>11,} ({rate / 1e6:5.2f}M msg/s)  "
            f"gaps {s.gaps:>5} open {len(feed.seq.missing()):>3}  filled rerequest {f['rerequest']:>8,} "
            f"replay {f['replay']:>8,}  dup {s.duplicates:>10,}  {lines}")


class Progress:
    """Status lines on stderr: rewritten in place on a terminal, one per tick otherwise; with
    as_json, one JSON object per tick (state, counts, rate, per-line source stats)."""

    def __init__(self, stream=sys.stderr, as_json: bool = False):
        self.stream = stream
        self.as_json = as_json
        self.tty = stream.isatty() and not as_json
        self.t0 = time.monotonic()
        self.last = (self.t0, 0)

    def __call__(self, feed: Feed) -> None:
        now = time.monotonic()
        st = feed.state
        rate = (st.delivered - self.last[1]) / max(now - self.last[0], 1e-9)
        self.last = (now, st.delivered)
        if self.as_json:
            d = st.as_dict()
            d.update(seconds=round(now - self.t0, 3), msgs_per_s=round(rate), open_gaps=len(feed.seq.missing()),
                     sources={name: ln.get("source") for name, ln in feed.line_summaries().items()})
            print(json.dumps(d, sort_keys=True), file=self.stream, flush=True)
            return
        line = f"[{now - self.t0:6.1f}s] " + status_line(feed, rate)
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=self.stream, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=self.stream)


def format_summary(s: dict) -> str:
    lines = [f"state {s['state']}  session {s['session']!r}  next sequence {s['next_seq']:,}",
             f"delivered {s['delivered']:,}  duplicates dropped {s['duplicates']:,}  gaps {s['gaps']:,}  "
             f"filled by re-request {s['filled_rerequest']:,}  by TCP replay {s['filled_replay']:,}  "
             f"lost {s['lost']:,}",
             f"STALE episodes {s['stale_episodes']:,} ({s['stale_seconds_total']:.3f} s in all, longest "
             f"{s['stale_seconds_longest']:.3f} s)" + ("; STALE now" if s["stale"] else "")]
    lat = latency_line(s)
    if lat:
        lines.append(lat)
    snap = s.get("snapshots")
    if snap:
        lines.append(f"snapshots {snap['snapshots']:,} ({snap['messages']:,} messages, the last in "
                     f"{snap['last_seconds'] or 0:.3f} s; {snap['attempts']:,} attempts, failures "
                     f"{sum(snap['failures'].values()):,}); held messages they covered {snap['covered']:,}, "
                     f"skipped by a resync {snap['skipped']:,}")
    for name, ls in s["lines"].items():
        src = ls.get("source")
        if src:
            drops = ", ".join(f"{k} {v:,}" for k, v in src["drops"].items()) or "none"
            lines.append(f"line {name} source ({src['mode']}): {src['packets']:,} packets, {src['bytes']:,} bytes, "
                         f"drops: {drops}")
        lines.append(f"line {name}: {ls['packets']:,} packets, {ls['messages']:,} messages, first {ls['first']:,}, "
                     f"duplicates {ls['duplicates']:,}, own gaps {ls['gaps']:,} ({ls['gap_messages']:,} messages)")
    for name, o in s.get("outputs", {}).items():
        extra = "".join(f", {label} {o[k]:,}" for k, label in (
            ("stored", "stored by this handler"), ("twin", "by the other"), ("conflicts", "conflicts"),
            ("reconnects", "reconnects"), ("dropped_messages", "dropped"), ("unpublished", "unpublished"),
            ("subscribers", "subscribers")) if k in o)
        lines.append(f"output {name}: {o['messages']:,} messages, {o['bytes']:,} bytes{extra}"
                     + (f"; FAILED: {o['failed']}" if o.get("failed") else ""))
    return "\n".join(lines)


def check_config(cfg: cfgmod.FeedConfig, args) -> int:
    """--check-config: one line per problem on stderr (exit 1), what was checked on stdout unless -q."""
    from xdpfeed.multicast.feed import hostcheck

    try:
        problems, notes = hostcheck.check(cfg, args.metrics_addr)
    except cfgmod.ConfigError as e:
        print(f"xdpfeed run: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    for line in problems:
        print(f"xdpfeed run: error: {line}", file=sys.stderr)
    if not args.quiet:
        for line in notes:
            print(line)
        if not problems:
            print(f"{args.config or 'the command line'}: ready")
    return EXIT_NOT_READY if problems else 0


def run(args) -> int:
    """Exit status: 0 the run ended as asked (with --until-eos: the session complete, nothing lost); 1 the
    feed was STALE at its end (with --until-eos: lost messages too) or a consumer failed; 2 bad usage, a bad
    config, an output that cannot be opened or an environment that cannot run it (one line on stderr); 3 an
    output failed during the run, or could not publish everything (one line each; the feed went on)."""
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="xdpfeed: %(message)s",
                        stream=sys.stderr)
    try:
        cfg = build_config(args)
    except cfgmod.ConfigError as e:
        print(f"xdpfeed run: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(cfg, cfgmod.FeedsConfig):
        from xdpfeed.multicast.cli.run_feeds import run_feeds

        if args.check_config:
            return max(check_config(f, args) for f in cfg.feeds)
        return run_feeds(args, cfg)
    if args.check_config:
        return check_config(cfg, args)
    progress = None if args.quiet else Progress(as_json=args.fmt == "json")
    shadow = None
    with StopOnSignal() as stop, SignalFlag() as dump:  # SIGINT/SIGTERM end the loop; SIGUSR1 writes latency
        try:
            if args.shadow:
                from xdpfeed.multicast.compare.shadow import Shadow

                shadow = Shadow(cfg, args.shadow)
            feed = Feed(cfg, metrics=metrics_key(args.metrics_addr, cfg),
                        consumers=[shadow.compare.primary] if shadow else (),
                        collectors=[shadow.collector] if shadow else ())
        except (cfgmod.ConfigError, ValueError) as e:
            if shadow is not None:
                shadow.close()
            print(f"xdpfeed run: error: {e}", file=sys.stderr)
            return EXIT_USAGE

        def tick(f):
            if progress is not None:
                progress(f)
            if args.latency_out and dump.take():
                write_latency(f, args.latency_out)

        with feed:
            try:
                if shadow is not None:
                    why = shadow.run(feed, until_eos=args.until_eos, stop=stop, on_tick=tick,
                                     idle_timeout=args.idle_timeout)
                else:
                    why = feed.run(until_eos=args.until_eos, stop=stop, on_tick=tick, idle_timeout=args.idle_timeout)
            finally:
                if progress is not None:
                    progress.done()
                if shadow is not None:
                    shadow.close()
    if args.latency_out and not write_latency(feed, args.latency_out):
        return EXIT_USAGE
    summary = feed.summary()
    summary["exit"] = why
    if shadow is not None:
        summary["shadow"] = shadow.summary()
    if args.fmt == "json":
        print(json.dumps(summary, sort_keys=True))
    else:
        print(format_summary(summary))
    if why in ("stale", "consumer failed") or (args.until_eos and summary["lost"]):
        return EXIT_STALE
    incomplete = [(name, o) for name, o in summary.get("outputs", {}).items()
                  if o.get("dropped_messages") or o.get("unpublished")]
    for name, o in incomplete:
        print(f"xdpfeed run: error: output {name} is incomplete: {o['dropped_messages']:,} messages dropped past its "
              f"buffer, {o['unpublished']:,} not confirmed at the end", file=sys.stderr)
    for name, error in feed.sink_failures:
        print(f"xdpfeed run: error: output {name} failed: {error}", file=sys.stderr)
    return EXIT_OUTPUT_FAILED if feed.sink_failures or incomplete else 0
