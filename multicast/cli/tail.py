"""`xdpfeed tail ipc:NAME|nats://HOST:PORT,.../STREAM [-T jsonl|csv|summary] [--type A,D] [-c N]
[--from SEQ] [--idle-timeout S]`: print what a feed publishes, as `decode` prints it.

A subscriber (multicast.sinks.subscriber) reads the batches; each is decoded once and printed message by
message (JSON lines with `session`, `seq`, `type`, the header and the fields; or CSV), or only counted
(`-T summary`: messages by type, batches, gaps, and the publish → receive latency). It ends at `-c`
messages, when the publisher has gone (ipc:, after its last batch), after `--idle-timeout` seconds without
data, or at SIGINT/SIGTERM. A nats: stream is read from its start, or `--from SEQ` (message SEQ of its
latest session, or `new`), then followed live. Exit 0; 1 when it fell behind and missed messages (said on
stderr); 2 when the subscription cannot be opened (one line).
"""

import sys

import numpy as np

from xdpfeed.multicast.feed.stop import StopOnSignal
from xdpfeed.multicast.itch import output
from xdpfeed.multicast.itch.schema import MESSAGES, N_TYPES, TYPE_CODE, TYPES

PROG = "xdpfeed tail"


def add_arguments(p, types_type, count_type) -> None:
    p.add_argument("uri", metavar="URI", help="what to subscribe to: ipc:NAME or nats://HOST:PORT[,...]/STREAM")
    p.add_argument("--from", dest="start", default=None, metavar="SEQ|new",
                   help="nats: start at message SEQ of the stream's latest session, or only new messages "
                        "(default: the whole stream)")
    p.add_argument("-T", dest="fmt", choices=("jsonl", "csv", "summary"), default="jsonl",
                   help="one JSON object per message (default), CSV, or a summary at the end")
    p.add_argument("-c", dest="count", type=count_type, default=None, metavar="COUNT",
                   help="stop after COUNT messages (after --type filtering)")
    p.add_argument("--type", dest="types", type=types_type, default=None, metavar="A,D,...",
                   help="only these ITCH message types (comma-separated letters)")
    p.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                   help="end after this long without data (default: until the publisher goes)")


def run(args, itch_types) -> int:
    from xdpfeed.multicast.sinks.subscriber import Subscriber, SubscriberError

    types = itch_types(args.types) if args.types else TYPES
    wanted = output.type_codes(types)
    remaining = args.count if args.count is not None else float("inf")
    per_type = np.zeros(N_TYPES, dtype=np.int64)
    writer = output.csv_writer(sys.stdout, output.csv_columns(types)) if args.fmt == "csv" else None
    opts = {"idle_timeout": args.idle_timeout}
    if args.start is not None:
        if not args.uri.startswith("nats:"):
            print(f"{PROG}: error: --from is for nats: streams (an ipc: service has only its latest batches)",
                  file=sys.stderr)
            return 2
        if args.start != "new" and not (args.start.isdigit() and int(args.start) > 0):
            print(f"{PROG}: error: --from: expected a sequence number or new, not {args.start!r}", file=sys.stderr)
            return 2
        opts["start_seq"] = args.start if args.start == "new" else int(args.start)
    try:
        sub = Subscriber(args.uri, **opts)
    except SubscriberError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    with sub, StopOnSignal() as stop:
        for batch in sub:
            tables = batch.decoded()
            if args.fmt == "summary":
                ot = tables.order_type[: tables.count]
                sel = np.isin(ot, list(wanted))
                picked = np.flatnonzero(sel)
                if picked.size > remaining:
                    cut = int(picked[int(remaining) - 1]) + 1
                    ot, sel = ot[:cut], sel[:cut]
                got = np.bincount(ot[sel], minlength=N_TYPES)
                per_type += got
                remaining -= int(got.sum())
            else:
                for d in output.messages(tables, [batch.session], True, wanted, remaining):
                    if writer is not None:
                        writer.writerow(d)
                    else:
                        sys.stdout.write(output.jsonl_line(d) + "\n")
                    per_type[TYPE_CODE[d["type"]]] += 1
                    remaining -= 1
            if remaining <= 0 or stop.flag:
                break
        stats = sub.stats()
        latency = np.asarray(sub.latency_ns, dtype=np.int64)
    if args.fmt == "summary":
        print(f"subscription: {args.uri}")
        print(f"batches: {stats['batches']}  messages: {stats['messages']}  next_seq: {stats['next_seq']}  "
              f"gaps: {stats['gaps']}  missed: {stats['missed']}  duplicates skipped: {stats['duplicates']}")
        if latency.size:
            p50, p99, p999 = np.percentile(latency, [50, 99, 99.9]) / 1e3
            print(f"publish → receive per batch: p50 {p50:.1f} µs  p99 {p99:.1f} µs  p99.9 {p999:.1f} µs  "
                  f"max {latency.max() / 1e3:.1f} µs")
        print("by type:")
        for t in TYPES:
            if per_type[TYPE_CODE[t]]:
                print(f"  {t}  {MESSAGES[t][0]:<50} {int(per_type[TYPE_CODE[t]])}")
    sys.stdout.flush()
    if stats["missed"]:
        print(f"{PROG}: fell behind: {stats['missed']} messages missed in {stats['gaps']} gaps", file=sys.stderr)
        return 1
    return 0
