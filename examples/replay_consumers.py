"""Replay a capture through a Feed with two consumers: one in plain Python, one compiled with numba.

    python examples/replay_consumers.py [CAPTURE.pcap]

Without an argument it replays a synthetic day of 200,000 messages (generated once into the temporary
directory). The same code runs live: give the Feed `udp:`/`afxdp:` lines and recovery servers instead.
"""

import os
import sys
import tempfile

import numpy as np
from numba import njit

from xdpfeed import CompiledConsumer, Feed
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.itch import offsets as O


class Activity:
    """Plain Python, called once per batch: adds and executions per message type, from the decoded tables,
    and how often the best bid or offer moved."""

    name = "activity"

    def __init__(self):
        self.counts = dict.fromkeys("AFEXDUCP", 0)
        self.bbo_changes = 0

    def on_messages(self, batch):
        tables = batch.decoded()  # decoded once per batch, whoever asks
        for t in self.counts:
            self.counts[t] += len(tables[t])

    def on_top_of_book(self, events):
        self.bbo_changes += len(events)


@njit(cache=True)
def executed_shares(stream, seq, timestamp_ns, shares_by_locate):
    """Compiled, called once per batch with the raw stream ([uint16 length][message]...): shares executed
    per stock locate (E and C messages), no Python per message."""
    p = 0
    while p + 2 <= stream.size:
        n = (np.int64(stream[p]) << 8) | np.int64(stream[p + 1])
        m = p + 2
        t = stream[m]
        if t == ord("E") or t == ord("C"):
            locate = (np.int64(stream[m + O.E.stock_locate]) << 8) | np.int64(stream[m + O.E.stock_locate + 1])
            s = m + O.E.executed_shares
            shares = 0
            for k in range(4):
                shares = (shares << 8) | np.int64(stream[s + k])
            shares_by_locate[locate] += shares
        p = m + n


def main(argv: list[str]) -> int:
    if argv:
        capture = argv[0]
    else:
        capture = os.path.join(tempfile.gettempdir(), "xdpfeed-example-day-200000.pcap")
        if not os.path.exists(capture):
            synthetic.generate_to_file(capture[:-5] + ".itch", 200_000, seed=7, pcap_path=capture)
    activity = Activity()
    shares = np.zeros(65536, dtype=np.int64)
    volume = CompiledConsumer(on_messages=executed_shares, state=(shares,), name="volume")
    with Feed(line_a=f"pcap:{capture}", consumers=[activity, volume]) as feed:
        why = feed.run()
        state, book = feed.state, feed.book
    top = int(np.argmax(shares))
    print(f"{why}: {state.delivered:,} messages delivered, state {state.state}, lost {state.lost}")
    print("messages: " + ", ".join(f"{t} {n:,}" for t, n in activity.counts.items()))
    print(f"best bid/offer changes: {activity.bbo_changes:,}")
    print(f"most traded: {book.symbol(top)} (locate {top}), {shares[top]:,} shares executed")
    return 0 if why == "sources exhausted" and state.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
