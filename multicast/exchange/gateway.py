"""The simulated venue's OUCH 4.2 / 5.0 order-entry gateway over SoupBinTCP 3.00 (protocols.md 3, 5, 6).

Owns the listening socket, a thread per connection, a fill thread, and per user (OUCH account) the
orders and a store of every outbound message: a login for sequence n >= 1 is served the stored messages
from n (0: only new ones), so a client resumes without loss or duplicate; a newer login of the same user
takes over. Login Rejected: `A` bad user or password, `S` another session named. Inbound messages:
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
With `itch_sink`, each change is published as ITCH 5.0 message bytes (no length prefix) for the simulated
feed and book: 'R' per stock on first use, 'A' ('F' for display `A`), 'E', 'X' / 'D', 'U' (A / D when the
display changes), 'P' for hidden orders' executions; cross orders stay off the book. itch_sink runs on
gateway threads, in event order, under the gateway lock: it must not call back into the gateway.
"""

import heapq
import itertools
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from xdpfeed.multicast import soupbintcp as sb
from xdpfeed.multicast.itch_schema import MESSAGES as ITCH
from xdpfeed.multicast.orders import names
from xdpfeed.multicast.ouch_encode import encode
from xdpfeed.multicast.ouch_reference import decode

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
STAT_KEYS = ("connections", "logins", "rejected_logins", "logouts", "messages_in", "messages_out",
             "heartbeats_received", "heartbeats_sent", "accepted", "rejected", "executions", "canceled",
             "cancel_pending", "cancel_rejects", "replaced", "modified", "ignored", "bad_messages", "itch_messages")
STOCK_DIRECTORY = {"market_category": "Q", "financial_status_indicator": "N", "round_lot_size": 100,
                   "round_lots_only": "N", "issue_classification": "C", "issue_sub_type": "Z", "authenticity": "P",
                   "short_sale_threshold_indicator": "N", "ipo_flag": " ", "luld_reference_price_tier": "1",
                   "etp_flag": "N", "etp_leverage_factor": 0, "inverse_indicator": "N"}


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


def itch_message(t: str, locate: int, timestamp_ns: int, **values) -> bytes:
    """One ITCH 5.0 message from itch_schema's layout: alpha fields from str, the others from int."""
    _, total, fields = ITCH[t]
    out = bytearray(t.encode() + locate.to_bytes(2, "big") + b"\0\0" + timestamp_ns.to_bytes(6, "big"))
    for f in fields:
        v = values[f.name]
        out += str(v).encode("ascii").ljust(f.size)[: f.size] if f.kind == "a" else int(v).to_bytes(f.size, "big")
    assert len(out) == total
    return bytes(out)


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

    @property
    def on_book(self) -> bool:
        return self.fields.get("display") != "N" and self.fields.get("cross_type", "N") == "N"


@dataclass(eq=False)
class _Account:
    store: list = field(default_factory=list)  # outbound payloads; sequence number = index + 1
    orders: dict = field(default_factory=dict)  # live and finished orders by token / UserRefNum
    last_ref: int = 0  # 5.0: highest UserRefNum used
    conn: object = None  # the connection serving this account now


class _Closed(Exception):
    """The connection is over (logout, close, timeout, takeover, stop, protocol error)."""


