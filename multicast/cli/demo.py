"""`xdpfeed demo`: the simulated venue and the live handler on this machine, in one command.

The venue runs as its own process (`xdpfeed simulate`, so both sides get a core), publishing a
deterministic ITCH day on two loopback multicast lines with random loss on each, bursts lost on
both at once, reordering and duplication, and serving recovery. The handler arbitrates the lines,
fills what both lost by MoldUDP64 re-request (small gaps) and SoupBinTCP replay (large ones), builds
the book, and shows live progress. The summary compares what was published with what was delivered,
and the handler's book with the book of the venue's own day (SHA-256 over every level). Exits 1 if
anything was lost or the books differ. No privileges needed: UDP sockets on loopback only.
"""

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time

from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.cli.run import (
    Progress,
    add_metrics_argument,
    add_output_arguments,
    latency_line,
    write_latency,
)
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange.ports import free_port, line_pair
from xdpfeed.multicast.feed.config import ConfigError
from xdpfeed.multicast.feed.feed import Feed
from xdpfeed.multicast.feed.stop import SignalFlag
from xdpfeed.multicast.itch.pipeline import replay_into_book
from xdpfeed.multicast.sinks.base import SinkError

PROG = "xdpfeed demo"
USER = "DEMO01"
SUMMARY_KEYS = ("published", "delivered", "duplicates", "gaps", "filled_rerequest", "filled_replay", "lost", "stale",
                "stale_episodes", "stale_seconds_total", "book_matches")


class DemoError(RuntimeError):
    """The demo could not run or cannot vouch for its result: one line, exit 1."""


def add_arguments(p) -> None:
    a = p.add_argument
    a("--messages", type=int, default=1_000_000, metavar="N", help="messages in the day (default 1,000,000)")
    a("--rate", type=float, default=1_000_000, metavar="MSGS_PER_S", help="publishing rate (default 1M/s; 0 = max)")
    a("--seed", type=int, default=1, metavar="S", help="seed of the day and of the faults")
    a("--loss-a", type=float, default=0.01, metavar="P", help="packet loss on line A (default 0.01)")
    a("--loss-b", type=float, default=0.01, metavar="P", help="packet loss on line B (default 0.01)")
    a("--burst-loss", type=int, default=20_000, metavar="N",
      help="messages lost on both lines at once, per burst (default 20,000: recovered by TCP replay)")
    a("--bursts", type=int, default=2, metavar="K", help="bursts (default 2)")
    a("--reorder", type=float, default=0.001, metavar="P", help="packet reordering probability")
    a("--duplicate", type=float, default=0.001, metavar="P", help="packet duplication probability")
    a("--rerequest-max", type=int, default=5_000, metavar="N",
      help="largest gap filled by re-request; larger ones go to TCP replay (default 5,000)")
    a("--venues", type=int, default=1, metavar="N",
      help="simulate N venues at once (2 or 3: Nasdaq, BX, PSX), one handler for all with the consolidated book; "
      "each venue 300,000 messages at 200,000 msg/s unless --messages/--rate say otherwise")
    a("--json", action="store_true", help="print the summary as one JSON object")
    a("--latency-out", metavar="FILE", help="write the per-stage latency histograms here at the end and on SIGUSR1 "
      "(an HdrHistogram log: `xdpfeed latency FILE` shows it)")
    add_metrics_argument(p)
    add_output_arguments(p)


def _say(args, text: str) -> None:
    if not args.json:
        print(text, flush=True)


def _venue_book(path: str) -> str:
    book = OrderBook()
    replay_into_book(path, book, fmt="itch")
    return book.checksum()


def _start_venue(args, day: str, line_a, line_b, password: str, replay_port: int, request_port: int,
                 messages: int | None = None, rate: float | None = None, session: str | None = None, extra=()):
    cmd = [sys.executable, "-m", "xdpfeed.multicast.cli", "simulate", "--day", day,
           "--messages", str(messages or args.messages), "--replay-port", str(replay_port),
           "--request-port", str(request_port), *(["--session", session] if session else []), *extra,
           "--rate", str(args.rate if rate is None else rate), "--seed", str(args.seed), "--loss-a", str(args.loss_a),
           "--loss-b", str(args.loss_b), "--burst-loss", str(args.burst_loss), "--bursts", str(args.bursts),
           "--reorder", str(args.reorder), "--duplicate", str(args.duplicate),
           "--line-a", f"{line_a[0]}:{line_a[1]}", "--line-b", f"{line_b[0]}:{line_b[1]}", "--iface-addr", "127.0.0.1",
           "--user", USER, "--linger", "600", "--start-delay", "0.5", "-T", "json"]
    env = dict(os.environ, XDPFEED_PASSWORD=password)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stdout.readline()
    try:
        return proc, json.loads(first)
    except ValueError:
        proc.kill()
        err = proc.stderr.read().strip().splitlines()
        raise DemoError(f"the venue did not start: {err[-1] if err else first.strip() or 'no output'}") from None


