"""`xdpfeed run`: the live handler from the command line (or a TOML config): lines A/B from source
URIs, recovery servers, credentials from the environment or a 0600 file, `--record` of the delivered
stream, `--until-eos`, and a final summary (text, or one JSON object with -T json).
"""

import json
import logging
import sys
import time

from xdpfeed.capture.uri import open_source
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.feed import config as cfgmod
from xdpfeed.multicast.feed import sequencer_core as K
from xdpfeed.multicast.feed.handler import FeedHandler, Line
from xdpfeed.multicast.feed.recovery import Recovery
from xdpfeed.multicast.feed.sequencer import LINE_A, LINE_B, LINE_NAMES, Sequencer
from xdpfeed.multicast.feed.stop import StopOnSignal
from xdpfeed.multicast.feed.warmup import warm_up

EXIT_STALE = 1
EXIT_USAGE = 2
EXIT_NOT_READY = 1  # --check-config: the config is valid but this host is not ready for it


def add_arguments(p) -> None:
    p.add_argument("-c", "--config", metavar="FEED.toml", help="feed configuration (flags override it)")
    p.add_argument("-a", dest="line_a", metavar="URI", help="line A source, e.g. udp:233.54.12.111:26477@eth1")
    p.add_argument("-b", dest="line_b", metavar="URI", help="line B source")
    p.add_argument("--replay", action="append", default=[], metavar="HOST:PORT",
                   help="SoupBinTCP replay server (repeat for fallbacks, tried in order)")
    p.add_argument("--rerequest", action="append", default=[], metavar="HOST:PORT",
                   help="MoldUDP64 re-request server (repeat for fallbacks)")
    p.add_argument("--user", help="replay login user name (password: $XDPFEED_PASSWORD or the config's file)")
    p.add_argument("--record", metavar="OUT.itch", help="write the delivered stream as a NASDAQ binary ITCH file")
    p.add_argument("--until-eos", action="store_true",
                   help="exit 0 once End of Session was seen and every gap is filled (1 if the feed is STALE)")
    p.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="exit when nothing arrives for this long")
    p.add_argument("--start", choices=("one", "first"), help="follow a session from sequence 1 (default) or the "
                   "first packet seen")
    p.add_argument("--no-book", action="store_true", help="do not build the order book")
    p.add_argument("--check-config", action="store_true",
                   help="check the config and this host (interfaces, queues, capabilities, huge pages) and exit: "
                   "0 ready, 1 host not ready, 2 bad config")
    add_metrics_argument(p)
    p.add_argument("-T", dest="fmt", choices=("text", "json"), default="text", help="summary format")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr; only errors are logged")


def add_metrics_argument(p) -> None:
    p.add_argument("--metrics-addr", metavar="HOST:PORT|off", default=None,
                   help="serve Prometheus metrics here (default 127.0.0.1:9464, or the config's metrics.addr; "
                   "'off' for none)")


def start_metrics(handler, text: str | None, feed: str):
    """Serve /metrics for the handler. The default address, when busy, is skipped with a warning; an
    address given explicitly must work. Returns the server or None."""
    from xdpfeed.multicast.feed import metrics

    explicit = text is not None
    text = text or "{}:{}".format(*metrics.DEFAULT_ADDR)
    if text == "off":
        return None
    addr = metrics.parse_addr(text)
    handler.count_types = True
    try:
        server, _ = metrics.serve(handler, addr, feed)
    except OSError as e:
        if explicit:
            raise cfgmod.ConfigError(f"--metrics-addr {text}: {e.strerror}") from None
        logging.getLogger("xdpfeed").warning("metrics not served: %s:%d: %s", *addr, e.strerror)
        return None
    logging.getLogger("xdpfeed").info("metrics on http://%s:%d/metrics", *server.server_address[:2])
    return server


def build_config(args) -> cfgmod.FeedConfig:
    cfg = cfgmod.load(args.config) if args.config else cfgmod.FeedConfig()
    if args.line_a:
        cfg.line_a = args.line_a
    if args.line_b:
        cfg.line_b = args.line_b
    if args.replay:
        cfg.replay = [cfgmod.parse_hostport(s, "--replay") for s in args.replay]
    if args.rerequest:
        cfg.rerequest = [cfgmod.parse_hostport(s, "--rerequest") for s in args.rerequest]
    if args.user:
        cfg.user = args.user
    if args.start:
        cfg.start_at_one = args.start == "one"
    if not cfg.line_a and not cfg.line_b:
        raise cfgmod.ConfigError("no line to read: give -a URI and/or -b URI (or feed.line_a in the config)")
    if cfg.replay and not cfg.user:
        raise cfgmod.ConfigError("--replay needs --user (or recovery.user in the config)")
    cfg.password = cfgmod.password_from_env(cfg)
    if cfg.replay and not cfg.password:
        raise cfgmod.ConfigError(f"--replay needs a password: set ${cfgmod.PASSWORD_ENV} or recovery.password_file")
    return cfg


def _group_array(groups):
    import ipaddress

    import numpy as np

    return np.array([(int(ipaddress.IPv4Address(g)), int(p)) for g, p in groups], dtype=np.int64).reshape(-1, 2)


