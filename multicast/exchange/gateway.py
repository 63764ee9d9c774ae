"""The simulated venue's OUCH 4.2 / 5.0 order-entry gateway over SoupBinTCP 3.00 (docs/protocols.md §3, §5, §6).

Owns the order logic, a fill thread, and per user (OUCH account) the orders and a store of every
outbound message: a login for sequence n >= 1 is served the stored messages from n (0: only new ones),
so a client resumes without loss or duplicate; a newer login of the same user takes over. Login
Rejected: `A` bad user or password, `S` another session named. Inbound messages:
* Enter → Rejected (side not B/S/T/E, quantity 0 or above MAX_QUANTITY, price outside 1..MAX_PRICE,
  unknown display, stock not in `symbols` when given, token / UserRefNum reused or, in 5.0, not above
  the last) or Accepted with the next order reference number. Executions then follow
  `fill_schedule(order) -> [(delay seconds, shares), ...]` on the gateway `clock` (delay 0 at once, the
  others on the fill thread or in `run_due()`), each with the next match number. IOC (4.2 `0`, 5.0 `3`)
  cancels the rest right after the immediate fills.
* Cancel (shares left open afterwards, 0 = all) → Canceled. A cross order (cross type not `N`) is in
  its cross: a partial cancel gets Cancel Reject, a full one Cancel Pending, and the rest is canceled
  right after its next scheduled execution (at once if none is left).
* Replace → Replaced (new id and order reference number, shares = new open shares, new fill schedule) or
  Rejected for the replacement id. Modify (another sell letter, fewer shares) → Order Modified.
* Requests about unknown or finished orders are ignored, as OUCH does (counted in stats["ignored"]).
The SoupBinTCP side (listener, connection threads, login) is `soup_server`'s. With `itch_sink`, each
change is published as ITCH 5.0 message bytes for the simulated feed and book (`gateway_itch`); the
sink runs on gateway threads, in event order, under the gateway lock: it must not call back into it.
"""

import heapq
import itertools
import socket
import time
from dataclasses import dataclass, field

from xdpfeed.multicast.exchange.gateway_itch import ItchMirror
from xdpfeed.multicast.exchange.soup_server import Closed, SoupConnection, SoupServer
from xdpfeed.multicast.ouch.encode import encode
from xdpfeed.multicast.ouch.reference import decode
from xdpfeed.multicast.ouch.tracker import names
from xdpfeed.multicast.wire import soupbintcp as sb

MAX_QUANTITY = 1_000_000
MAX_PRICE = 2_000_000_000  # $200,000.0000 in price4 / px8d4
NS_PER_DAY = 86_400 * 10**9
IDLE_POLL = 0.005  # seconds between looks at the account's store while a connection is idle
SIDES, SELLS = "BSTE", "STE"  # a Modify may only change a sell letter into another
DISPLAY = {"4.2": "AYNPIMWLOTQ", "5.0": "YNA"}
IOC = {"4.2": 0, "5.0": "3"}
# Enter / Replace fields that Accepted and Replaced echo, besides id, side, shares, stock and price.
ECHO = {"4.2": ("time_in_force", "firm", "display", "capacity", "intermarket_sweep_eligibility", "minimum_quantity",
                "cross_type"),
        "5.0": ("time_in_force", "display", "capacity", "intermarket_sweep_eligibility", "cross_type", "cl_ord_id",
                "appendage")}
# Rejected reasons: 4.2 letters (5.3), 5.0 codes (6.6); 5.0 side gets 0x0F "other" as 0x09 is disputed.
WHY = ("side", "quantity", "price", "display", "stock", "duplicate", "replace")
REJECT = {"4.2": dict(zip(WHY, "OZXDSOO", strict=True)),
          "5.0": dict(zip(WHY, (0x0F, 0x13, 0x1D, 0x03, 0x17, 0x0F, 0x15), strict=True))}
ORDER_KEYS = ("messages_in", "messages_out", "accepted", "rejected", "executions", "canceled", "cancel_pending",
              "cancel_rejects", "replaced", "modified", "ignored", "bad_messages", "broken")


def wall_clock() -> float:
    """Seconds since local midnight (OUCH and ITCH timestamps are nanoseconds since midnight)."""
    now = time.time()
    t = time.localtime(now)
    return t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + now % 1


def default_fill_schedule(order: dict) -> list[tuple[float, int]]:
    """A quarter of the shares at once, another quarter a second later; the rest rests on the book."""
    q = order["quantity"] // 4
    return [(0.0, q), (1.0, q)] if q else []