class Gateway:
    """OUCH `version` ("4.2" | "5.0") order entry for `users` (name → password)."""

    def __init__(self, version: str, users: dict[str, str], host: str = "127.0.0.1", port: int = 0, clock=wall_clock,
                 fill_schedule=default_fill_schedule, itch_sink=None, symbols=None, session: str = "OUCH000001",
                 heartbeat_interval: float = 1.0, client_timeout: float = 15.0, first_order_ref: int = 1):
        self.n = names(version)
        self.version = version
        self.users = dict(users)
        self.session = sb.normalize_session(session)
        self.clock, self.fill_schedule, self.itch_sink = clock, fill_schedule, itch_sink
        self.symbols = None if symbols is None else list(symbols)
        self.heartbeat_interval, self.client_timeout = heartbeat_interval, client_timeout
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        self.ended = False
        self._accounts = {u: _Account() for u in self.users}
        self._locates: dict[str, int] = {}
        self._refs = itertools.count(first_order_ref)
        self._matches = itertools.count(1)
        self._due: list = []  # heap of (due time, tie, order, shares)
        self._tie = itertools.count()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._bind = (host, port)
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------------------ control
    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError("gateway is not started")
        return self._listener.getsockname()[:2]

    def start(self) -> "Gateway":
        with self._lock:
            for sym in self.symbols or ():
                self._locate(sym)
            for acct in self._accounts.values():
                self._emit(acct, "S", event_code="S")
        self._listener = socket.create_server(self._bind)
        self._listener.settimeout(0.05)
        for name, target in (("gateway-accept", self._accept_loop), ("gateway-fills", self._fill_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._threads:
            self._threads[0].join()  # the acceptor first: once it has seen the flag it starts no more connections
        for t in list(self._threads):
            t.join()
        self._threads.clear()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def end_session(self) -> None:
        """System Event 'E' to every account; connections then send End of Session and close."""
        with self._lock:
            for acct in self._accounts.values():
                self._emit(acct, "S", event_code="E")
            self.ended = True

    def messages(self, user: str) -> list[bytes]:
        """The account's outbound messages so far; message k has sequence number k + 1."""
        with self._lock:
            return list(self._accounts[user].store)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    # --------------------------------------------------------------------------------- messages
    def _ns(self) -> int:
        return int(self.clock() * 1_000_000_000) % NS_PER_DAY

    def _emit(self, acct: _Account, t: str, **fields) -> None:
        acct.store.append(encode(self.version, "out", t, timestamp=self._ns(), **fields))

    def _itch(self, t: str, symbol: str, **values) -> None:
        if self.itch_sink is not None:
            self.stats["itch_messages"] += 1
            self.itch_sink(itch_message(t, self._locate(symbol), self._ns(), **values))

    def _locate(self, symbol: str) -> int:
        loc = self._locates.get(symbol)
        if loc is None:
            loc = self._locates[symbol] = len(self._locates) + 1
            self._itch("R", symbol, stock=symbol, **STOCK_DIRECTORY)
        return loc

    def _order_fields(self, o: _Order) -> dict:
        n = self.n
        return {n.side: o.side, n.qty: o.leaves, n.symbol: o.symbol, "price": o.price, **o.fields,
                "order_reference_number": o.ref, "order_state": "L" if o.live else "D"}

    def _add_to_book(self, o: _Order) -> None:
        side = "B" if o.side == "B" else "S"
        firm = o.fields.get("firm") or o.fields.get("appendage", {}).get("firm", "")
        kw = dict(order_reference_number=o.ref, buy_sell_indicator=side, shares=o.leaves, stock=o.symbol,
                  price=o.price)
        if o.fields.get("display") == "A":
            self._itch("F", o.symbol, attribution=firm or "XDPF", **kw)
        else:
            self._itch("A", o.symbol, **kw)

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
        if o.on_book:
            self._add_to_book(o)
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
        o.live = o.leaves > 0
        self.stats["executions"] += 1
        self._emit(o.account, "E", **{n.id: o.id, n.exec_qty: shares, n.exec_price: o.price}, liquidity_flag="A",
                   match_number=match)
        if o.on_book:
            self._itch("E", o.symbol, order_reference_number=o.ref, executed_shares=shares, match_number=match)
        elif o.fields.get("cross_type", "N") == "N":
            self._itch("P", o.symbol, order_reference_number=0, buy_sell_indicator="B", shares=shares,
                       stock=o.symbol, price=o.price, match_number=match)

    def _remove(self, o: _Order, shares: int, reason: str) -> None:
        """Canceled for `shares` of o's open shares (all of them: the order is done)."""
        o.leaves -= shares
        o.live = o.leaves > 0
        self.stats["canceled"] += 1
        self._emit(o.account, "C", **{self.n.id: o.id, self.n.cancel_qty: shares}, reason=reason)
        self._shrink(o, shares)

    def _shrink(self, o: _Order, shares: int) -> None:
        if o.on_book and shares:
            if o.live:
                self._itch("X", o.symbol, order_reference_number=o.ref, canceled_shares=shares)
            else:
                self._itch("D", o.symbol, order_reference_number=o.ref)

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
        while not self._stopping.wait(IDLE_POLL):
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
        if old.on_book and new.on_book:
            self._itch("U", new.symbol, original_order_reference_number=old.ref, new_order_reference_number=new.ref,
                       shares=new.leaves, price=new.price)
        elif old.on_book:
            self._itch("D", old.symbol, order_reference_number=old.ref)
        elif new.on_book:
            self._add_to_book(new)
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
        self._shrink(o, dec)

    # --------------------------------------------------------------------------------- network
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.count("connections")
            t = threading.Thread(target=_Connection(self, sock).run, name="gateway-conn", daemon=True)
            self._threads[:] = [x for x in self._threads if x.is_alive()] + [t]
            t.start()


class _Connection:
    """One client: Login Request first, then client packets in, the account's new messages out, heartbeats."""

    def __init__(self, gw: Gateway, sock: socket.socket):
        self.gw, self.sock, self.inbuf = gw, sock, bytearray()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.last_recv = self.last_send = time.monotonic()
        self.user, self.acct, self.next = None, None, 0

    def run(self) -> None:
        try:
            while True:
                for ptype, payload in self._packets():
                    self._packet(ptype, payload)
                if self.acct is not None:
                    self._push()
                self.poller.poll(IDLE_POLL * 1000)
        except (_Closed, OSError):
            pass  # the normal ends of a connection
        finally:
            self.sock.close()

    def _packets(self):
        """(type byte, payload) of each complete packet received so far, then _Closed if the client closed
        or went silent, or the gateway is stopping."""
        over = None
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            if not data:
                over = "client closed the connection"
                break
            self.inbuf += data
            self.last_recv = time.monotonic()
        pos = 0
        try:
            while (pkt := sb.next_packet(self.inbuf, pos, len(self.inbuf))) is not None:
                ptype, start, length, pos = pkt
                yield ptype, bytes(self.inbuf[start : start + length])
        except ValueError as e:
            raise _Closed(str(e)) from None
        finally:
            del self.inbuf[:pos]
        if over is None and time.monotonic() - self.last_recv > self.gw.client_timeout:
            over = "client silent"
        if over or self.gw._stopping.is_set():
            raise _Closed(over or "gateway stopping")

    def _send(self, data: bytes) -> None:
        self.sock.settimeout(self.gw.client_timeout)  # a client that reads nothing for that long is dropped
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)
        self.last_send = time.monotonic()

    def _packet(self, ptype: int, payload: bytes) -> None:
        gw = self.gw
        if self.acct is None:
            if ptype != ord(sb.LOGIN_REQUEST):
                raise _Closed(f"packet type {chr(ptype)!r} before login")
            self._login(payload)
        elif ptype == ord(sb.UNSEQUENCED):
            try:
                gw.handle(self.user, payload)
            except ValueError as e:
                raise _Closed(f"bad OUCH message: {e}") from None
        elif ptype == ord(sb.CLIENT_HEARTBEAT):
            gw.count("heartbeats_received")
        elif ptype == ord(sb.LOGOUT_REQUEST):
            gw.count("logouts")
            raise _Closed("logout")
        elif ptype != ord(sb.DEBUG):
            raise _Closed(f"unexpected packet type {chr(ptype)!r} after login")

    def _login(self, payload: bytes) -> None:
        gw = self.gw
        try:
            user, password, session, seq = sb.parse_login_request(payload)
        except ValueError as e:
            raise _Closed(str(e)) from None
        code = b"A" if gw.users.get(user) != password else None
        if code is None and session not in (sb.BLANK_SESSION, gw.session):
            code = b"S"
        if code is not None:
            gw.count("rejected_logins")
            self._send(sb.encode_login_rejected(code))
            raise _Closed("login rejected")
        with gw._lock:
            self.user, self.acct = user, gw._accounts[user]
            self.acct.conn = self  # takes over from an older connection of this user
            top = len(self.acct.store) + 1
            self.next = min(seq, top) if seq >= 1 else top
            gw.stats["logins"] += 1
        self._send(sb.encode_login_accepted(gw.session, self.next))

    def _push(self) -> None:
        """The account's messages not sent yet; End of Session once the session ended; or a heartbeat."""
        gw = self.gw
        with gw._lock:
            if self.acct.conn is not self:
                raise _Closed("another login took over")
            batch, ended = self.acct.store[self.next - 1 :], gw.ended
        if batch:
            self._send(b"".join(sb.encode_sequenced(m) for m in batch))
            self.next += len(batch)
            gw.count("messages_out", len(batch))
        elif ended:
            self._send(sb.END_OF_SESSION_PACKET)
            raise _Closed("end of session")
        elif time.monotonic() - self.last_send >= gw.heartbeat_interval:
            self._send(sb.SERVER_HEARTBEAT_PACKET)
            gw.count("heartbeats_sent")