def build_handler(cfg: cfgmod.FeedConfig, book=None, record=None, clock=time.monotonic) -> FeedHandler:
    lines = []
    try:
        for number, uri in ((LINE_A, cfg.line_a), (LINE_B, cfg.line_b)):
            if uri:
                src = open_source(uri)
                groups = getattr(src, "groups", None)  # L2 sources: keep only the feed's UDP
                lines.append(Line(number, src, _group_array(groups) if groups else None))
    except Exception:
        for ln in lines:
            ln.source.close()
        raise
    seq = Sequencer(hold_messages=cfg.hold_messages, slot_bytes=cfg.slot_bytes,
                    hold_arena_bytes=cfg.hold_arena_bytes, start_at_one=cfg.start_at_one)

    def recovery(s, sink, clk):
        return Recovery(s, sink, clk, cfg.policy, cfg.rerequest, cfg.replay, cfg.user, cfg.password)

    return FeedHandler(lines, seq, recovery if cfg.rerequest or cfg.replay else None, book, record, clock)


def status_line(h: FeedHandler, rate: float) -> str:
    """One compact line: state, position, rate, gaps open/filled, recovery by method, each line's share."""
    s = h.seq.stats()
    f = h.recovery.filled() if h.recovery is not None else {"rerequest": 0, "replay": 0}
    total = max(s["delivered"], 1)
    lines = "  ".join(f"{LINE_NAMES[ln.number]} {100 * int(h.seq.ls[ln.number, K.LS_FIRST]) / total:3.0f}% "
                      f"gaps {int(h.seq.ls[ln.number, K.LS_GAPS])}" for ln in h.lines)
    return (f"{s['state']:<12} next {s['next_seq']:>11,}  delivered {s['delivered']:>11,} ({rate / 1e6:5.2f}M msg/s)  "
            f"gaps {s['gaps']:>5} open {len(h.seq.missing()):>3}  filled rerequest {f['rerequest']:>8,} "
            f"replay {f['replay']:>8,}  dup {s['duplicates']:>10,}  {lines}")


class Progress:
    """Status lines on stderr: rewritten in place on a terminal, one per tick otherwise; with
    as_json, one JSON object per tick (state, counts, rate, per-line source stats)."""

    def __init__(self, stream=sys.stderr, as_json: bool = False):
        self.stream = stream
        self.as_json = as_json
        self.tty = stream.isatty() and not as_json
        self.t0 = time.monotonic()
        self.last = (self.t0, 0)

    def __call__(self, h: FeedHandler) -> None:
        now = time.monotonic()
        d = h.seq.stats()["delivered"]
        rate = (d - self.last[1]) / max(now - self.last[0], 1e-9)
        self.last = (now, d)
        if self.as_json:
            st = h.seq.stats()
            st.update(seconds=round(now - self.t0, 3), msgs_per_s=round(rate), open_gaps=len(h.seq.missing()),
                      sources={name: ln.get("source") for name, ln in h.line_summaries().items()})
            print(json.dumps(st, sort_keys=True), file=self.stream, flush=True)
            return
        line = f"[{now - self.t0:6.1f}s] " + status_line(h, rate)
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
    for name, ls in s["lines"].items():
        src = ls.get("source")
        if src:
            drops = ", ".join(f"{k} {v:,}" for k, v in src["drops"].items()) or "none"
            lines.append(f"line {name} source ({src['mode']}): {src['packets']:,} packets, {src['bytes']:,} bytes, "
                         f"drops: {drops}")
        lines.append(f"line {name}: {ls['packets']:,} packets, {ls['messages']:,} messages, first {ls['first']:,}, "
                     f"duplicates {ls['duplicates']:,}, own gaps {ls['gaps']:,} ({ls['gap_messages']:,} messages)")
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
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="xdpfeed: %(message)s",
                        stream=sys.stderr)
    try:
        cfg = build_config(args)
    except cfgmod.ConfigError as e:
        print(f"xdpfeed run: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.check_config:
        return check_config(cfg, args)
    record = None
    if args.record:
        try:
            record = open(args.record, "wb")  # noqa: SIM115 — closed in the finally below
        except OSError as e:
            print(f"xdpfeed run: error: {args.record}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
    stop = StopOnSignal().__enter__()  # SIGINT/SIGTERM end the loop, even when SIGINT was inherited ignored
    book = None if args.no_book else OrderBook()
    progress = None if args.quiet else Progress(as_json=args.fmt == "json")
    server = None
    try:
        warm_up()  # compile before the sockets fill up
        h = build_handler(cfg, book, record)
        try:
            server = start_metrics(h, args.metrics_addr or cfg.metrics_addr, cfg.name)
        except (cfgmod.ConfigError, ValueError) as e:
            h.close()
            print(f"xdpfeed run: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        logging.getLogger("xdpfeed.handler").info(
            "ready: line A %s, line B %s; re-request %s; replay %s", cfg.line_a or "-", cfg.line_b or "-",
            ", ".join(f"{h_}:{p_}" for h_, p_ in cfg.rerequest) or "-",
            ", ".join(f"{h_}:{p_}" for h_, p_ in cfg.replay) or "-")
        try:
            why = h.run(until_eos=args.until_eos, stop=stop, on_tick=progress, idle_timeout=args.idle_timeout)
        finally:
            h.close()
    finally:
        stop.__exit__()
        if server is not None:
            server.shutdown()
            server.server_close()
        if record is not None:
            record.close()
        if progress is not None:
            progress.done()
    summary = h.summary()
    summary["exit"] = why
    if book is not None:
        summary["book_checksum"] = book.checksum()
        summary["live_orders"] = book.live_orders
    if args.fmt == "json":
        print(json.dumps(summary, sort_keys=True))
    else:
        print(format_summary(summary))
    if why == "stale" or (args.until_eos and summary["lost"]):
        return EXIT_STALE
    return 0
