"""`xdpfeed bridge SOURCE --out URI [--out URI ...]`: what a feed publishes, read as a subscriber and written to
outputs by another process. `xdpfeed run --out ipc:itch` plus `xdpfeed bridge ipc:itch --out nats://...` puts
NATS publishing in a process of its own, so that its Python work never competes with the handler for the
interpreter (the handler pays only the ipc: output's ~10 ns per message); `xdpfeed bridge nats://.../ITCH --out
dbn:day.dbn` records a stream on another host.

SOURCE is any subscription (`ipc:NAME`, `nats://.../STREAM[?...]`, multicast.sinks.subscriber); every output
gets the batches as a feed's consumers do, and with `--top-of-book` the top-of-book events too. The bridge
ends when the source has ended (an ipc: publisher gone, everything read), after `--idle-timeout` seconds
without data, or at SIGINT/SIGTERM. An ipc: source's samples live in the handler's shared memory: a handler
that exits takes with it what the bridge had not read yet (the bridge's count says how far it got), so a
handler that stops on purpose should stop after its bridge has caught up. Exit 0; 1 when the subscription
missed messages (they were overwritten before they were read: the outputs have the gap); 2 when the source or
an output cannot be opened (one line); 3 when an output failed or could not publish everything."""

import logging
import sys

from xdpfeed.multicast.feed.stop import StopOnSignal

PROG = "xdpfeed bridge"


def add_arguments(p) -> None:
    p.add_argument("source", metavar="SOURCE", help="what to read: ipc:NAME or nats://HOST:PORT[,...]/STREAM")
    p.add_argument("--out", action="append", default=[], required=True, metavar="URI",
                   help="an output (repeatable): itch:, dbn:, parquet:, ipc:, nats://")
    p.add_argument("--name", default=None, help="the feed's name for nats: subjects (default: the source's name)")
    p.add_argument("--from", dest="start", default=None, metavar="SEQ|new",
                   help="nats: source: start at message SEQ of its latest session, or only new messages")
    p.add_argument("--top-of-book", action="store_true", help="forward the source's top-of-book events too")
    p.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                   help="end after this long without data (default: until the source ends)")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")


def run(args) -> int:
    from xdpfeed.multicast.sinks.base import SinkError
    from xdpfeed.multicast.sinks.subscriber import Subscriber, SubscriberError
    from xdpfeed.multicast.sinks.uri import open_sink

    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="xdpfeed: %(message)s",
                        stream=sys.stderr)
    opts = {"idle_timeout": args.idle_timeout, "top_of_book": args.top_of_book}
    if args.start is not None:
        if not args.source.startswith("nats:") or not (args.start == "new" or args.start.isdigit()):
            print(f"{PROG}: error: --from takes a sequence number or new, for a nats: source", file=sys.stderr)
            return 2
        opts["start_seq"] = args.start if args.start == "new" else int(args.start)
    name = args.name or _name_of(args.source)
    sinks = []
    try:  # outputs first: what the source publishes meanwhile is not missed while they connect
        for uri in args.out:
            sinks.append(open_sink(uri, feed=name))
        sub = Subscriber(args.source, **opts)
    except (SubscriberError, SinkError) as e:
        for s in sinks:
            s.close()
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    failed: dict[str, str] = {}
    with sub, StopOnSignal() as stop:
        for batch in sub:
            _each(sinks, failed, "on_messages", batch)
            if args.top_of_book:
                while (ev := _events(sub)) is not None:
                    _each(sinks, failed, "on_top_of_book", ev)
            if stop.flag:
                break
        stats = sub.stats()
    for s in sinks:
        try:
            s.close()
        except Exception as e:  # noqa: BLE001 — a sink that cannot finish is a failed sink
            failed.setdefault(s.name, f"{type(e).__name__}: {e}")
    incomplete = [s for s in sinks if s.stats().get("dropped_messages") or s.stats().get("unpublished")]
    if not args.quiet:
        print(f"{PROG}: {stats['messages']:,} messages in {stats['batches']:,} batches from {args.source}, "
              f"gaps {stats['gaps']}, missed {stats['missed']:,}", file=sys.stderr)
    for s in incomplete:
        st = s.stats()
        print(f"{PROG}: error: output {s.name} is incomplete: {st['dropped_messages']:,} messages dropped past its "
              f"buffer, {st['unpublished']:,} not confirmed at the end", file=sys.stderr)
    for uri, why in failed.items():
        print(f"{PROG}: error: output {uri} failed: {why}", file=sys.stderr)
    if failed or incomplete:
        return 3
    return 1 if stats["missed"] else 0


def _name_of(source: str) -> str:
    if source.startswith("ipc:"):
        return source[4:]
    return source.rpartition("/")[2].partition("?")[0].lower() or "feed"


def _events(sub):
    got = sub.top_of_book(0.0) if hasattr(sub, "top_of_book") else None
    return got[1] if isinstance(got, tuple) else got


def _each(sinks, failed, callback, arg) -> None:
    """Call every output still working; one that raises is reported once and detached."""
    for s in sinks:
        if s.name in failed or not hasattr(s, callback):
            continue
        try:
            getattr(s, callback)(arg)
        except Exception as e:  # noqa: BLE001 — reported and detached, as the Feed does with a failing sink
            failed[s.name] = f"{type(e).__name__}: {e}"
            logging.getLogger("xdpfeed").error("output %s failed: %s; detached", s.name, failed[s.name])
