"""`xdpfeed compare A B [-T text|json]`: two delivered streams (recorded ITCH files, dbn: files, captures
delivered through a Feed, or live ipc: / nats:// subscriptions) compared message by message: identical or
not, the first divergence decoded side by side, missing / extra / different counts by type, the books per
symbol, and which side was first where both carry receive times. Exit 0 identical, 1 different, 2 bad input."""

import json
import sys

PROG = "xdpfeed compare"


def add_arguments(p) -> None:
    p.add_argument("a", metavar="A", help="itch:FILE, dbn:FILE, pcap:FILE (or a file of those kinds), ipc:NAME, "
                   "nats://HOST:PORT/STREAM")
    p.add_argument("b", metavar="B", help="the other side, as A")
    p.add_argument("-T", dest="fmt", choices=("text", "json"), default="text", help="report format")
    p.add_argument("--idle-timeout", type=float, default=5.0, metavar="S",
                   help="a subscription ends after this long without data (default 5 s)")
    p.add_argument("-c", "--count", type=int, metavar="N", help="a subscription ends after N messages")
    p.add_argument("--seconds", type=float, metavar="S", help="subscriptions end after this long")
    p.add_argument("--overlap", action="store_true",
                   help="compare only the sequence numbers both sides cover (two live handlers started and "
                        "stopped at different moments); what either had outside is reported, not counted")
    p.add_argument("--no-book", action="store_true", help="do not compare the books the two sides build")


def _text(r: dict) -> str:
    a, b = r["a"], r["b"]
    lines = [f"A {a['name']}: {a['messages']:,} messages{'' if a['sequenced'] else ' (by position)'}",
             f"B {b['name']}: {b['messages']:,} messages{'' if b['sequenced'] else ' (by position)'}",
             ("IDENTICAL" if r["identical"] else "DIFFERENT") + f" (aligned by {r['aligned_by']}; {r['compared']:,} "
             f"compared): missing from B {r['missing']:,}, extra in B {r['extra']:,}, different {r['different']:,}"]
    for what in ("missing", "extra", "different"):
        if r["by_type"][what]:
            lines.append(f"  {what} by type: " + ", ".join(f"{t} {n:,}" for t, n in sorted(r["by_type"][what].items())))
    o = r.get("overlap")
    if o:
        lines.append(f"overlap: sequence numbers {o['first_seq']:,}..{o['last_seq']:,}; outside it A had {o['a']:,}, "
                     f"B {o['b']:,}")
    f = r["first_divergence"]
    if f:
        fields = f" (fields: {', '.join(f['fields'])})" if f["fields"] else ""
        lines.append(f"first divergence at {f['seq']:,}{fields}")
        lines.append(f"  A: {json.dumps(f['a'])}")
        lines.append(f"  B: {json.dumps(f['b'])}")
    bk = r.get("book")
    if bk:
        lines.append(f"books: {'identical' if bk['identical'] else 'DIFFERENT'} ({bk['symbols_different']:,} of "
                     f"{bk['symbols']:,} symbols differ" + (f": {', '.join(bk['examples'])}" if bk["examples"] else "")
                     + ")")
    lat = r.get("latency")
    if lat:
        p = lat["b_minus_a_ns"]
        lines.append(f"receive times ({lat['messages']:,} messages): A first {lat['a_first']:,}, B first "
                     f"{lat['b_first']:,}, same {lat['same_time']:,}; B − A p1 {p['p1']:,} p50 {p['p50']:,} "
                     f"p99 {p['p99']:,} ns")
    return "\n".join(lines)


def run(args) -> int:
    from xdpfeed.multicast.compare import diff, streams

    try:
        a, b = streams.load_pair(args.a, args.b, args.idle_timeout, args.count, args.seconds)
        r = diff.compare(a, b, book=not args.no_book, overlap=args.overlap)
    except streams.CompareError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(r, sort_keys=True) if args.fmt == "json" else _text(r))
    return 0 if r["identical"] else 1
