"""`xdpfeed demo --venues N` (2 or 3): Nasdaq, BX and PSX simulated at once, one handler for all of them.

Each venue is its own `xdpfeed simulate` process publishing its day (multicast.exchange.venues: one universe
of symbols at venue locates, prices near each other) on its own two loopback lines with loss on each and
bursts lost on both, serving its own recovery. The last venue also loses its recovery servers for a few
seconds from just before its first burst: its feed goes STALE (its gap deadline is short here) and is left
out of the consolidated book, then recovers once the servers are back and is taken in again. The handler
runs every feed in one loop (multicast.feed.feeds) with live progress per venue. The summary checks each
venue's book against the book of that venue's own day and the consolidated best bid and offer of every
symbol against the one built in plain Python from those books. Exit 1 when anything was lost, a book differs
or the consolidated book does.
"""

import json
import os
import secrets
import socket
import sys
import tempfile
import time

import numpy as np

from xdpfeed.multicast.book import reference
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.cli.demo import PROG, USER, DemoError, _say, _start_venue, _stop_venue
from xdpfeed.multicast.cli.run_feeds import FeedsProgress
from xdpfeed.multicast.exchange import venues as V
from xdpfeed.multicast.exchange.ports import free_port, line_pair
from xdpfeed.multicast.feed import config as cfgmod
from xdpfeed.multicast.feed.feeds import Feeds

OUTAGE_S = 4.0  # the last venue's recovery servers are down this long
OUTAGE_DEADLINE_S = 1.0  # its feed's gap deadline: STALE well within the outage


def run_venues(args) -> int:
    n = args.venues
    names = list(V.VENUES)[:n]
    messages = 300_000 if args.messages == 1_000_000 else args.messages  # per venue: N venues share 2 cores
    rate = 200_000 if args.rate == 1_000_000 else args.rate
    t0 = time.monotonic()
    password = secrets.token_hex(5)
    days, books, feeds_cfg, plans = {}, {}, [], []
    for i, name in enumerate(names):
        day = os.path.join(tempfile.gettempdir(), f"xdpfeed-demo-{name}-{messages}-{args.seed}.itch")
        records, _ = V.venue_day(name, messages, seed=args.seed)
        records.tofile(day)
        days[name] = day
        book = OrderBook()
        book.apply_stream(records)
        books[name] = book
        line_a, line_b = line_pair()
        replay_port, request_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
        outage = i == n - 1
        entry = {"name": name, "venue": name, "line_a": f"udp:{line_a[0]}:{line_a[1]}@lo",
                 "line_b": f"udp:{line_b[0]}:{line_b[1]}@lo",
                 "recovery": {"rerequest": [f"127.0.0.1:{request_port}"], "replay": [f"127.0.0.1:{replay_port}"],
                              "user": USER, "rerequest_max": args.rerequest_max,
                              **({"deadline": OUTAGE_DEADLINE_S, "max_backoff": 0.5} if outage else {})}}
        feeds_cfg.append(entry)
        plans.append((name, day, line_a, line_b, replay_port, request_port, outage))
    universe = int(np.count_nonzero(books[names[0]].stocks["symbol"]))
    _say(args, f"== {n} venues, {messages:,} messages each at {rate:,.0f} msg/s (seed {args.seed}): "
         f"{', '.join(V.VENUES[x].title for x in names)}; one universe of {universe:,} symbols at venue locates")
    cfg = cfgmod.feeds_from_dict({"feeds": feeds_cfg, "metrics": {"addr": args.metrics_addr or "auto"}})
    for f in cfg.feeds:
        f.password = password
    procs = {}
    _say(args, "== warming up the compiled code")
    try:
        with Feeds(cfg) as feeds:
            if feeds.metrics_server is not None:
                _say(args, "== metrics: http://{}:{}/metrics".format(*feeds.metrics_server.server_address[:2]))
            for name, day, line_a, line_b, replay_port, request_port, outage in plans:
                extra = ["--recovery-outage", str(OUTAGE_S)] if outage else []
                procs[name], addr = _start_venue(args, day, line_a, line_b, password, replay_port, request_port,
                                                 messages=messages, rate=rate, session=V.session(name, args.seed),
                                                 extra=extra)
                _say(args, f"== {name}: lines A {addr['line_a']} B {addr['line_b']}, replay {addr['replay']}, "
                     f"re-request {addr['request']}"
                     + (f"; its recovery servers go down for {OUTAGE_S:.0f} s at its first burst" if outage else ""))
            progress = None if args.json else FeedsProgress(sys.stdout)
            why = feeds.run(until_eos=True, on_tick=progress, idle_timeout=60)
            summary = feeds.summary()
            cons = feeds.consolidated
            want = reference.consolidated(books)
            mismatched = [sym for sym, q in want.items() if _quote(cons.bbo(sym)) != (q["bid"], q["ask"])]
            extra_syms = [sym for sym in cons.view(1) if sym not in want]
    finally:
        venue_summaries = {name: _stop_venue(p) for name, p in procs.items()}
    per = {}
    for name in names:
        fs, vs = summary["feeds"][name], venue_summaries.get(name, {})
        per[name] = {"published": vs.get("published_messages", 0), "delivered": fs["delivered"], "lost": fs["lost"],
                     "gaps": fs["gaps"], "filled_rerequest": fs["filled_rerequest"],
                     "filled_replay": fs["filled_replay"],
                     "stale_episodes": fs["stale_episodes"], "stale_seconds_total": fs["stale_seconds_total"],
                     "stale": fs["stale"], "book_matches": fs.get("book_checksum") == books[name].checksum(),
                     "recovery_outages": vs.get("recovery_outages", [])}
    consolidated = {**summary.get("consolidated", {}), "symbols_checked": len(want),
                    "matches": not mismatched and not extra_syms, "mismatched": mismatched[:10]}
    out = {"venues": per, "consolidated": consolidated, "exit": why, "seconds": round(time.monotonic() - t0, 2)}
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(f"== summary ({out['seconds']} s)")
        for name, p in per.items():
            print(f"  {name}: published {p['published']:,}  delivered {p['delivered']:,}  lost {p['lost']:,}  gaps "
                  f"{p['gaps']:,} (re-request {p['filled_rerequest']:,}, replay {p['filled_replay']:,} messages)  "
                  f"STALE episodes {p['stale_episodes']} ({p['stale_seconds_total']:.1f} s)  book matches the "
                  f"venue's: {p['book_matches']}")
        c = consolidated
        print(f"  consolidated: {c['symbols_checked']:,} symbols, best bid/offer of every one equal to the plain-"
              f"Python one from the venues' books: {c['matches']}; {c.get('events', 0):,} changes, locked "
              f"{c.get('locked_entered', 0):,} and crossed {c.get('crossed_entered', 0):,} times across venues")
    whole = all(p["published"] == messages == p["delivered"] and p["lost"] == 0 and p["book_matches"]
                and not p["stale"] for p in per.values())
    return 0 if whole and consolidated["matches"] else 1


def _quote(bbo):
    bid, ask = bbo
    return (tuple(bid) if bid else None, tuple(ask) if ask else None)


def check(args) -> None:
    if not 2 <= args.venues <= len(V.VENUES):
        raise DemoError(f"--venues must be 1..{len(V.VENUES)}, not {args.venues}")
    if args.record or args.out:
        raise DemoError(f"{PROG} --venues: outputs are per feed; run `xdpfeed run -c venues.toml` for them")
