"""The `xdpfeed` command line: argument parsing and the subcommands' top level.

Errors are one line on stderr: usage and input-open errors exit 2; an input found damaged part-way
exits 1 after everything before the damage was processed and printed.
"""

import argparse
import atexit
import os
import signal
import sys
import time

from xdpfeed.capture.errors import CorruptInput, SourceError

EXIT_DAMAGED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _count(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"COUNT must be a positive integer, not {text!r}")
    return int(text)


def _threads(text: str) -> int:
    if not text.isdigit() or int(text) <= 0 or int(text) & (int(text) - 1):
        raise argparse.ArgumentTypeError(f"--threads takes a power of two (1, 2, 4, ...), not {text!r}")
    return int(text)


def _types(text: str) -> str:
    """Type letters; checked against ITCH's or OUCH's types once the input's protocol is known."""
    letters = [t.strip() for t in text.split(",") if t.strip()]
    if not letters or any(len(t) != 1 for t in letters):
        raise argparse.ArgumentTypeError(f"--type takes message type letters separated by commas, not {text!r}")
    return "".join(letters)


def _itch_types(letters: str) -> str:
    from xdpfeed.multicast.itch.schema import TYPE_CODE, TYPES

    bad = [t for t in letters if t not in TYPE_CODE]
    if bad:
        raise SourceError(f"unknown ITCH message type {','.join(bad)!r}; known: {','.join(TYPES)}")
    return letters


