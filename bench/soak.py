"""Soak under faults: the simulated venue and the live handler for a long run, nothing lost or doubled.

    python bench/soak.py [--messages 10000000] [--transport loopback|veth-afxdp] [--rate 500000] [--seed 1]

The same day is published twice under two session names, one after the other (a session change) on lines A and B with
random loss on each line, bursts lost on both lines at once (2 × --burst messages in the first
session, recovered by TCP replay; --burst in the second, by re-request), reordering and duplication;
each ends with End of Session. The request server drops a share of the re-requests, and the replay
server is restarted once while the first session is being published. The handler arbitrates and recovers.
`loopback` sends on 127.0.0.1 with kernel sockets on both lines; `veth-afxdp` (root) puts the venue
in one network namespace and the handler in another, line A received with AF_XDP on the veth.

Printed as one JSON object: what was published and delivered per session, lost (must be 0), whether
the delivered stream's SHA-256 equals the venue's days' and the final book equals the book of the
second day, the recovery counts, RSS over time, its peak in each session and the RSS after each
session once garbage is collected and malloc_trim has returned free memory (the sessions do the same
work, so memory that is really held and keeps growing shows there), the file descriptors opened
during the run and still open at its end, and the network namespaces it made that are still there
(both must be none). Exit 1 if any check fails.
"""

import argparse
import ctypes
import gc
import hashlib
import json
import os
import random
import socket
import sys
import threading
import time

from xdpfeed.capture.netns import inside, namespaces, veth_pair
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange.ports import free_port
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.exchange.venue import Venue, VenueConfig
from xdpfeed.multicast.feed.feed import Feed
from xdpfeed.multicast.feed.warmup import warm_up

USER, PASSWORD = "SOAK01", "soaksecret"



class Digest:
    """A consumer of the feed: SHA-256 and size of the delivered stream, nothing kept."""

    name = "digest"

    def __init__(self):
        self.sha, self.bytes = hashlib.sha256(), 0

    def on_messages(self, batch) -> None:
        self.sha.update(batch.stream)
        self.bytes += batch.stream.size


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def settled_rss_kib() -> int:
    """RSS once garbage is collected and malloc has handed its free memory back: what is really held."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return rss_kib()


def open_fds() -> dict[str, str]:
    """fd → what it is (a socket, a file...) for every descriptor open now."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            pass
    return out


class SessionDone:
    """`stop` for handler.run: the given session delivered to its End of Session."""

    def __init__(self, handler, session: str):
        self.h, self.session = handler, session

    def is_set(self) -> bool:
        st = self.h.state
        return st.session == self.session and st.finished


def restart_when(venue: Venue, share: float, ns: str | None, say) -> None:
    """Restart the venue's replay server once `share` of its day is published (or it stopped)."""
    while venue.publisher.published < share * venue.store.count and not venue.publisher.ended:
        time.sleep(0.002)
    with inside(ns):
        venue.restart_replay_server()
    say(f"replay server restarted at sequence {venue.publisher.published:,}")


