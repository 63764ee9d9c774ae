"""OUCH 4.2 / 5.0 order lifecycle: every order of one session, followed from the decoded messages.

`OrderTracker` is fed both directions as dicts from `ouch_reference.decode` (client → venue with
`on_inbound`, venue → client with `on_outbound`). Orders are keyed by Order Token (4.2) or UserRefNum
(5.0) (docs/protocols.md §5.1, §6.2). States:

    pending-new ─► accepted ─► partially-filled ─► filled
         │            │  ▲            │
         ▼            ▼  │ cancel     ├─► canceled          (leaves reach 0 by Canceled / AIQ Canceled)
      rejected   cancel-pending ──────┤                     (Cancel Pending, back to live on Cancel Reject)
                                      └─► replaced          (Replaced: the old id links to the new one)

Quantities are integers; the average price is kept exactly as `avg_price_num / avg_price_den`
= Σ price × shares / Σ shares (price in raw 1/10 000 dollars), so no float ever touches money. A Broken
Trade takes its execution back out of both sums; a Trade Correction (5.0) replaces it.

A message that cannot happen in the order's state (a fill on a canceled order, an accept of an
unknown token, an overfill, a second sequence number, ...) is appended to `anomalies` as one line and
to the order's history, and is not applied to the order (a Replaced still creates the replacement).
"""

from dataclasses import dataclass, field

LIVE = ("accepted", "partially-filled", "cancel-pending")
DEAD = ("filled", "canceled", "rejected", "replaced")


@dataclass(frozen=True)
class Names:
    """Where one OUCH version keeps each field the tracker needs (snake_case of the OUCH specifications' names)."""

    id: str  # order key on every message about one order
    side: str
    qty: str  # Enter / Accepted / Replaced / Modify / Modified
    symbol: str
    exec_qty: str  # Executed
    exec_price: str  # Executed
    cancel_qty: str  # Canceled
    replace_old_in: str  # Replace Order (inbound)
    replace_new_in: str
    replace_old_out: str  # Replaced (outbound)
    replace_new_out: str


NAMES = {
    "4.2": Names("order_token", "buy_sell_indicator", "shares", "stock", "executed_shares", "execution_price",
                 "decrement_shares", "existing_order_token", "replacement_order_token", "previous_order_token",
                 "replacement_order_token"),
    "5.0": Names("user_ref_num", "side", "quantity", "symbol", "quantity", "price", "quantity",
                 "orig_user_ref_num", "user_ref_num", "orig_user_ref_num", "user_ref_num"),
}


def names(version: str) -> Names:
    if version not in NAMES:
        raise ValueError(f"OUCH version must be one of {sorted(NAMES)}, not {version!r}")
    return NAMES[version]


@dataclass
class Order:
    id: object
    state: str = "pending-new"
    symbol: str = ""
    side: str = ""
    quantity: int = 0
    price: int = 0
    leaves: int = 0
    executed: int = 0
    notional: int = 0  # Σ price × shares of the executions still standing
    order_reference_number: int | None = None
    cl_ord_id: str = ""
    replaces: object = None
    replaced_by: object = None
    duplicate_enters: int = 0  # Enter Orders that reused this id and still await their Rejected
    fills: dict = field(default_factory=dict)  # match number -> [shares, price, broken]
    history: list = field(default_factory=list)
    when: list = field(default_factory=list)  # the tracker's `context` when each history entry was made

    def as_dict(self) -> dict:
        return {"id": self.id, "state": self.state, "symbol": self.symbol, "side": self.side,
                "quantity": self.quantity, "price": self.price, "leaves": self.leaves, "executed": self.executed,
                "avg_price_num": self.notional, "avg_price_den": self.executed,
                "order_reference_number": self.order_reference_number, "cl_ord_id": self.cl_ord_id,
                "replaces": self.replaces, "replaced_by": self.replaced_by, "history": list(self.history),
                "when": list(self.when)}

    def live_state(self) -> str:
        return "partially-filled" if self.executed else "accepted"