def _group(text: str):
    from xdpfeed.multicast.itch.pipeline import parse_group

    try:
        return parse_group(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _input_arguments(p, what: str) -> None:
    p.add_argument("input", metavar="INPUT", nargs="?", help=f"{what}, or a source URI (e.g. dpdk:..., afxdp:...)")
    p.add_argument("--source", metavar="URI", help="read from this source instead of INPUT (the same as giving the "
                   "URI as INPUT): dpdk:..., afxdp:..., packet:..., udp:..., pcap:FILE")


def _one_input(args) -> None:
    """INPUT or --source, exactly one of them, into args.input."""
    if (args.input is None) == (args.source is None):
        raise SourceError("give INPUT or --source URI (one of them)")
    args.input = args.input if args.input is not None else args.source


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, the subcommand that will run is the only one whose arguments are defined (the
    others keep their names and help), so a command imports only what it needs."""

    def fill(name: str) -> bool:
        return only is None or only == name

    p = _Parser(prog="xdpfeed", description="NASDAQ TotalView-ITCH 5.0 / MoldUDP64 feed handler.")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error (anywhere on the line)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = sub.add_parser(
        "decode",
        help="decode a pcap/pcapng capture or a NASDAQ binary ITCH file",
        description="Decode ITCH 5.0 messages from a pcap/pcapng capture (MoldUDP64 over UDP) or a NASDAQ "
        "binary ITCH file (optionally .gz); the format is detected from the file's magic. A capture of "
        "SoupBinTCP order-entry sessions (mostly TCP) is decoded as OUCH, both directions in capture order.",
    )
    if fill("decode"):
        _decode_arguments(d)
    o = sub.add_parser(
        "orders", help="every order of the OUCH sessions in a capture: lifecycle and final state",
        description="Reassemble the SoupBinTCP sessions of a pcap/pcapng capture (both directions; TCP "
        "retransmissions and out-of-order segments handled), decode OUCH 4.2 or 5.0, and print each order's "
        "lifecycle and final state. Impossible transitions are reported as anomalies.",
    )
    if fill("orders"):
        from xdpfeed.multicast.cli import orders as cli_orders

        cli_orders.add_arguments(o)
    od = sub.add_parser(
        "orders-demo", help="OUCH order entry against the simulated gateway, then its ITCH feed into the handler",
        description="A seeded flow of OUCH orders over SoupBinTCP to the simulated gateway on loopback (with a "
        "disconnect and resume half-way), every order followed to its end, then the gateway's ITCH published on "
        "two lossy MoldUDP64 lines to the live handler, whose book must equal the open orders.",
    )
    if fill("orders-demo"):
        from xdpfeed.multicast.cli import orders_demo

        orders_demo.add_arguments(od)
    b = sub.add_parser(
        "book",
        help="replay a capture or ITCH file through the order book and print the final books",
        description="Build full-depth order books from a pcap/pcapng capture or a NASDAQ binary ITCH file and "
        "print, per stock, the top levels of each side (price as a raw integer, shares, orders) and the "
        "book's counts.",
    )
    if fill("book"):
        _book_arguments(b)
    r = sub.add_parser(
        "run", help="the live handler: lines A/B, gap recovery, order book",
        description="Receive a MoldUDP64 ITCH feed on lines A and B, deliver every message once and in order "
        "(arbitration, hold queue, recovery by MoldUDP64 re-request and SoupBinTCP replay), build the book, "
        "print a summary at the end (SIGINT/SIGTERM, --until-eos or --idle-timeout).",
    )
    if fill("run"):
        from xdpfeed.multicast.cli import run as cli_run

        cli_run.add_arguments(r)
    s = sub.add_parser(
        "simulate", help="a simulated venue: publish an ITCH day on lines A and B with faults, serve recovery",
        description="Publish a deterministic ITCH day as MoldUDP64 on two lines with loss, bursts, reordering and "
        "duplication, and serve recovery (SoupBinTCP replay, MoldUDP64 re-request) on loopback or an interface.",
    )
    if fill("simulate"):
        from xdpfeed.multicast.cli import simulate

        simulate.add_arguments(s)
    m = sub.add_parser(
        "demo", help="the simulated venue and the handler together on loopback, with loss, and a summary",
        description="Start the simulated venue and the live handler on loopback (no privileges needed), lose "
        "messages on both lines, recover them, and check the handler's book against the venue's.",
    )
    if fill("demo"):
        from xdpfeed.multicast.cli import demo

        demo.add_arguments(m)
    c = sub.add_parser(
        "capture", help="write what a source receives (AF_XDP by default) to pcapng",
        description="Capture frames with AF_XDP on IFACE (our XDP program passes everything but the given UDP "
        "groups on to the kernel), or from any --source URI, to a pcapng file with nanosecond timestamps.",
    )
    if fill("capture"):
        from xdpfeed.multicast.cli import capture as cli_capture

        cli_capture.add_capture_arguments(c)
    rp = sub.add_parser(
        "replay", help="send a capture's UDP payloads out of an interface, like tcpreplay",
        description="Send the UDP payloads of a pcap/pcapng capture to their original group:port from a kernel "
        "socket on IFACE, at the recorded speed, --pps N or --topspeed, --loop N times.",
    )
    if fill("replay"):
        from xdpfeed.multicast.cli import capture as cli_capture

        cli_capture.add_replay_arguments(rp)
    tl = sub.add_parser(
        "tail", help="print what a feed publishes (ipc:NAME, nats://.../STREAM), as decode prints it",
        description="Subscribe to what a feed publishes (an ipc: output on this host, or a nats: stream) and print "
        "each message as `decode` does, or a summary with the latency. Ends when the publisher goes (ipc:), at -c, "
        "--idle-timeout or SIGINT/SIGTERM; exit 1 when messages were missed (a slow subscriber).",
    )
    if fill("tail"):
        from xdpfeed.multicast.cli import tail

        tail.add_arguments(tl, _types, _count)
    br = sub.add_parser(
        "bridge", help="what a feed publishes (ipc:, nats://) to outputs, from another process",
        description="Read a subscription (ipc:NAME, nats://.../STREAM) and write it to outputs (--out, as run's): "
        "NATS publishing in a process of its own, or a stream recorded on another host. Exit 1 when messages "
        "were missed, 2 when something cannot be opened, 3 when an output failed or is incomplete.",
    )
    if fill("bridge"):
        from xdpfeed.multicast.cli import bridge

        bridge.add_arguments(br)
    lt = sub.add_parser(
        "latency", help="a latency file (run --latency-out) as a table, JSON or a percentile plot",
        description="Show the per-stage latency histograms a run wrote (--latency-out): the STAC-style table "
        "(p50, p90, p99, p99.9, p99.99, max per stage, in microseconds), -T json (nanoseconds), and with --plot an "
        "HdrHistogram percentile-distribution plot.",
    )
    if fill("latency"):
        from xdpfeed.multicast.cli import latency

        latency.add_arguments(lt)
    cmp_ = sub.add_parser(
        "compare", help="two delivered streams (ITCH or DBN files, captures, ipc:/nats:// subscriptions) compared",
        description="Compare two delivered streams message by message: identical or not, the first divergence "
        "decoded side by side, missing/extra/different counts by type, the books per symbol, and which side was "
        "first where both carry receive times. Exit 0 identical, 1 different, 2 bad input.",
    )
    if fill("compare"):
        from xdpfeed.multicast.cli import compare

        compare.add_arguments(cmp_)
    can = sub.add_parser(
        "canary", help="the go-live gate: the current and the new release side by side, compared",
        description="Run the current and the new release side by side on one feed config (without outputs), each "
        "publishing what it delivers to an ipc: service of its own; compare the two for a window, cut to the "
        "sequence numbers both delivered, and check the new release's metrics (SYNCHRONIZED, nothing lost). "
        "Exit 0 pass, 1 fail, 2 bad input.",
    )
    if fill("canary"):
        from xdpfeed.multicast.cli import canary

        canary.add_arguments(can)
    return p


def _decode_arguments(d) -> None:
    _input_arguments(d, "pcap, pcapng or ITCH binary file")
    d.add_argument("-T", dest="fmt", choices=("jsonl", "csv", "summary"), default="jsonl",
                   help="output: one JSON object per message (default), CSV, or a summary")
    d.add_argument("-c", dest="count", type=_count, default=None, metavar="COUNT",
                   help="stop after COUNT messages (after --type filtering)")
    d.add_argument("--group", dest="groups", type=_group, action="append", default=[], metavar="G:P",
                   help="only UDP to this multicast group and port (repeatable; captures only)")
    d.add_argument("--type", dest="types", type=_types, default=None, metavar="A,D,...",
                   help="only these ITCH (or OUCH) message types (comma-separated letters)")
    from xdpfeed.multicast.ouch.schema import VERSIONS

    d.add_argument("--ouch", choices=(*VERSIONS, "auto"), default=None,
                   help="decode the capture's SoupBinTCP sessions as OUCH 4.2 or 5.0 (auto: detect the version); a "
                   "mostly-TCP capture is decoded as OUCH without it")


def _book_arguments(b) -> None:
    _input_arguments(b, "pcap, pcapng or ITCH binary file")
    b.add_argument("--symbol", dest="symbols", action="append", default=[], metavar="SYM",
                   help="only this stock (repeatable); default every stock with live orders")
    b.add_argument("--depth", type=_count, default=5, metavar="N", help="levels per side (default 5)")
    b.add_argument("--queue", action="store_true",
                   help="with --symbol: also each level's orders in time priority (reference and shares, first in "
                   "line first)")
    b.add_argument("-T", dest="fmt", choices=("table", "json"), default="table", help="output format")
    b.add_argument("--bbo-out", metavar="FILE",
                   help="write every top-of-book change: CSV, or Parquet when FILE ends in .parquet")
    b.add_argument("--group", dest="groups", type=_group, action="append", default=[], metavar="G:P",
                   help="only UDP to this multicast group and port (repeatable; captures only)")
    b.add_argument("--venue", dest="venues", action="append", default=[], type=_venue, metavar="NAME=CAPTURE",
                   help="a venue's capture (repeatable, with --consolidated): each through a feed of its own")
    b.add_argument("--stats", action="store_true",
                   help="print to stderr how many messages the book applied and how fast (its compiled code loaded "
                   "before the clock starts, printing after it stops), its live orders and top-of-book events")
    b.add_argument("--threads", type=_threads, default=1, metavar="N",
                   help="build the books on N cores (a power of two; default 1): the stocks are split among them by "
                   "stock locate, each reading the whole input; the same books and counts, the top-of-book events "
                   "counted but not written (no --bbo-out)")
    b.add_argument("--consolidated", action="store_true",
                   help="with --venue: the consolidated book across the venues (best bid/offer with their venues, "
                   "merged depth), from the code the live handler runs")
    b.add_argument("--loop", choices=("auto", "exported", "numba"), default="auto",
                   help="how the book's compiled loop is run: exported (the same code, exported ahead of time into "
                   "a shared object and run without loading numba: about 0.25 s less start-up; exported on the "
                   "first run of each build of the code) or numba; auto (default): exported for a plain ITCH file "
                   "without --queue, else numba")


def _venue(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=CAPTURE (e.g. bx=bx.pcap), not {text!r}")
    return name, path


def _consolidated_book(args) -> int:
    """`book --venue NAME=CAPTURE ... --consolidated`: every capture through a Feed of its own in one loop
    (multicast.feed.feeds), then the consolidated view."""
    from xdpfeed.multicast.book import report as book_report
    from xdpfeed.multicast.feed import config as cfgmod
    from xdpfeed.multicast.feed.feeds import Feeds

    if args.input is not None or args.source is not None:
        raise SourceError("--venue takes the captures: give no INPUT or --source with it")
    if not args.consolidated:
        raise SourceError("--venue needs --consolidated (the consolidated book is what it shows)")
    for _, path in args.venues:
        if not os.path.isfile(path):
            raise SourceError(f"--venue {path}: no such file")
    try:
        cfg = cfgmod.feeds_from_dict({"feeds": [{"name": name, "line_a": f"pcap:{path}"}
                                                for name, path in args.venues]})
    except cfgmod.ConfigError as e:
        raise SourceError(f"--venue: {e}") from None
    with Feeds(cfg, metrics=None) as feeds:
        feeds.run()
        view = feeds.consolidated.view(args.depth)
        if args.symbols:
            missing = [s for s in args.symbols if s not in view]
            if missing:
                print(f"xdpfeed book: error: no quote for {', '.join(missing)} on any venue", file=sys.stderr)
                return EXIT_USAGE
            view = {s: view[s] for s in args.symbols}
        if args.fmt == "json":
            print(book_report.consolidated_json(view))
        else:
            print(book_report.consolidated_table(view, feeds.consolidated))
        damaged = [f"{f.name}: {w}" for f in feeds.feeds for w in [feeds.whys.get(f.name)] if w == "stale"]
    if damaged:
        print(f"xdpfeed book: error: captures that do not hold a whole session: {'; '.join(damaged)}", file=sys.stderr)
        return EXIT_DAMAGED
    return 0


def _early_storage(args):
    """For a file input: the book's storage (one per shard), made before its compiled code loads; for a file at
    least as large as that storage, also its pages being faulted in on the other core meanwhile
    (capture.huge_arrays.Prefaulting), which `handover()` must stop before the book is used. (None, None) for any
    other input."""
    path = args.input if args.source is None else None
    if args.venues or args.consolidated or path is None or not os.path.isfile(path):
        return None, None
    from xdpfeed.capture.huge_arrays import Prefaulting
    from xdpfeed.multicast.book import storage

    sizes = storage.ONE_BOOK if args.threads == 1 else storage.shard_sizes(args.threads)
    arrays = [storage.allocate(sizes) for _ in range(args.threads)]
    if os.path.getsize(path) < sum(a.nbytes for a in arrays):
        return arrays, None
    return arrays, Prefaulting([x for a in arrays for x in a])


def _exported_loops(args):
    """The book's exported loops (multicast.book.exported_loops) when this run goes through them, else None: --loop
    exported or auto, a plain ITCH file, no --queue (a level's queue is read by numba code) and no --venue. Exports
    them when this build of the code has not yet (that loads numba, once); when that fails, auto says so in one
    line and runs through numba, exported stops with the reason."""
    from xdpfeed.multicast.itch.input_format import detect, is_source_uri

    if args.loop == "numba" or args.venues or args.consolidated or args.queue or args.input is None:
        return None
    if is_source_uri(args.input) or not os.path.isfile(args.input) or detect(args.input) != "itch":
        if args.loop == "exported":
            raise SourceError(f"--loop exported reads a plain NASDAQ binary ITCH file; {args.input} is not one")
        return None
    from xdpfeed.multicast.book import exported_loops

    loops = exported_loops.load()
    if loops is None:
        from xdpfeed.multicast.book import export_build

        try:
            loops = exported_loops.load(export_build.build())
        except export_build.ExportError as e:
            if args.loop == "exported":
                raise SourceError(str(e)) from None
            print(f"xdpfeed book: note: {e}; the book runs through numba", file=sys.stderr)
    return loops


def _early_run(args):
    """The book's loop started on the file before numpy loads (multicast.book.early_start), for `xdpfeed book FILE`
    with one book on its exported loops and nothing to hand the events to; else None. Only what a file's first
    bytes say is checked here (not gzip, not a capture): detect() judges it once numpy is in, and this run is then
    joined and let go."""
    if (args.loop == "numba" or args.threads != 1 or args.venues or args.consolidated or args.queue or args.bbo_out
            or args.source is not None or args.input is None or not os.path.isfile(args.input)):
        return None
    from xdpfeed.capture.pcap_magic import sniff
    from xdpfeed.multicast.book import exported_loops
    from xdpfeed.multicast.itch.input_format import GZIP_MAGIC

    try:
        with open(args.input, "rb") as f:
            head = f.read(4)
    except OSError:
        return None  # said in detect()'s words below
    if len(head) < 4 or head.startswith(GZIP_MAGIC) or sniff(head) or (loops := exported_loops.load()) is None:
        return None
    from xdpfeed.multicast.book.early_start import EarlyRun

    return EarlyRun(loops, args.input)


def _book(args) -> int:
    early = _early_run(args)  # first, before numpy loads (60 ms) on this core while the loop runs on the other
    try:
        return _book_built(args, early)
    finally:
        if early is not None:
            early.join()  # its memory is the book's: the loop ends before the book is let go


def _book_built(args, early) -> int:
    # before numba loads: importing it and loading the book's code take 0.3 s, on one core
    arrays, prefaulting = (None, None) if early is not None else _early_storage(args)
    from xdpfeed.multicast.book import report as book_report
    from xdpfeed.multicast.itch.input_format import detect, input_size

    if args.venues or args.consolidated:
        if not args.venues:
            raise SourceError("--consolidated needs the venues' captures: --venue NAME=CAPTURE (repeatable)")
        if args.threads > 1:
            raise SourceError("--threads splits one input's stocks among cores; with --venue each capture goes "
                              "through a feed of its own")
        return _consolidated_book(args)

    if args.bbo_out and args.bbo_out.endswith(".parquet"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            print("xdpfeed book: error: --bbo-out *.parquet needs pyarrow (pip install pyarrow); "
                  "use a .csv name for CSV", file=sys.stderr)
            return EXIT_USAGE
    if args.queue and not args.symbols:
        print("xdpfeed book: error: --queue lists the orders of each level shown: name the stocks with --symbol",
              file=sys.stderr)
        return EXIT_USAGE
    if args.threads > 1 and args.bbo_out:
        print("xdpfeed book: error: --bbo-out writes the top-of-book changes in the feed's order, which --threads "
              "does not keep across stocks: use one thread", file=sys.stderr)
        return EXIT_USAGE
    _one_input(args)
    fmt = detect(args.input)  # unreadable or unknown input: one line and exit 2 before any output file is made
    loops = early.loops if early is not None else _exported_loops(args)
    if early is not None:
        from xdpfeed.multicast.book.exported import ExportedBook
        from xdpfeed.multicast.itch.mapped_file import records_ended

        buf, storage_arrays, state = early.views()
        book = ExportedBook(loops, storage_arrays, state=state)

        def replay():
            pos, status, book.n_events = early.join()
            waited[0] = time.perf_counter() - early.finished  # the run was over while the command still loaded
            if status != 0:  # the storage needs room: grown, and the rest of the file applied
                pos = book.apply_stream(buf, pos, end_of_session=True)
            records_ended(args.input, buf, pos)
            book.flush_events()
    elif loops is not None:
        from xdpfeed.multicast.book.exported import ExportedBook
        from xdpfeed.multicast.book.sharded import ShardedBook
        from xdpfeed.multicast.itch.mapped_file import consume_mapped

        book = (ExportedBook(loops, arrays[0]) if args.threads == 1
                else ShardedBook(args.threads, arrays=arrays, loops=loops))

        def replay():
            consume_mapped(args.input, lambda buf: book.apply_stream(buf, end_of_session=True))
            book.flush_events()
    else:
        from xdpfeed.multicast.book.order_book import OrderBook
        from xdpfeed.multicast.book.sharded import ShardedBook
        from xdpfeed.multicast.itch.pipeline import replay_into_book, warm_book

        book = (OrderBook(arrays=arrays[0] if arrays else None) if args.threads == 1
                else ShardedBook(args.threads, arrays=arrays))

        def replay():
            replay_into_book(args.input, book, args.groups, fmt=fmt)
    writer = None
    if args.bbo_out:
        try:
            writer = book_report.EventWriter(args.bbo_out, book)
        except OSError as e:
            raise SourceError(f"{args.bbo_out}: {e.strerror}") from None
        book.on_events = writer
    damaged = None
    if loops is None:
        warm_book(fmt, book)  # writes none of the storage: prefaulting may go on meanwhile
    # The book's pages are populated only for an input that fills most of the storage (or a live one). Whole runs, 5
    # alternating pairs, each after a few seconds idle (on a VM whose free memory goes back to the host, memory taken
    # anew costs more): a 10M-message day (305 MB) 1.14 s with it, 1.37 s without; a 2M-message one (61 MB) 0.53 s
    # with it, 0.47 s without; 2,000 messages 0.49 s with it, 0.33 s without. A large file's pages were being faulted
    # in since the start (_early_storage); the rest now from a thread, beside the loop.
    if prefaulting is not None:
        prefaulting.handover()
    elif early is None and arrays is None and (not (size := input_size(args.input)) or size >= book.storage_bytes):
        book.prefault(background=True)
    # the clock of --stats: the file's pages, every message, any page of the book not yet in (not the time a run
    # started early had ended and waited for the command to join it)
    t0, waited = (early.started if early is not None else time.perf_counter()), [0.0]
    try:
        replay()
    except CorruptInput as e:
        book.flush_events()
        damaged = e
    finally:
        seconds = time.perf_counter() - t0 - waited[0]
        if writer is not None:
            writer.close()
    if args.stats:
        st = book.stat()
        rate = st["messages"] / max(seconds, 1e-9) / 1e6
        print(f"xdpfeed book: {st['messages']:,} messages in {seconds:.3f} s ({rate:.2f}M msg/s); "
              f"{st['live_orders']:,} live orders, {st['bbo_events']:,} top-of-book events; "
              f"{'exported' if loops is not None else 'numba'} loop", file=sys.stderr)
    try:
        locates = book_report.selected_locates(book, args.symbols)
    except ValueError as e:
        print(f"xdpfeed book: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    render = book_report.as_json if args.fmt == "json" else book_report.as_table
    print(render(book, locates, args.depth, queues=args.queue))
    if damaged is not None:
        print(f"xdpfeed book: error: {damaged}", file=sys.stderr)
        return EXIT_DAMAGED
    return 0


class _FileProgress:
    """On a terminal, a line on stderr rewritten a few times a second while a large input decodes:
    bytes read of the file's size, messages, rate."""

    def __init__(self, run):
        import time

        self.run, self.clock = run, time.monotonic
        self.t0 = self.clock()
        self.last = self.t0 - 1.0  # the first batch shows at once
        self.shown = False

    def tick(self):
        now = self.clock()
        if now - self.last < 0.25:
            return
        self.last = now
        c = self.run.counters
        from xdpfeed.multicast.wire import counters as C

        n = int(c[C.DECODED])
        done = int(c[C.FRAME_BYTES]) if self.run.format == "pcap" else 0
        share = f"{100 * done / self.run.input_bytes:5.1f}% " if done else ""
        rate = n / max(now - self.t0, 1e-9) / 1e6
        print(f"\rxdpfeed decode: {share}{n:,} messages, {rate:.1f}M msg/s", end="",
              file=sys.stderr, flush=True)
        self.shown = True

    def done(self):
        if self.shown:
            print(file=sys.stderr)


def _decode(args) -> int:
    import numpy as np

    from xdpfeed.multicast.itch import output
    from xdpfeed.multicast.itch.input_format import detect, is_source_uri
    from xdpfeed.multicast.itch.pipeline import Decode
    from xdpfeed.multicast.itch.schema import N_TYPES, TYPE_CODE, TYPES
    from xdpfeed.multicast.ouch.detect import is_tcp_capture

    _one_input(args)
    if args.ouch is not None or (detect(args.input) == "pcap" and not is_source_uri(args.input)
                                 and is_tcp_capture(args.input)):
        from xdpfeed.multicast.cli import orders as cli_orders

        return cli_orders.decode_ouch(args)
    run = Decode(args.input, groups=args.groups)
    args.types = _itch_types(args.types) if args.types else TYPES
    wanted = output.type_codes(args.types)
    wanted_mask = np.zeros(N_TYPES, dtype=bool)
    wanted_mask[list(wanted)] = True
    remaining = args.count if args.count is not None else float("inf")
    per_type = np.zeros(N_TYPES, dtype=np.int64)
    printed = 0
    out = sys.stdout
    writer = output.csv_writer(out, output.csv_columns(args.types)) if args.fmt == "csv" else None
    with_origin = run.format == "pcap"
    damaged = None
    progress = _FileProgress(run) if sys.stderr.isatty() else None
    try:
        for _, tables in run.batches():
            if progress is not None:
                progress.tick()
            names = run.sessions.names()
            if args.fmt == "summary" and remaining >= tables.count:  # every message of the batch counts
                got = tables.rows * wanted_mask
                per_type += got
                n = int(got.sum())
            elif args.fmt == "summary":
                ot = tables.order_type[: tables.count]
                sel = wanted_mask[ot]
                if sel.sum() > remaining:
                    cut = int(np.flatnonzero(sel)[int(remaining) - 1]) + 1
                    ot, sel = ot[:cut], sel[:cut]
                got = np.bincount(ot[sel], minlength=N_TYPES)
                per_type += got
                n = int(got.sum())
            else:
                n = 0
                for d in output.messages(tables, names, with_origin, wanted, remaining):
                    if writer is not None:
                        writer.writerow(d)
                    else:
                        out.write(output.jsonl_line(d) + "\n")
                    per_type[TYPE_CODE[d["type"]]] += 1
                    n += 1
            printed += n
            remaining -= n
            if remaining <= 0:
                break
    except CorruptInput as e:
        damaged = e
    if progress is not None:
        progress.done()
    if args.fmt == "summary":
        out.write(output.summary(run, per_type, printed) + "\n")
    out.flush()
    skipped = output.skipped_line(run.counters)
    if skipped and args.fmt != "summary":
        print(f"xdpfeed decode: {skipped}", file=sys.stderr)
    if damaged is not None:
        print(f"xdpfeed decode: error: {damaged}", file=sys.stderr)
        return EXIT_DAMAGED
    return 0


def _orders(args) -> int:
    from xdpfeed.multicast.cli import orders as cli_orders

    return cli_orders.run_orders(args)


def _orders_demo(args) -> int:
    from xdpfeed.multicast.cli import orders_demo

    return orders_demo.run(args)


def _run(args) -> int:
    from xdpfeed.multicast.cli import run as cli_run

    return cli_run.run(args)


def _simulate(args) -> int:
    from xdpfeed.multicast.cli import simulate

    return simulate.run(args)


def _demo(args) -> int:
    from xdpfeed.multicast.cli import demo

    return demo.run(args)


def _capture(args) -> int:
    from xdpfeed.multicast.cli import capture as cli_capture

    return cli_capture.run_capture(args)


def _replay(args) -> int:
    from xdpfeed.multicast.cli import capture as cli_capture

    return cli_capture.run_replay(args)


def _bridge(args) -> int:
    from xdpfeed.multicast.cli import bridge

    return bridge.run(args)


def _compare(args) -> int:
    from xdpfeed.multicast.cli import compare

    return compare.run(args)


def _canary(args) -> int:
    from xdpfeed.multicast.cli import canary

    return canary.run(args)


def _latency(args) -> int:
    from xdpfeed.multicast.cli import latency

    return latency.run(args)


def _tail(args) -> int:
    from xdpfeed.multicast.cli import tail

    return tail.run(args, _itch_types)


COMMANDS = {"decode": _decode, "book": _book, "orders": _orders, "orders-demo": _orders_demo, "run": _run,
            "simulate": _simulate, "demo": _demo, "capture": _capture, "replay": _replay, "tail": _tail,
            "bridge": _bridge, "latency": _latency, "compare": _compare,
            "canary": _canary}


QUICK_EXIT = {"book", "decode"}  # batch commands whose every output is written and closed when they return


def _command_of(argv: list[str]) -> str | None:
    """The subcommand: the first word that is not an option (--debug may come before it)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, before or after the subcommand
    argv = [a for a in argv if a != "--debug"]
    first = _command_of(argv)
    args = build_parser(only=first if first in COMMANDS else None).parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SourceError as e:
        if debug:
            raise
        print(f"xdpfeed {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # Reader went away (e.g. `| head`): stop quietly, as cat and tshark do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except OSError as e:  # the environment: a file, a device, a permission
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"xdpfeed {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a bug: one line here, the traceback with --debug
        if debug:
            raise
        print(f"xdpfeed {args.command}: internal error: {type(e).__name__}: {e} (run with --debug for the "
              "traceback)", file=sys.stderr)
        return EXIT_DAMAGED


def cli() -> None:
    """The `xdpfeed` console script (and `python -m xdpfeed.multicast.cli`): main(), then exit with its status.
    After `book` and `decode` the process ends without tearing the interpreter down: the atexit handlers run
    (logging's flush among them), stdout and stderr are flushed, then os._exit. Freeing numba's compiled code,
    every module and the mapped input took 60-130 ms of a 1.1-1.3 s `xdpfeed book` on a 10M-message day here
    (7-10 ms without), for memory the kernel takes back at exit anyway. Other commands may leave threads or
    objects whose finalizers matter, and exit normally."""
    rc = main()
    if _command_of(sys.argv[1:]) not in QUICK_EXIT:
        sys.exit(rc)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away during the last write: as main() answers it
        rc = 128 + signal.SIGPIPE
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(rc)


if __name__ == "__main__":
    cli()