def _stop_venue(proc) -> dict:
    """Stop the venue (SIGTERM: it stops and prints its summary) and return that summary. Raises
    DemoError when there is none: the demo then has nothing to compare with and says so."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {}  # its address line was read when it started
    if "published_messages" not in summary:
        last = err.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise DemoError(f"the venue ended without its summary ({last[0]}): nothing to check the run against")
    return summary


def run(args) -> int:
    try:
        return _run(args)
    except DemoError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except (ConfigError, SinkError) as e:  # an output that cannot be opened
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.venues != 1:
        from xdpfeed.multicast.cli import demo_venues

        demo_venues.check(args)
        if not args.json:
            logging.basicConfig(level=logging.WARNING, format="xdpfeed: %(message)s", stream=sys.stderr)
        return demo_venues.run_venues(args)
    if args.messages < 5000:
        print(f"{PROG}: error: --messages must be at least 5000", file=sys.stderr)
        return 2
    if not args.json:
        logging.basicConfig(level=logging.WARNING, format="xdpfeed: %(message)s", stream=sys.stderr)
    t0 = time.monotonic()
    day = os.path.join(tempfile.gettempdir(), f"xdpfeed-demo-day-{args.messages}-{args.seed}.itch")
    _say(args, f"== the venue's day: {args.messages:,} ITCH messages (seed {args.seed}) → {day}")
    synthetic.generate_to_file(day, args.messages, seed=args.seed)
    venue_checksum = _venue_book(day)
    line_a, line_b = line_pair()
    replay_port, request_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    password = secrets.token_hex(5)  # 10 characters, this run only
    _say(args, "== warming up the compiled code (the first run on a machine compiles it, later runs load it)")
    # the lines are joined (and the servers' ports chosen) before the venue publishes
    feed = Feed(line_a=f"udp:{line_a[0]}:{line_a[1]}@lo", line_b=f"udp:{line_b[0]}:{line_b[1]}@lo",
                rerequest=[f"127.0.0.1:{request_port}"], replay=[f"127.0.0.1:{replay_port}"], user=USER,
                password=password, rerequest_max=args.rerequest_max, metrics=args.metrics_addr or "auto",
                name="demo", record=args.record, outputs=args.out, venue_time=True)
    proc = None
    try:
        if feed.metrics_server is not None:
            _say(args, "== metrics: http://{}:{}/metrics".format(*feed.metrics_server.server_address[:2]))
        proc, addr = _start_venue(args, day, line_a, line_b, password, replay_port, request_port,
                                  extra=["--stamp-time"])  # the venue's send time: the handler's wire stage
        _say(args, f"== venue: lines A {addr['line_a']} and B {addr['line_b']} on loopback, loss "
             f"{args.loss_a:.1%} / {args.loss_b:.1%} per packet, {args.bursts} burst(s) of {args.burst_loss:,} "
             f"lost on both, rate {args.rate:,.0f} msg/s; replay {addr['replay']}, re-request {addr['request']}")
        progress = None if args.json else Progress(sys.stdout)
        _say(args, "== handler: arbitration, hold queue, recovery, book")
        with SignalFlag() as dump:  # SIGUSR1: the latency file now

            def tick(f):
                if progress is not None:
                    progress(f)
                if args.latency_out and dump.take():
                    write_latency(f, args.latency_out, PROG)

            why = feed.run(until_eos=True, on_tick=tick, idle_timeout=60)
        if progress is not None:
            progress.done()
    finally:
        feed.close()
        venue = _stop_venue(proc) if proc is not None else None
    if args.latency_out and not write_latency(feed, args.latency_out, PROG):
        return 2
    book = feed.book
    s = feed.summary()
    summary = {
        "published": venue["published_messages"], "delivered": s["delivered"], "duplicates": s["duplicates"],
        "gaps": s["gaps"], "filled_rerequest": s["filled_rerequest"], "filled_replay": s["filled_replay"],
        "lost": s["lost"] + max(0, venue["published_messages"] - s["delivered"] - s["lost"]),
        "stale": s["stale"], "stale_episodes": s["stale_episodes"], "stale_seconds_total": s["stale_seconds_total"],
        "book_matches": book.checksum() == venue_checksum,
    }
    detail = {"exit": why, "seconds": round(time.monotonic() - t0, 2), "lines": s["lines"], "latency": s.get("latency"),
              "recovery": s.get("recovery", {}), "venue_lost_on_both": venue["lost_on_both_messages"]}
    if args.json:
        print(json.dumps(dict(summary, detail=detail), sort_keys=True))
    else:
        r = s.get("recovery", {})
        print(f"== summary ({detail['seconds']} s)\n"
              f"  published {summary['published']:,}  delivered {summary['delivered']:,}  "
              f"duplicates dropped {summary['duplicates']:,}\n"
              f"  gaps detected {summary['gaps']:,}: filled by re-request {summary['filled_rerequest']:,} messages, "
              f"by TCP replay {summary['filled_replay']:,} messages "
              f"({r.get('rerequests', 0):,} requests, {r.get('replay_sessions', 0)} replay sessions, "
              f"median gap closed in {1e3 * (r.get('recovery_seconds_median') or 0):.1f} ms)\n"
              f"  lost {summary['lost']:,}  stale {summary['stale']}  "
              f"book matches the venue's: {summary['book_matches']}\n"
              f"  STALE episodes {s['stale_episodes']} ({s['stale_seconds_total']:.3f} s in all, longest "
              f"{s['stale_seconds_longest']:.3f} s)")
        for name, ls in s["lines"].items():
            print(f"  line {name}: {ls['packets']:,} packets, first on {ls['first']:,} messages, "
                  f"{ls['duplicates']:,} duplicates, {ls['gaps']:,} gaps of its own")
        lat = latency_line(s)
        if lat:
            print("  " + lat)
    for name, error in feed.sink_failures:
        print(f"{PROG}: error: output {name} failed: {error}", file=sys.stderr)
    whole = summary["published"] == args.messages == summary["delivered"]  # the venue's whole day, all of it here
    ok = whole and summary["lost"] == 0 and summary["book_matches"] and not summary["stale"]
    return 1 if not ok else 3 if feed.sink_failures else 0