def no_fills(order: dict) -> list:
    return []


@dataclass(eq=False)
class _Order:
    id: object
    account: "_Account"
    symbol: str
    side: str
    leaves: int
    price: int
    fields: dict  # what Accepted / Replaced echo: time in force, display, capacity, firm, appendage...
    ref: int = 0
    live: bool = True
    cancel_pending: bool = False
    scheduled: int = 0  # executions still scheduled
    executed: int = 0  # shares executed (broken trades taken back out)

    @property
    def on_book(self) -> bool:
        return self.fields.get("display") != "N" and self.fields.get("cross_type", "N") == "N"


@dataclass(eq=False)
class _Account:
    store: list = field(default_factory=list)  # outbound payloads; sequence number = index + 1
    orders: dict = field(default_factory=dict)  # live and finished orders by token / UserRefNum
    last_ref: int = 0  # 5.0: highest UserRefNum used
    conn: object = None  # the connection serving this account now


class Gateway(SoupServer):
    """OUCH `version` ("4.2" | "5.0") order entry for `users` (name → password)."""

    def __init__(self, version: str, users: dict[str, str], host: str = "127.0.0.1", port: int = 0, clock=wall_clock,
                 fill_schedule=default_fill_schedule, itch_sink=None, symbols=None, session: str = "OUCH000001",
                 heartbeat_interval: float = 1.0, client_timeout: float = 15.0, first_order_ref: int = 1):
        super().__init__(users, host, port, heartbeat_interval, client_timeout, extra_keys=ORDER_KEYS)
        self.n = names(version)
        self.version = version
        self.session = sb.normalize_session(session)
        self.clock, self.fill_schedule = clock, fill_schedule
        self.itch = ItchMirror(itch_sink, self._ns)
        self.symbols = None if symbols is None else list(symbols)
        self.ended = False
        self._accounts = {u: _Account() for u in self.users}
        self._refs = itertools.count(first_order_ref)
        self._matches = itertools.count(1)
        self._due: list = []  # heap of (due time, tie, order, shares)
        self._tie = itertools.count()
        self._executions: dict[int, tuple] = {}  # match number → (order, shares), for break_trade
        self._opened = False

    # ------------------------------------------------------------------------------------ control
    thread_name = "gateway"

    def open_session(self) -> None:
        """Stock Directory for the `symbols`, System Event 'S' (start of day) to every account. start() does
        this before it listens; call it directly to drive the gateway without a network (handle())."""
        with self._lock:
            if self._opened:
                return
            self._opened = True
            for sym in self.symbols or ():
                self.itch.locate(sym)
            for acct in self._accounts.values():
                self._emit(acct, "S", event_code="S")

    def start(self) -> "Gateway":
        self.open_session()
        return super().start()

    def background(self) -> dict:
        return {"gateway-fills": self._fill_loop}

    def connection(self, sock: socket.socket) -> "_Connection":
        return _Connection(self, sock)

    def end_session(self) -> None:
        """System Event 'E' to every account; connections then send End of Session and close."""
        with self._lock:
            for acct in self._accounts.values():
                self._emit(acct, "S", event_code="E")
            self.ended = True

    def break_trade(self, match_number: int, reason: str = "E") -> None:
        """Broken Trade for an execution (reason 'E' erroneous, 'C' consent, 'M' manual, 'X' supervisory);
        the order's open shares do not change. KeyError for a match number the gateway never made."""
        with self._lock:
            o, shares = self._executions.pop(match_number)
            o.executed -= shares
            self.stats["broken"] += 1
            extra = {"cl_ord_id": o.fields.get("cl_ord_id", "")} if self.version == "5.0" else {}
            self._emit(o.account, "B", **{self.n.id: o.id}, match_number=match_number, reason=reason, **extra)

    def orders(self, user: str) -> dict:
        """id → (open shares, executed shares) of every order of the account (0 open once it is done)."""
        with self._lock:
            return {oid: (o.leaves if o.live else 0, o.executed) for oid, o in self._accounts[user].orders.items()}

    def messages(self, user: str) -> list[bytes]:
        """The account's outbound messages so far; message k has sequence number k + 1."""
        with self._lock:
            return list(self._accounts[user].store)

    # --------------------------------------------------------------------------------- messages
    def _ns(self) -> int:
        return int(self.clock() * 1_000_000_000) % NS_PER_DAY

    def _emit(self, acct: _Account, t: str, **fields) -> None:
        acct.store.append(encode(self.version, "out", t, timestamp=self._ns(), **fields))

    def _order_fields(self, o: _Order) -> dict:
        n = self.n
        return {n.side: o.side, n.qty: o.leaves, n.symbol: o.symbol, "price": o.price, **o.fields,
                "order_reference_number": o.ref, "order_state": "L" if o.live else "D"}

    # ------------------------------------------------------------------------------- order logic
    def handle(self, user: str, payload: bytes) -> None:
        """One inbound OUCH message from `user` (what a 'U' packet carries); ValueError if undecodable."""
        try:
            msg = decode(self.version, "in", payload)
        except ValueError:
            self.count("bad_messages")
            raise
        with self._lock:
            self.stats["messages_in"] += 1
            acct = self._accounts[user]
            kind = {"O": self._enter, "U": self._replace, "X": self._cancel, "M": self._modify}.get(msg["type"])
            if kind is None:
                self.stats["ignored"] += 1
            else:
                kind(acct, msg)

    def _reject(self, acct: _Account, oid, why: str, msg: dict) -> None:
        self.stats["rejected"] += 1
        extra = {"cl_ord_id": msg.get("cl_ord_id", "")} if self.version == "5.0" else {}
        self._emit(acct, "J", **{self.n.id: oid}, reason=REJECT[self.version][why], **extra)

    def _problem(self, acct: _Account, oid, msg: dict, side: str, qty: int, symbol: str) -> str | None:
        """Why an Enter (or the new order of a Replace) is rejected, or None."""
        checks = (("duplicate", oid in acct.orders or (self.version == "5.0" and oid <= acct.last_ref)),
                  ("side", side not in SIDES), ("quantity", not 0 < qty <= MAX_QUANTITY),
                  ("price", not 0 < msg["price"] <= MAX_PRICE),
                  ("display", msg.get("display", "Y") not in DISPLAY[self.version]),
                  ("stock", self.symbols is not None and symbol not in self.symbols))
        return next((why for why, bad in checks if bad), None)

    def _enter(self, acct: _Account, msg: dict) -> None:
        n = self.n
        oid, side, qty, symbol = msg[n.id], msg[n.side], msg[n.qty], msg[n.symbol]
        why = self._problem(acct, oid, msg, side, qty, symbol)
        if why is not None:
            self._reject(acct, oid, why, msg)
            return
        fields = {k: msg[k] for k in ECHO[self.version] if k in msg}
        o = _Order(oid, acct, symbol, side, qty, msg["price"], fields)
        self._open(acct, o)
        self._emit(acct, "A", **{n.id: oid}, **self._order_fields(o))
        self.itch.add(o)
        self._schedule(o)

    def _open(self, acct: _Account, o: _Order) -> None:
        acct.orders[o.id] = o
        if self.version == "5.0":
            acct.last_ref = max(acct.last_ref, o.id)
        o.ref = next(self._refs)
        self.stats["accepted"] += 1

    def _schedule(self, o: _Order) -> None:
        now = self.clock()
        view = {"id": o.id, "symbol": o.symbol, "side": o.side, "quantity": o.leaves, "price": o.price, **o.fields}
        for delay, shares in self.fill_schedule(view):
            if delay <= 0:
                self._execute(o, shares)
            else:
                o.scheduled += 1
                heapq.heappush(self._due, (now + delay, next(self._tie), o, shares))
        if o.live and o.fields.get("time_in_force") == IOC[self.version]:
            self._remove(o, o.leaves, "I")

    def _execute(self, o: _Order, shares: int) -> None:
        shares = min(shares, o.leaves)
        if not o.live or shares <= 0:
            return
        n, match = self.n, next(self._matches)
        o.leaves -= shares
        o.executed += shares
        o.live = o.leaves > 0
        self.stats["executions"] += 1
        self._executions[match] = (o, shares)
        self._emit(o.account, "E", **{n.id: o.id, n.exec_qty: shares, n.exec_price: o.price}, liquidity_flag="A",
                   match_number=match)
        self.itch.executed(o, shares, match)

    def _remove(self, o: _Order, shares: int, reason: str) -> None:
        """Canceled for `shares` of o's open shares (all of them: the order is done)."""
        o.leaves -= shares
        o.live = o.leaves > 0
        self.stats["canceled"] += 1
        self._emit(o.account, "C", **{self.n.id: o.id, self.n.cancel_qty: shares}, reason=reason)
        self.itch.reduced(o, shares)

    def run_due(self) -> None:
        """Run every scheduled execution that is due on the gateway clock (the fill thread calls this)."""
        with self._lock:
            now = self.clock()
            while self._due and self._due[0][0] <= now:
                _, _, o, shares = heapq.heappop(self._due)
                o.scheduled -= 1
                self._execute(o, shares)
                if o.live and o.cancel_pending:
                    self._remove(o, o.leaves, "U")

    def _fill_loop(self) -> None:
        while not self.stopping.wait(IDLE_POLL):
            self.run_due()

    def _cancel(self, acct: _Account, msg: dict) -> None:
        o = acct.orders.get(msg[self.n.id])
        keep = msg[self.n.qty]
        if o is None or not o.live or o.cancel_pending or keep >= o.leaves:
            self.stats["ignored"] += 1
        elif o.fields.get("cross_type", "N") == "N":
            self._remove(o, o.leaves - keep, "U")
        elif keep:
            self.stats["cancel_rejects"] += 1
            self._emit(acct, "I", **{self.n.id: o.id})
        elif o.scheduled:
            o.cancel_pending = True
            self.stats["cancel_pending"] += 1
            self._emit(acct, "P", **{self.n.id: o.id})
        else:
            self._remove(o, o.leaves, "U")

    def _replace(self, acct: _Account, msg: dict) -> None:
        n = self.n
        old_id, new_id = msg[n.replace_old_in], msg[n.replace_new_in]
        old = acct.orders.get(old_id)
        if old is None or not old.live:
            self.stats["ignored"] += 1
            return
        qty = msg[n.qty]
        why = self._problem(acct, new_id, msg, old.side, qty, old.symbol)
        if why is None and (old.cancel_pending or old.fields.get("cross_type", "N") != "N"):
            why = "replace"
        if why is not None:
            self._reject(acct, new_id, why, msg)
            return
        fields = dict(old.fields)
        fields.update((k, v) for k, v in msg.items() if k in fields)
        new = _Order(new_id, acct, old.symbol, old.side, qty, msg["price"], fields)
        old.live = False
        self._open(acct, new)
        self.stats["replaced"] += 1
        ids = {n.replace_new_out: new_id, n.replace_old_out: old_id}
        self._emit(acct, "U", **self._order_fields(new), **ids)
        self.itch.replaced(old, new)
        self._schedule(new)

    def _modify(self, acct: _Account, msg: dict) -> None:
        n = self.n
        o = acct.orders.get(msg[n.id])
        side, shares = msg[n.side], msg[n.qty]
        if o is None or not o.live or shares > o.leaves or (side != o.side and not {side, o.side} <= set(SELLS)):
            self.stats["ignored"] += 1
            return
        dec = o.leaves - shares
        o.side, o.leaves, o.live = side, shares, shares > 0
        self.stats["modified"] += 1
        self._emit(acct, "M", **{n.id: o.id, n.side: side, n.qty: shares})
        self.itch.reduced(o, dec)



