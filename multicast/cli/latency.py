"""`xdpfeed latency FILE [-T text|json] [--plot OUT.png]`: a latency file written by `run --latency-out` (or
`demo --latency-out`) as the STAC-style table per stage, as JSON (per stage count, p50, p90, p99, p99.9,
p99.99 and max in nanoseconds, and each line's timestamp source), and as an HdrHistogram percentile plot."""

import json
import sys

PROG = "xdpfeed latency"


def add_arguments(p) -> None:
    p.add_argument("file", metavar="FILE", help="a latency file (run --latency-out: an HdrHistogram log)")
    p.add_argument("-T", dest="fmt", choices=("text", "json"), default="text", help="table (default) or JSON")
    p.add_argument("--plot", metavar="OUT.png", help="also draw the percentile distribution of every stage")


def run(args) -> int:
    from xdpfeed.multicast.latency import report

    try:
        rep = report.read(args.file)
    except report.LatencyFileError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if args.fmt == "json":
        print(json.dumps(report.summary(rep), sort_keys=True))
    else:
        print(report.table(rep))
    if args.plot:
        try:
            report.plot(rep, args.plot)
        except ImportError:
            print(f"{PROG}: error: --plot needs matplotlib (pip install 'xdpfeed[plot]')", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"{PROG}: error: --plot {args.plot}: {e.strerror}", file=sys.stderr)
            return 2
    return 0
