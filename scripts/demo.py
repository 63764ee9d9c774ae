"""`make demo`: replay the bundled captures through the decoder, then a synthetic ITCH day through
the decoder and the order book, printing live progress and a summary. (A later release replaces the
synthetic replay with the simulated exchange publishing over multicast.)"""

import glob
import os
import sys
import tempfile
import time

import numpy as np

from xdpfeed.multicast import book_report, output
from xdpfeed.multicast import counters as C
from xdpfeed.multicast.book import OrderBook
from xdpfeed.multicast.itch_schema import N_TYPES
from xdpfeed.multicast.pipeline import Decode, replay_into_book

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def decode(path, live=False):
    """(run, messages per type code) for one input, with a progress line on stderr when `live`."""
    run = Decode(path)
    per_type = np.zeros(N_TYPES, dtype=np.int64)
    last = 0.0
    for _, tables in run.batches():
        per_type += np.bincount(tables.order_type[: tables.count], minlength=N_TYPES)
        now = time.perf_counter()
        if live and now - last > 0.2:
            last = now
            print(f"\r  decoded {int(run.counters[C.DECODED]):>12,} messages "
                  f"{int(run.counters[C.PACKETS]):>10,} packets", end="", file=sys.stderr, flush=True)
    if live:
        print(file=sys.stderr)
    return run, per_type


def main():
    print("== bundled captures (pcaps/): real NASDAQ traffic (Open Markets Initiative) and generated edge cases")
    total = 0
    for path in sorted(glob.glob(os.path.join(REPO, "pcaps", "**", "*.pcap*"), recursive=True)):
        run, _ = decode(path)
        c = run.counters
        total += int(c[C.DECODED])
        skipped = output.skipped_line(c)
        print(f"  {os.path.relpath(path, REPO):<58} {int(c[C.PACKETS]):>4} packets {int(c[C.DECODED]):>5} messages"
              + (f"  ({skipped})" if skipped else ""))
    print(f"  total: {total} messages decoded")

    from xdpfeed.multicast import synthetic

    n = int(os.environ.get("XDPFEED_DEMO_MESSAGES", "2000000"))
    base = os.path.join(tempfile.gettempdir(), f"xdpfeed-demo-{n}")
    print(f"\n== a synthetic ITCH day: {n:,} messages as MoldUDP64 over 802.1Q/IPv4/UDP ({base}.pcap)")
    synthetic.generate_to_file(base + ".itch", n, seed=1, pcap_path=base + ".pcap")
    decode(base + ".pcap")  # first pass loads the compiled code and the file into the page cache
    run, per_type = decode(base + ".pcap", live=True)
    print(output.summary(run, per_type, int(per_type.sum())))

    print("\n== the same day through the order book")
    replay_into_book(os.path.join(REPO, "pcaps", "omi", "itch50", "Multiple.Packets.pcap"), OrderBook())  # compile
    book = OrderBook()
    t0 = time.perf_counter()
    replay_into_book(base + ".pcap", book)
    secs = time.perf_counter() - t0
    st = book.stat()
    print(f"  {st['messages']:,} messages in {secs:.2f} s ({st['messages'] / secs / 1e6:.1f}M msg/s), "
          f"{st['live_orders']:,} orders live at the end, {st['bbo_events']:,} top-of-book changes")
    busiest = sorted(book.locates(), key=lambda loc: -int(book.s_size[2 * loc] + book.s_size[2 * loc + 1]))[:3]
    print(book_report.as_table(book, busiest, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
