"""`xdpfeed orders-demo`: order entry and the market-data feed of the same orders, end to end on loopback.

A trading client (`OuchClient` + `OrderTracker`) sends a seeded random flow of OUCH 4.2 or 5.0
orders — enters, partial and full cancels, replaces, modifies, and some that must be rejected; which
open order a cancel or replace picks depends on what was answered by then — over SoupBinTCP
to the simulated gateway, which accepts, rejects and fills them on its own schedule. Half-way
through, the client's connection is cut; it reconnects and resumes at its next sequence number while
fills keep coming. The gateway publishes every order change as ITCH; that day is then published by the
simulated venue on two loopback MoldUDP64 lines with loss, and the live handler (arbitration, recovery)
builds its book from it.

Checks (exit 1 if any fails): the client saw every outbound message exactly once and in order; its
tracker agrees with the gateway on every order's open and executed shares and reports no anomaly;
the handler lost nothing; and its book is exactly the tracker's open orders, level by level.
"""

import json
import random
import selectors
import socket
import sys
import time

import numpy as np

from xdpfeed.multicast.book.order_book import ASK, BID, OrderBook
from xdpfeed.multicast.exchange.gateway import Gateway
from xdpfeed.multicast.exchange.gateway_itch import itch_message
from xdpfeed.multicast.exchange.ports import free_port, line_pair
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.exchange.venue import Venue, VenueConfig
from xdpfeed.multicast.feed.feed import Feed
from xdpfeed.multicast.ouch.encode import encode
from xdpfeed.multicast.ouch.reference import decode
from xdpfeed.multicast.ouch.session import OuchClient
from xdpfeed.multicast.ouch.tracker import OrderTracker

PROG = "xdpfeed orders-demo"
USER, PASSWORD = "DEMO01", "demo-pw"
SYMBOLS = ("AAPL", "MSFT", "NVDA", "QQQ")
MID = {"AAPL": 1_900_000, "MSFT": 4_200_000, "NVDA": 1_200_000, "QQQ": 4_800_000}
TICK = 100  # $0.01 in price4
DEADLINE = 60.0  # seconds any wait may take


def add_arguments(p) -> None:
    a = p.add_argument
    a("--ouch", choices=("4.2", "5.0"), default="5.0", help="OUCH version (default 5.0)")
    a("--orders", type=int, default=3000, metavar="N", help="inbound messages the client sends (default 3000)")
    a("--seed", type=int, default=1, metavar="S", help="seed of the order flow and the fills")
    a("--loss", type=float, default=0.02, metavar="P", help="packet loss on each feed line (default 0.02)")
    a("--json", action="store_true", help="print the summary as one JSON object")