class _Connection(SoupConnection):
    """One client: login, then client packets in, the account's new messages out, heartbeats."""

    def serve(self) -> None:
        gw = self.server
        login = self.login(gw.session)
        if login is None:
            return
        self.user, _, seq = login
        with gw._lock:
            self.acct = gw._accounts[self.user]
            self.acct.conn = self  # takes over from an older connection of this user
            top = len(self.acct.store) + 1
            self.next = min(seq, top) if seq >= 1 else top
        self.send(sb.encode_login_accepted(gw.session, self.next))
        while True:
            self.take_input()
            self._push()
            self.poller.poll(IDLE_POLL * 1000)

    def unsequenced(self, payload: bytes) -> None:
        try:
            self.server.handle(self.user, payload)
        except ValueError as e:
            raise Closed(f"bad OUCH message: {e}") from None

    def _push(self) -> None:
        """The account's messages not sent yet; End of Session once the session ended; or a heartbeat."""
        gw = self.server
        with gw._lock:
            if self.acct.conn is not self:
                raise Closed("another login took over")
            batch, ended = self.acct.store[self.next - 1 :], gw.ended
        if batch:
            self.send(b"".join(sb.encode_sequenced(m) for m in batch))
            self.next += len(batch)
            gw.count("messages_out", len(batch))
        elif ended:
            self.end_session()
        elif self.heartbeat_due():
            self.send_heartbeat()