def days(messages: int, seed: int, sessions: int) -> list[DayStore]:
    """The same day under `sessions` session names: equal work, so memory that keeps growing shows as
    higher peaks in the later sessions."""
    records = synthetic.generate(messages // sessions, seed=seed)[0]
    return [DayStore(records, f"SOAK{k + 1:06d}") for k in range(sessions)]


def soak(messages: int = 10_000_000, transport: str = "loopback", rate: float = 500_000, seed: int = 1,
         sessions: int = 2, loss: float = 0.01, burst: int = 2000, bursts: int = 3, reorder: float = 0.001,
         duplicate: float = 0.001, request_drop: float = 0.1, say=lambda text: None) -> dict:
    say(f"generating a day of {messages // sessions:,} messages, published {sessions} times under new names")
    stores = days(messages, seed, sessions)
    expect = hashlib.sha256()
    for s in stores:
        expect.update(s.records)
    ref_book = OrderBook()
    ref_book.apply_stream(stores[-1].records)
    warm_up()
    fds0 = open_fds()
    r = random.Random()
    group = f"239.{r.randrange(100, 250)}.{r.randrange(1, 250)}"
    line_a, line_b = (f"{group}.1", 30000 + r.randrange(10000)), (f"{group}.2", 40000 + r.randrange(10000))
    # the venue is restarted on the same ports; on loopback take ports nothing else holds now (a namespace of
    # our own has no other listener at all)
    replay_port, request_port = (50000 + r.randrange(5000), 55000 + r.randrange(5000)) if transport != "loopback" \
        else (free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM))
    samples, venues, runs, settled = [], [], [], []
    t0 = time.monotonic()
    pair_cm = veth_pair() if transport == "veth-afxdp" else None
    pair = pair_cm.__enter__() if pair_cm else None
    created = [pair.ns_a, pair.ns_b] if pair else []
    try:
        ns_a, ns_b = (pair.ns_a, pair.ns_b) if pair else (None, None)
        host = pair.addr_a if pair else "127.0.0.1"
        if pair:
            sources = (f"afxdp:{pair.if_b}?group={line_a[0]}:{line_a[1]}",
                       f"udp:{line_b[0]}:{line_b[1]}@{pair.addr_b}")
        else:
            sources = (f"udp:{line_a[0]}:{line_a[1]}@lo", f"udp:{line_b[0]}:{line_b[1]}@lo")
        digest = Digest()
        with inside(ns_b):
            handler = Feed(line_a=sources[0], line_b=sources[1], user=USER, password=PASSWORD,
                           rerequest=[(host, request_port)], replay=[(host, replay_port)],
                           rerequest_max=burst * 3 // 2, deadline=60.0,  # 2 × burst: replay
                           consumers=[digest])
            book = handler.book
            try:
                for k, store in enumerate(stores):
                    vcfg = VenueConfig(line_a=line_a, line_b=line_b, iface_addr=host, replay_host=host,
                                       replay_port=replay_port, request_host=host, request_port=request_port,
                                       users={USER: PASSWORD}, rate=rate, loss_a=loss, loss_b=loss,
                                       burst_loss=2 * burst if k == 0 else burst, bursts=bursts, reorder=reorder,
                                       duplicate=duplicate, request_drop=request_drop, seed=seed + k, start_delay=0.3,
                                       heartbeat_interval=0.5)
                    with inside(ns_a):
                        venue = Venue(vcfg, store).start()
                    if k == 0:
                        restarter = threading.Thread(target=restart_when, args=(venue, 0.4, ns_a, say), daemon=True)
                        restarter.start()

                    def tick(h, k=k):
                        samples.append((round(time.monotonic() - t0, 1), rss_kib(), k))
                    say(f"session {store.session.decode().strip()}: {store.count:,} messages at {rate:,.0f}/s")
                    why = handler.run(stop=SessionDone(handler, store.session.decode().strip()), on_tick=tick,
                                      tick=1.0, idle_timeout=120)
                    runs.append(why)
                    if k == 0:
                        restarter.join()
                    venues.append(venue.summary())
                    venue.stop()
                    del venue
                    settled.append(settled_rss_kib())
                    say(f"  {why}: {handler.summary()['delivered']:,} delivered so far, lost {handler.lost}")
                summary = handler.summary()
            finally:
                handler.close()
    finally:
        if pair_cm:
            pair_cm.__exit__(None, None, None)
    seconds = time.monotonic() - t0
    peaks = [max((kib for _, kib, k in samples if k == i), default=0) for i in range(len(stores))]
    total = sum(s.count for s in stores)
    say("RSS peak per session: " + ", ".join(f"{p / 1024:.0f} MiB" for p in peaks) + "; settled after each: "
        + ", ".join(f"{p / 1024:.0f} MiB" for p in settled))
    result = {
        "messages": total, "transport": transport, "rate": rate, "seconds": round(seconds, 1),
        "runs": runs, "delivered": summary["delivered"], "lost": handler.lost, "duplicates_dropped":
        summary["duplicates"], "gaps": summary["gaps"], "filled_rerequest": summary["filled_rerequest"],
        "filled_replay": summary["filled_replay"], "stale": summary["stale"],
        "stream_sha256_matches": digest.sha.hexdigest() == expect.hexdigest() and digest.bytes == sum(
            s.records.size for s in stores),
        "book_matches": book.checksum() == ref_book.checksum(),
        "venues": [{"session": v["session"], "published": v["published_messages"],
                    "lost_on_both_messages": v["lost_on_both_messages"],
                    "replay_server": v["replay_server"], "request_server": v["request_server"]} for v in venues],
        "rss_kib": {"samples": [s[:2] for s in samples[:: max(1, len(samples) // 60)]], "peak_per_session": peaks,
                    "settled_after_session": settled,
                    "settled_last_over_second": settled[-1] - settled[min(1, len(settled) - 1)]},
        "fds": {"before": len(fds0), "left_open": sorted(f"{k} {v}" for k, v in open_fds().items()
                                                         if fds0.get(k) != v)},
        "netns": {"created": created, "left_behind": sorted(set(created) & namespaces())},
    }
    result["ok"] = (result["lost"] == 0 and result["delivered"] == total and result["stream_sha256_matches"]
                    and result["book_matches"] and not result["fds"]["left_open"]
                    and not result["netns"]["left_behind"] and runs == ["stopped"] * sessions)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=10_000_000)
    ap.add_argument("--transport", choices=("loopback", "veth-afxdp"), default="loopback")
    ap.add_argument("--rate", type=float, default=500_000, help="messages/s per session (0: as fast as possible)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sessions", type=int, default=2, help="sessions, one after the other (default 2)")
    ap.add_argument("--burst", type=int, default=2000, help="messages lost on both lines per burst")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    say = (lambda t: None) if args.quiet else (lambda t: print(t, file=sys.stderr, flush=True))
    r = soak(args.messages, args.transport, args.rate, args.seed, args.sessions, burst=args.burst, say=say)
    print(json.dumps(r))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