class Flow:
    """The client's next inbound message, chosen from what its tracker says is open."""

    def __init__(self, version: str, rng: random.Random, tracker: OrderTracker):
        self.v, self.rng, self.t, self.n = version, rng, tracker, tracker.n
        self.next_id = 1

    def _id(self):
        k, self.next_id = self.next_id, self.next_id + 1
        return f"DEMO{k:010d}" if self.v == "4.2" else k

    def _price(self, sym: str) -> int:
        return MID[sym] + TICK * self.rng.randrange(-20, 21)

    def enter(self) -> bytes:
        r, sym = self.rng, self.rng.choice(SYMBOLS)
        side, qty = r.choice("BBSST"), 100 * r.randrange(1, 11)
        price = 0 if r.random() < 0.05 else self._price(sym)  # a price of 0 is rejected
        if self.v == "4.2":
            return encode("4.2", "in", "O", order_token=self._id(), buy_sell_indicator=side, shares=qty, stock=sym,
                          price=price, time_in_force=99999, firm="XDPF", display="Y", capacity="A",
                          intermarket_sweep_eligibility="N", minimum_quantity=0, cross_type="N", customer_type="R")
        return encode("5.0", "in", "O", user_ref_num=self._id(), side=side, quantity=qty, symbol=sym, price=price,
                      time_in_force="0", display="Y", capacity="A", intermarket_sweep_eligibility="N", cross_type="N",
                      cl_ord_id=f"C{self.next_id}", appendage={"firm": "XDPF"} if r.random() < 0.5 else {})

    def __call__(self) -> bytes:
        live = self.t.live_ids()
        r = self.rng.random()
        if not live or r < 0.5:
            return self.enter()
        o = self.t.order(self.rng.choice(live))
        n, oid = self.n, o["id"]
        if r < 0.72:
            keep = self.rng.choice((0, o["leaves"] // 2))
            return encode(self.v, "in", "X", **{n.id: oid, n.qty: keep})
        if r < 0.9:
            qty, price = 100 * self.rng.randrange(1, 11), self._price(o["symbol"])
            if self.v == "4.2":
                return encode("4.2", "in", "U", existing_order_token=oid, replacement_order_token=self._id(),
                              shares=qty, price=price, time_in_force=99999, display="Y",
                              intermarket_sweep_eligibility="N", minimum_quantity=0)
            return encode("5.0", "in", "U", orig_user_ref_num=oid, user_ref_num=self._id(), quantity=qty, price=price,
                          time_in_force="0", display="Y", intermarket_sweep_eligibility="N",
                          cl_ord_id=f"C{self.next_id}", appendage={})
        side = o["side"] if o["side"] == "B" else self.rng.choice("STE")  # a buy keeps its side
        return encode(self.v, "in", "M", **{n.id: oid, n.side: side, n.qty: max(0, o["leaves"] - 100)})


def fill_schedule(seed: int):
    """Per order: nothing (30%), a partial fill at once (40%), or fills 5–100 ms later (30%)."""
    def schedule(order: dict) -> list:
        r = random.Random(f"{seed}/{order['id']}")
        u, q = r.random(), order["quantity"]
        if u < 0.3:
            return []
        if u < 0.7:
            return [(0.0, 100 * r.randrange(1, q // 100 + 1))]
        return [(r.uniform(0.005, 0.1), 100 * r.randrange(1, q // 100 + 1)) for _ in range(r.randrange(1, 3))]
    return schedule


def _wait(until, what: str) -> None:
    """Wait (no session to drive) until `until()` holds."""
    deadline = time.monotonic() + DEADLINE
    while not until():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: no progress for {DEADLINE:.0f} s")
        time.sleep(0.005)


def _drive(client, until, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    sel = selectors.DefaultSelector()
    try:
        while not until():
            if not client.live:
                raise RuntimeError(f"{what}: the OUCH session ended: {client.reason}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: no progress for {DEADLINE:.0f} s")
            sel.register(client.fileno(), selectors.EVENT_READ | (selectors.EVENT_WRITE if client.wants_write else 0))
            sel.select(0.01)
            sel.unregister(client.fileno())
            client.poll()
    finally:
        sel.close()


def order_entry(args, say) -> dict:
    """The OUCH session; returns what the checks and the feed need."""
    v, rng = args.ouch, random.Random(args.seed)
    itch: list[bytes] = []
    tracker = OrderTracker(v)
    got: list[int] = []

    def on_message(seq: int, payload: bytes) -> None:
        got.append(seq)
        tracker.on_outbound(decode(v, "out", payload), seq)

    gw = Gateway(v, {USER: PASSWORD}, symbols=SYMBOLS, fill_schedule=fill_schedule(args.seed), itch_sink=itch.append)
    flow = Flow(v, rng, tracker)
    t0 = time.monotonic()
    with gw:
        client = OuchClient(gw.address, USER, PASSWORD, v, on_message=on_message)
        _drive(client, lambda: client.state == "active", "login")
        say(f"== OUCH {v} session: client {USER} logged in to the gateway at {gw.address[0]}:{gw.address[1]}")
        cut_at, resumed_at, replayed = args.orders // 2, None, 0
        for i in range(args.orders):
            msg = flow()
            tracker.on_inbound(decode(v, "in", msg))
            client.send(msg)
            client.poll()
            if i == cut_at:
                _drive(client, lambda: client.next_seq > len(gw.messages(USER)), "catch up before the cut")
                client.close()  # the connection dies; fills keep coming meanwhile
                resumed_at = client.next_seq
                _wait(lambda at=resumed_at: len(gw.messages(USER)) >= at, "a fill while disconnected")
                backlog = len(gw.messages(USER)) + 1 - resumed_at
                client.reconnect()
                _drive(client, lambda: client.state == "active", "reconnect")
                _drive(client, lambda: client.next_seq > len(gw.messages(USER)) - 0, "resume")
                replayed = backlog
                say(f"   connection cut after {i + 1} messages sent; reconnected at sequence {resumed_at}, "
                    f"{backlog} messages sent by the gateway meanwhile were replayed")
        time.sleep(0.2)  # the last delayed fills
        _drive(client, lambda: client.next_seq > len(gw.messages(USER)), "final fills")
        gw.end_session()
        _drive(client, lambda: client.state != "active", "end of session")
        stats, gw_orders = dict(gw.stats), gw.orders(USER)
        n_out = len(gw.messages(USER))
    return {"tracker": tracker, "itch": itch, "got": got, "n_out": n_out, "stats": stats, "gw_orders": gw_orders,
            "client": client, "resumed_at": resumed_at, "replayed": replayed, "seconds": time.monotonic() - t0}


def feed(args, itch: list[bytes], say) -> tuple:
    """Publish the gateway's ITCH as a MoldUDP64 day on two lossy loopback lines; the handler's book."""
    day = [itch_message("S", 0, 0, event_code="O"), *itch, itch_message("S", 0, 0, event_code="C")]
    records = np.frombuffer(b"".join(len(m).to_bytes(2, "big") + m for m in day), dtype=np.uint8)
    store = DayStore(records, "ORDERS0001")
    line_a, line_b = line_pair("239.253")
    replay_port, request_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    vcfg = VenueConfig(line_a=line_a, line_b=line_b, users={USER: PASSWORD}, start_delay=0.3, heartbeat_interval=0.2,
                       loss_a=args.loss, loss_b=args.loss, seed=args.seed, rate=200_000, replay_port=replay_port,
                       request_port=request_port)
    feed = Feed(line_a=f"udp:{line_a[0]}:{line_a[1]}@lo", line_b=f"udp:{line_b[0]}:{line_b[1]}@lo",
                rerequest=[f"127.0.0.1:{request_port}"], replay=[f"127.0.0.1:{replay_port}"], user=USER,
                password=PASSWORD, rerequest_max=1000)
    venue = Venue(vcfg, store)
    say(f"== feed: the gateway's {len(itch):,} ITCH messages on lines A {line_a[0]}:{line_a[1]} and B "
        f"{line_b[0]}:{line_b[1]}, {args.loss:.0%} loss on each")
    try:
        venue.start()
        why = feed.run(until_eos=True, idle_timeout=30)
    finally:
        feed.close()
        venue.stop()
    return feed.summary(), why, feed.book, store.count


def expected_levels(tracker: OrderTracker) -> dict:
    """(symbol, BID | ASK) → {price: shares} of the tracker's open orders."""
    out: dict = {}
    for oid in tracker.live_ids():
        o = tracker.order(oid)
        side = BID if o["side"] == "B" else ASK
        lv = out.setdefault((o["symbol"], side), {})
        lv[o["price"]] = lv.get(o["price"], 0) + o["leaves"]
    return out


def book_levels(book: OrderBook) -> dict:
    out = {}
    for loc in book.locates():
        for side in (BID, ASK):
            levels = {p: s for p, s, _ in book.depth(loc, side)}
            if levels:
                out[(book.symbol(loc), side)] = levels
    return out


def check(oe: dict, fs: dict, why: str, book: OrderBook, published: int) -> list[str]:
    t, problems = oe["tracker"], []
    if oe["got"] != list(range(1, oe["n_out"] + 1)):
        problems.append(f"client saw sequences {oe['got'][:3]}... not exactly 1..{oe['n_out']}")
    problems += [f"tracker anomaly: {a}" for a in t.anomalies[:5]]
    for oid, (leaves, executed) in oe["gw_orders"].items():
        o = t.order(oid)
        if o is None or (o["leaves"], o["executed"]) != (leaves, executed):
            mine = None if o is None else (o["leaves"], o["executed"])
            problems.append(f"order {oid!r}: gateway has open/executed {(leaves, executed)}, tracker {mine}")
    if why != "complete" or fs["lost"] or fs["delivered"] != published:
        problems.append(f"feed: {why}, delivered {fs['delivered']} of {published}, lost {fs['lost']}")
    if book_levels(book) != expected_levels(t):
        problems.append("the handler's book differs from the tracker's open orders")
    return problems


def run(args) -> int:
    if args.orders < 10:
        print(f"{PROG}: error: --orders must be at least 10", file=sys.stderr)
        return 2
    if not 0.0 <= args.loss < 0.5:
        print(f"{PROG}: error: --loss must be in [0, 0.5)", file=sys.stderr)
        return 2
    say = (lambda text: None) if args.json else (lambda text: print(text, flush=True))
    t0 = time.monotonic()
    try:
        oe = order_entry(args, say)
        t = oe["tracker"]
        states = t.state_counts()
        say(f"   {oe['stats']['messages_in']:,} messages in, {oe['n_out']:,} out in {oe['seconds']:.1f} s; orders: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(states.items())))
        fs, why, book, published = feed(args, oe["itch"], say)
    except (RuntimeError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    problems = check(oe, fs, why, book, published)
    summary = {"ouch": args.ouch, "messages_in": oe["stats"]["messages_in"], "messages_out": oe["n_out"],
               "orders": len(t.orders()), "states": states, "executions": oe["stats"]["executions"],
               "rejected": oe["stats"]["rejected"], "resumed_at": oe["resumed_at"], "replayed": oe["replayed"],
               "anomalies": len(t.anomalies), "itch_published": published, "itch_delivered": fs["delivered"],
               "feed_gaps": fs["gaps"], "lost": fs["lost"], "book_matches": not any("book" in p for p in problems),
               "open_orders": book.live_orders, "seconds": round(time.monotonic() - t0, 2), "problems": problems}
    if args.json:
        print(json.dumps(summary))
    else:
        say(f"== handler: {fs['delivered']:,} of {published:,} ITCH messages delivered, {fs['gaps']} gaps recovered, "
            f"lost {fs['lost']}; book: {book.live_orders:,} open orders")
        say("== checks: " + ("client and gateway agree on every order; the feed's book is exactly the open orders"
                             if not problems else "FAILED"))
        for p in problems:
            print(f"{PROG}: {p}", file=sys.stderr)
    return 1 if problems else 0
