"""`xdpfeed simulate`: run the simulated venue from the command line.

Owns the subcommand's flags (`add_arguments`) and its top level (`run`): build a VenueConfig from the
flags (the SoupBinTCP password comes from $XDPFEED_PASSWORD, never from a flag), start the venue, print
one line with its addresses on stdout, progress on stderr, keep the recovery servers up for --linger
seconds after End of Session, then print a summary (text, or one JSON object with -T json; with -T json
the address line is a JSON object too). SIGINT and SIGTERM (explicit handlers, so SIGINT works even in a
process started with it ignored) end the run early, still with the summary. A bad value is one line on
stderr naming the flag, exit 2.
"""

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

from xdpfeed.multicast.exchange.publisher import PublishError
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.exchange.venue import DEFAULT_USER, ConfigError, Venue, VenueConfig
from xdpfeed.multicast.feed.stop import StopOnSignal

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_PASSWORD = "xdpfeed"
PROGRESS_S = 1.0
STOP_POLL_S = 0.05  # how often the progress loop looks at the stop flag
PROG = "xdpfeed simulate"
FLAGS = {  # VenueConfig field -> the flag that sets it
    "messages": "--messages", "rate": "--rate", "seed": "--seed", "session": "--session", "line_a": "--line-a",
    "line_b": "--line-b", "iface_addr": "--iface-addr", "loss_a": "--loss-a", "loss_b": "--loss-b",
    "burst_loss": "--burst-loss", "bursts": "--bursts", "reorder": "--reorder", "duplicate": "--duplicate",
    "replay_port": "--replay-port", "request_port": "--request-port", "users": "--user",
    "start_delay": "--start-delay", "replay_host": "--bind", "request_host": "--bind",
    "recovery_outage": "--recovery-outage", "glimpse_port": "--glimpse-port", "start_seq": "--start-seq",
}