class OrderTracker:
    """The orders of one OUCH session. `anomalies` lists one-line reasons, oldest first."""

    def __init__(self, version: str):
        self.version = version
        self.n = names(version)
        self._orders: dict = {}
        self.anomalies: list[str] = []
        self.system_events: list[str] = []
        self.next_user_ref_num: int | None = None  # from Account Query Response (5.0)
        self.last_seq: int | None = None
        self._max_ref = 0  # highest UserRefNum seen on an Enter or Replace (5.0: strictly increasing)
        self.context = None  # set by the caller before each message (e.g. capture time, sequence number)

    # ------------------------------------------------------------------------------------ queries
    def orders(self) -> list[dict]:
        """Every order in the order it was first seen."""
        return [o.as_dict() for o in self._orders.values()]

    def state_counts(self) -> dict[str, int]:
        """Orders per state."""
        out: dict[str, int] = {}
        for o in self._orders.values():
            out[o.state] = out.get(o.state, 0) + 1
        return out

    def live_ids(self) -> list:
        """Ids of the orders still open (accepted, partially filled, cancel pending), oldest first."""
        return [oid for oid, o in self._orders.items() if o.state in LIVE]

    def order(self, oid) -> dict | None:
        o = self._orders.get(oid)
        return None if o is None else o.as_dict()

    # ------------------------------------------------------------------------------------ helpers
    def _log(self, o: Order, *entry) -> None:
        o.history.append(entry)
        o.when.append(self.context)

    def _anomaly(self, text: str, order: Order | None = None) -> None:
        self.anomalies.append(text)
        if order is not None:
            self._log(order, "anomaly", text)

    def _find(self, oid, what: str) -> Order | None:
        o = self._orders.get(oid)
        if o is None:
            self._anomaly(f"{what} for unknown order {oid!r}")
        return o

    def _live(self, o: Order, what: str) -> bool:
        if o.state in LIVE:
            return True
        self._anomaly(f"{what} for order {o.id!r} in state {o.state}", o)
        return False

    def _new(self, oid, msg: dict, state: str) -> Order:
        n = self.n
        o = Order(oid, state, symbol=msg.get(n.symbol, ""), side=msg.get(n.side, ""),
                  quantity=int(msg.get(n.qty, 0)), price=int(msg.get("price", 0)), leaves=int(msg.get(n.qty, 0)),
                  cl_ord_id=msg.get("cl_ord_id", ""))
        self._orders[oid] = o
        return o

    def _check_ref(self, ref, what: str) -> None:
        if self.version == "5.0" and isinstance(ref, int):
            if ref <= self._max_ref:
                self._anomaly(f"{what} with UserRefNum {ref} not above the last one ({self._max_ref})")
            self._max_ref = max(self._max_ref, ref)

    # ------------------------------------------------------------------------------------ inbound
    def on_inbound(self, msg: dict) -> None:
        """A message the client sent (Enter 'O', Replace 'U', Cancel 'X', Modify 'M', others noted)."""
        n, t = self.n, msg.get("type")
        if t == "O":
            oid = msg[n.id]
            o = self._orders.get(oid)
            if o is not None:
                o.duplicate_enters += 1
                self._anomaly(f"Enter Order reuses id {oid!r} (order is {o.state})", o)
                return
            self._check_ref(oid, "Enter Order")
            o = self._new(oid, msg, "pending-new")
            self._log(o, "enter", o.quantity, o.price)
        elif t == "U":
            old_id, new_id = msg[n.replace_old_in], msg[n.replace_new_in]
            old = self._find(old_id, "Replace Order")
            if old is not None:
                self._log(old, "replace-request", new_id)
            if new_id in self._orders:
                self._anomaly(f"Replace Order reuses id {new_id!r} for the replacement", self._orders[new_id])
                self._orders[new_id].duplicate_enters += 1
                return
            self._check_ref(new_id, "Replace Order")
            new = self._new(new_id, msg, "pending-new")
            if old is not None:
                new.symbol, new.side = old.symbol, old.side
            new.replaces = old_id
            self._log(new, "replace-request", old_id, new.quantity, new.price)
        elif t == "X":
            o = self._find(msg[n.id], "Cancel Order")
            if o is not None:
                self._log(o, "cancel-request", int(msg.get(n.qty, 0)))
        elif t == "M":
            o = self._find(msg[n.id], "Modify Order")
            if o is not None:
                self._log(o, "modify-request", msg.get(n.side, ""), int(msg.get(n.qty, 0)))

    # ----------------------------------------------------------------------------------- outbound
    def on_outbound(self, msg: dict, seq: int | None = None) -> None:
        """A message the venue sent; with `seq` (its SoupBinTCP sequence number) duplicates and gaps are
        reported, and a duplicate is not applied twice."""
        if seq is not None:
            if self.last_seq is not None and seq <= self.last_seq:
                self._anomaly(f"sequence {seq} again (last applied {self.last_seq}): not applied")
                return
            if self.last_seq is not None and seq != self.last_seq + 1:
                self._anomaly(f"sequence gap: {self.last_seq + 1}..{seq - 1} missing")
            self.last_seq = seq
        t = msg.get("type")
        handler = getattr(self, f"_out_{t}", None) if isinstance(t, str) and len(t) == 1 else None
        if handler is None:
            self._anomaly(f"outbound message type {t!r} not understood")
            return
        handler(msg)

    def _out_S(self, msg: dict) -> None:  # System Event
        self.system_events.append(msg.get("event_code", ""))

    def _out_Q(self, msg: dict) -> None:  # Account Query Response (5.0)
        self.next_user_ref_num = msg.get("next_user_ref_num")

    def _out_A(self, msg: dict) -> None:  # Accepted
        oid = msg[self.n.id]
        o = self._orders.get(oid)
        if o is None:
            self._anomaly(f"Accepted for unknown order {oid!r}")
            o = self._new(oid, msg, "pending-new")
        elif o.state != "pending-new":
            self._anomaly(f"Accepted for order {oid!r} in state {o.state}", o)
            return
        self._accept(o, msg)
        self._log(o, "accepted", o.order_reference_number, o.quantity, o.price)

    def _accept(self, o: Order, msg: dict) -> None:
        n = self.n
        o.symbol = msg.get(n.symbol, o.symbol)
        o.side = msg.get(n.side, o.side)
        o.quantity = o.leaves = int(msg.get(n.qty, o.quantity))
        o.price = int(msg.get("price", o.price))
        o.order_reference_number = msg.get("order_reference_number")
        o.cl_ord_id = msg.get("cl_ord_id", o.cl_ord_id)
        o.state = "accepted"

    def _out_U(self, msg: dict) -> None:  # Replaced
        n = self.n
        old_id, new_id = msg[n.replace_old_out], msg[n.replace_new_out]
        old = self._find(old_id, "Replaced")
        if old is not None and self._live(old, "Replaced"):
            old.state, old.leaves, old.replaced_by = "replaced", 0, new_id
            self._log(old, "replaced-by", new_id)
        new = self._orders.get(new_id)
        if new is None:
            self._anomaly(f"Replaced into unknown order {new_id!r}")
            new = self._new(new_id, msg, "pending-new")
            new.replaces = old_id
        elif new.state != "pending-new":
            self._anomaly(f"Replaced into order {new_id!r} in state {new.state}", new)
            return
        self._accept(new, msg)
        self._log(new, "replaces", old_id, new.order_reference_number, new.quantity, new.price)

    def _out_E(self, msg: dict) -> None:  # Executed
        n = self.n
        o = self._find(msg[n.id], "Executed")
        if o is None or not self._live(o, "Executed"):
            return
        qty, price, match = int(msg[n.exec_qty]), int(msg[n.exec_price]), msg.get("match_number")
        if qty <= 0 or qty > o.leaves:
            self._anomaly(f"Executed {qty} shares of order {o.id!r} with {o.leaves} leaves", o)
            return
        if match in o.fills:
            self._anomaly(f"Executed with match number {match} twice on order {o.id!r}", o)
            return
        o.fills[match] = [qty, price, False]
        o.executed += qty
        o.notional += qty * price
        o.leaves -= qty
        self._log(o, "executed", qty, price, match)
        if o.leaves == 0:
            o.state = "filled"
        elif o.state != "cancel-pending":
            o.state = "partially-filled"

    def _cancel(self, msg: dict, dec_field: str, what: str) -> None:
        o = self._find(msg[self.n.id], what)
        if o is None or not self._live(o, what):
            return
        dec = int(msg[dec_field])
        if dec <= 0 or dec > o.leaves:
            self._anomaly(f"{what} of {dec} shares on order {o.id!r} with {o.leaves} leaves", o)
            return
        o.leaves -= dec
        self._log(o, "canceled", dec, msg.get("reason", ""))
        o.state = "canceled" if o.leaves == 0 else o.live_state()

    def _out_C(self, msg: dict) -> None:  # Canceled
        self._cancel(msg, self.n.cancel_qty, "Canceled")

    def _out_D(self, msg: dict) -> None:  # AIQ Canceled
        self._cancel(msg, "decrement_shares", "AIQ Canceled")

    def _out_J(self, msg: dict) -> None:  # Rejected
        o = self._find(msg[self.n.id], "Rejected")
        if o is None:
            return
        reason = msg.get("reason", "")
        if o.state == "pending-new":
            o.state, o.leaves = "rejected", 0
            self._log(o, "rejected", reason)
        elif o.duplicate_enters:
            o.duplicate_enters -= 1
            self._log(o, "duplicate-rejected", reason)
        else:
            self._anomaly(f"Rejected for order {o.id!r} in state {o.state}", o)

    def _out_P(self, msg: dict) -> None:  # Cancel Pending
        o = self._find(msg[self.n.id], "Cancel Pending")
        if o is not None and self._live(o, "Cancel Pending"):
            o.state = "cancel-pending"
            self._log(o, "cancel-pending")

    def _out_I(self, msg: dict) -> None:  # Cancel Reject
        o = self._find(msg[self.n.id], "Cancel Reject")
        if o is not None and self._live(o, "Cancel Reject"):
            o.state = o.live_state()
            self._log(o, "cancel-reject")

    def _out_B(self, msg: dict) -> None:  # Broken Trade: the execution no longer counts, leaves unchanged
        o = self._find(msg[self.n.id], "Broken Trade")
        if o is None:
            return
        match = msg.get("match_number")
        fill = o.fills.get(match)
        if fill is None or fill[2]:
            why = "unknown" if fill is None else "already broken"
            self._anomaly(f"Broken Trade for {why} match number {match} on order {o.id!r}", o)
            return
        qty, price, _ = fill
        fill[2] = True
        o.executed -= qty
        o.notional -= qty * price
        self._log(o, "broken", match, qty, msg.get("reason", ""))
        if o.state == "partially-filled" and o.executed == 0:
            o.state = "accepted"

    def _out_F(self, msg: dict) -> None:  # Trade Correction (5.0): new size and price of an execution
        o = self._find(msg[self.n.id], "Trade Correction")
        if o is None:
            return
        match = msg.get("match_number")
        fill = o.fills.get(match)
        if fill is None or fill[2]:
            self._anomaly(f"Trade Correction for unknown or broken match number {match} on order {o.id!r}", o)
            return
        qty, price = int(msg["quantity"]), int(msg["price"])
        o.executed += qty - fill[0]
        o.notional += qty * price - fill[0] * fill[1]
        fill[0], fill[1] = qty, price
        self._log(o, "corrected", match, qty, price, msg.get("reason", ""))

    def _out_M(self, msg: dict) -> None:  # Order Modified: side and the new open shares
        n = self.n
        o = self._find(msg[n.id], "Order Modified")
        if o is None or not self._live(o, "Order Modified"):
            return
        shares = int(msg[n.qty])
        if shares > o.leaves:
            self._anomaly(f"Order Modified raises order {o.id!r} from {o.leaves} to {shares} shares", o)
            return
        o.side, o.leaves = msg.get(n.side, o.side), shares
        self._log(o, "modified", o.side, shares)
        if shares == 0:
            o.state = "canceled"

    def _out_T(self, msg: dict) -> None:  # Order Priority Update
        o = self._find(msg[self.n.id], "Order Priority Update")
        if o is not None and self._live(o, "Order Priority Update"):
            o.price = int(msg.get("price", o.price))
            o.order_reference_number = msg.get("order_reference_number", o.order_reference_number)
            self._log(o, "priority-update", o.price, o.order_reference_number)

    def _out_R(self, msg: dict) -> None:  # Order Restated (5.0)
        o = self._find(msg[self.n.id], "Order Restated")
        if o is not None:
            self._log(o, "restated", msg.get("reason", ""))
