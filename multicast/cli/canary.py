"""`xdpfeed canary --new BIN [--current BIN] -c CANARY.toml`: the go-live gate (multicast.compare.canary). The
current and the new release run side by side on the canary config for a window, their delivered streams are
compared, and the new one's metrics must say SYNCHRONIZED with nothing lost. Exit 0 pass, 1 fail, 2 bad input.
"""

import json
import sys

PROG = "xdpfeed canary"


def add_arguments(p) -> None:
    p.add_argument("--new", required=True, metavar="BIN", help="the new release's bin/xdpfeed")
    p.add_argument("--current", metavar="BIN", help="the current release's bin/xdpfeed (none on a first install: "
                   "only the new release's metrics are checked)")
    p.add_argument("-c", "--config", required=True, metavar="CANARY.toml",
                   help="the feed config both run, without outputs (the production ones must not be written twice)")
    p.add_argument("--seconds", type=float, default=10.0, help="the comparison window (default 10 s)")
    p.add_argument("--start-timeout", type=float, default=180.0, metavar="S",
                   help="how long each release may take to start publishing (default 180 s: a first run compiles)")
    p.add_argument("--min-messages", type=int, default=1, metavar="N",
                   help="the new release must deliver at least this many in the window (default 1)")
    p.add_argument("--no-book", action="store_true", help="do not compare the books the two releases build")
    p.add_argument("-T", dest="fmt", choices=("text", "json"), default="text", help="report format")


def _text(r: dict) -> str:
    lines = [("PASS" if r["pass"] else "FAIL") + f": canary gate over {r['seconds']:g} s"]
    lines += [f"  {why}" for why in r["reasons"]]
    for role in ("current", "new"):
        rel = r.get(role)
        if rel:
            m = rel["metrics"] or {}
            lines.append(f"{role}: {rel['command']}: state {m.get('state')}, delivered {m.get('delivered')}, "
                         f"lost {m.get('lost')}")
    c = r["compare"]
    if c:
        o = c["overlap"]
        lines.append(f"compared {c['compared']:,} messages (sequence numbers {o['first_seq']:,}..{o['last_seq']:,}): "
                     + ("identical" if c["identical"] else
                        f"missing {c['missing']:,}, extra {c['extra']:,}, different {c['different']:,}"))
        f = c["first_divergence"]
        if f:
            lines.append(f"  first divergence at sequence {f['seq']:,}")
            lines.append(f"    current: {json.dumps(f['a'])}")
            lines.append(f"    new:     {json.dumps(f['b'])}")
    return "\n".join(lines)


def run(args) -> int:
    from xdpfeed.multicast.compare import canary, streams

    try:
        r = canary.gate(args.new, args.config, args.current, seconds=args.seconds, start_timeout=args.start_timeout,
                        min_messages=args.min_messages, book=not args.no_book)
    except (canary.GateError, streams.CompareError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(r, sort_keys=True) if args.fmt == "json" else _text(r))
    return 0 if r["pass"] else 1