def _group_port(text: str) -> tuple[str, int]:
    group, sep, port = text.rpartition(":")
    if not sep or not group or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected GROUP:PORT (e.g. 239.192.1.1:30001), not {text!r}")
    return group, int(port)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, not {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `xdpfeed simulate` on `parser`."""
    d = VenueConfig()
    a = parser.add_argument
    a("--messages", type=int, default=d.messages, metavar="N",
      help=f"messages in the synthetic day (default {d.messages})")
    a("--rate", type=float, default=d.rate, metavar="MSGS_PER_S", help="publishing rate; 0 = as fast as possible")
    a("--seed", type=int, default=d.seed, metavar="S", help="seed of the day and of every fault (default 1)")
    a("--session", default=d.session, metavar="NAME", help=f"session id, 1..10 characters (default {d.session})")
    a("--line-a", type=_group_port, default="{}:{}".format(*d.line_a), metavar="GROUP:PORT",
      help="line A (default %(default)s)")
    a("--line-b", type=_group_port, default="{}:{}".format(*d.line_b), metavar="GROUP:PORT",
      help="line B (default %(default)s)")
    a("--iface-addr", default=d.iface_addr, metavar="ADDR", help="local address to send multicast from "
      "(default 127.0.0.1: loopback)")
    a("--loss-a", type=float, default=0.0, metavar="P", help="probability a packet is lost on line A")
    a("--loss-b", type=float, default=0.0, metavar="P", help="probability a packet is lost on line B")
    a("--burst-loss", type=int, default=0, metavar="N", help="messages lost on both lines at once, per burst "
      "(rounded up to whole packets)")
    a("--bursts", type=int, default=None, metavar="K", help="how many such bursts (default 1 with --burst-loss)")
    a("--reorder", type=float, default=0.0, metavar="P", help="probability a packet is sent after the next one")
    a("--duplicate", type=float, default=0.0, metavar="P", help="probability a packet is sent twice")
    a("--replay-port", type=int, default=0, metavar="P", help="SoupBinTCP replay server port (default: any free)")
    a("--request-port", type=int, default=0, metavar="P", help="MoldUDP64 re-request server port (default: any)")
    a("--stamp-time", action="store_true", help="every message's ITCH timestamp is the time it is sent (ns since "
      "midnight US Eastern): a handler with --venue-time measures the time on the wire")
    a("--start-seq", type=int, default=1, metavar="SEQ", help="publish from this sequence on, the venue met in "
      "the middle of its day (the messages before it are served by replay and GLIMPSE)")
    a("--glimpse-port", type=int, default=None, metavar="P", help="serve GLIMPSE 5.0 snapshots on this port (0: any "
      "free one; default: no GLIMPSE server)")
    a("--bind", default="127.0.0.1", metavar="ADDR",
      help="address the replay and re-request servers listen on (default 127.0.0.1)")
    a("--user", default=DEFAULT_USER, metavar="NAME",
      help=f"replay login name, 1..6 characters (default {DEFAULT_USER}); the password is $XDPFEED_PASSWORD")
    a("--day", metavar="FILE", help="publish this NASDAQ binary ITCH file (optionally .gz) instead of generating")
    a("--venue", choices=("nasdaq", "bx", "psx"), help="generate this venue's day: the venues of one --seed share "
      "their symbols (at venue locates) and quote near each other (multicast.exchange.venues); the session is the "
      "venue's unless --session is given")
    a("--recovery-outage", type=_seconds, default=0.0, metavar="SECONDS",
      help="take both recovery servers down for this long, from just before the first burst (default 0: never)")
    a("--start-delay", type=_seconds, default=0.0, metavar="SECONDS",
      help="wait this long after the servers are up before publishing (default 0)")
    a("--linger", type=_seconds, default=5.0, metavar="SECONDS",
      help="keep the recovery servers up this long after End of Session (default 5)")
    a("-T", dest="fmt", choices=("text", "json"), default="text", help="summary format")


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _load_day(path: str, session: str) -> DayStore:
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if gz:
        with gzip.open(path, "rb") as f:
            return DayStore(np.frombuffer(f.read(), dtype=np.uint8), session)
    return DayStore.from_file(path, session)


def _addresses(venue: Venue) -> dict:
    c = venue.config
    return {"session": venue.store.session.decode("ascii").rstrip(), "messages": venue.store.count,
            "line_a": f"{c.line_a[0]}:{c.line_a[1]}", "line_b": f"{c.line_b[0]}:{c.line_b[1]}",
            "iface_addr": c.iface_addr, "replay": "{}:{}".format(*venue.replay_address),
            "request": "{}:{}".format(*venue.request_address),
            **({"glimpse": "{}:{}".format(*venue.glimpse_address)} if venue.glimpse_server else {})}


def _text_summary(s: dict) -> str:
    out = [f"session {s['session']}: {s['published_messages']} of {s['messages']} messages published"
           + (", End of Session sent" if s["ended"] else ", stopped before End of Session")]
    for name, ln in s["lines"].items():
        out.append(f"line {name} {ln['group']}:{ln['port']}: {ln['packets_sent']} packets / {ln['messages_sent']} "
                   f"messages sent, {ln['packets_lost']} packets / {ln['messages_lost']} messages lost, "
                   f"{ln['duplicated']} duplicated, {ln['reordered']} reordered, {ln['heartbeats']} heartbeats, "
                   f"{ln['end_of_session']} end of session")
    runs = " ".join(f"[{f},{e})" for f, e in s["lost_on_both"]) or "none"
    out.append(f"lost on both lines: {s['lost_on_both_messages']} messages: {runs}")
    for key, title in (("request_server", "re-request server"), ("replay_server", "replay server")):
        out.append(f"{title}: " + " ".join(f"{k}={v}" for k, v in s[key].items()))
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    """Run the venue as the flags say; returns the exit status."""
    password = os.environ.get("XDPFEED_PASSWORD")
    if password is None:
        password = DEFAULT_PASSWORD
        print(f"{PROG}: warning: XDPFEED_PASSWORD is not set; the replay login password is {DEFAULT_PASSWORD!r}",
              file=sys.stderr)
    elif not 1 <= len(password) <= 10 or not password.isascii() or not password.isprintable() or " " in password:
        return _error("XDPFEED_PASSWORD must be 1..10 printable ASCII characters without spaces")
    bursts = args.bursts if args.bursts is not None else (1 if args.burst_loss > 0 else 0)
    try:
        config = VenueConfig(
            messages=args.messages, seed=args.seed, session=args.session, line_a=args.line_a, line_b=args.line_b,
            iface_addr=args.iface_addr, rate=args.rate, loss_a=args.loss_a, loss_b=args.loss_b,
            burst_loss=args.burst_loss, bursts=bursts, reorder=args.reorder, duplicate=args.duplicate,
            replay_port=args.replay_port, request_port=args.request_port, users={args.user: password},
            start_delay=args.start_delay, replay_host=args.bind, request_host=args.bind,
            recovery_outage=args.recovery_outage, glimpse_port=args.glimpse_port, glimpse_host=args.bind,
            start_seq=args.start_seq, stamp_time=args.stamp_time)
    except ConfigError as e:
        return _error(FLAGS.get(e.field, e.field) + str(e).removeprefix(e.field))
    store = None
    if args.venue and args.day:
        return _error("--venue generates the venue's day: give --day or --venue, not both")
    if args.venue:
        from xdpfeed.multicast.exchange import venues

        records, _ = venues.venue_day(args.venue, config.messages, seed=config.seed)
        session = config.session if args.session != VenueConfig().session else venues.session(args.venue, config.seed)
        store = DayStore(records, session)
    if args.day:
        try:
            store = _load_day(args.day, config.session)
        except (OSError, EOFError) as e:
            return _error(f"--day {args.day}: {getattr(e, 'strerror', None) or e}")
        except ValueError as e:
            return _error(f"--day {args.day}: not a NASDAQ binary ITCH file: {e}")
    try:
        venue = Venue(config, store)
    except ConfigError as e:
        return _error(FLAGS.get(e.field, e.field) + str(e).removeprefix(e.field))
    except PublishError as e:  # the sockets: "iface_addr ADDR: ..." or "line A GROUP:PORT: ..."
        flag = "--iface-addr" if e.strerror.startswith("iface_addr") else "--line-a / --line-b"
        return _error(f"{flag}: {e.strerror}")
    try:
        venue.start()
    except OSError as e:
        return _error(f"cannot start the recovery servers (--replay-port / --request-port / --glimpse-port): "
                      f"{e.strerror or e}")
    with StopOnSignal() as stop:  # explicit handlers: SIGINT works even when the process inherited it ignored
        try:
            addr = _addresses(venue)
            if args.fmt == "json":
                print(json.dumps(addr), flush=True)
            else:
                print("venue " + " ".join(f"{k}={v}" for k, v in addr.items()), flush=True)
            code = _follow(venue, args.linger, stop)
        finally:
            venue.stop()
    summary = venue.summary()
    print(json.dumps(summary) if args.fmt == "json" else _text_summary(summary), flush=True)
    return code


def _follow(venue: Venue, linger: float, stop: StopOnSignal) -> int:
    """Progress lines until End of Session has been sent, then linger (both cut short by SIGINT/SIGTERM:
    exit 128 + the signal); the exit status."""
    total = venue.store.count
    t0 = last_t = time.monotonic()
    last_n = 0
    try:
        while not venue.wait(STOP_POLL_S):
            if stop.flag:
                return 128 + stop.signum
            now, n = time.monotonic(), venue.publisher.published - 1
            if now - last_t >= PROGRESS_S:
                print(f"{PROG}: published {n}/{total} messages ({(n - last_n) / (now - last_t):.0f} msg/s)",
                      file=sys.stderr, flush=True)
                last_t, last_n = now, n
    except PublishError as e:
        return _error(str(e), EXIT_FAILED)
    print(f"{PROG}: published {total} messages, End of Session sent ({time.monotonic() - t0:.2f} s); recovery "
          f"servers stay up {linger:g} s", file=sys.stderr, flush=True)
    stop.sleep(linger)
    return 128 + stop.signum if stop.flag else EXIT_OK
