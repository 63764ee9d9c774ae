"""OrderTracker: lifecycles from hand-written decoded messages (exact average prices, replace links,
cancel pending / cancel reject, broken trades, duplicate ids), every impossible transition reported as
an anomaly and not applied, and the tracker following whole sessions against the gateway over loopback
(both versions, with a disconnect and resume in the middle)."""

import pytest
from test_gateway import USERS, FakeClock, Flow, decode, drive

from xdpfeed.multicast.exchange.gateway import Gateway
from xdpfeed.multicast.ouch.session import OuchClient
from xdpfeed.multicast.ouch.tracker import OrderTracker, names

from helpers import eventually

P = 1_000_000  # $100.0000


class Msgs:
    """Decoded-message dicts of one version with only the fields the tracker reads."""

    def __init__(self, version):
        self.v, self.n = version, names(version)

    def id(self, k):
        return f"T{k}" if self.v == "4.2" else k

    def enter(self, k, qty=300, side="B", price=P):
        n = self.n
        return {"type": "O", n.id: self.id(k), n.side: side, n.qty: qty, n.symbol: "AAPL", "price": price}

    def accepted(self, k, qty=300, side="B", price=P, ref=None):
        n = self.n
        return {"type": "A", n.id: self.id(k), n.side: side, n.qty: qty, n.symbol: "AAPL", "price": price,
                "order_reference_number": ref or 100 + k, "order_state": "L"}

    def executed(self, k, qty, price=P, match=1):
        n = self.n
        return {"type": "E", n.id: self.id(k), n.exec_qty: qty, n.exec_price: price, "match_number": match,
                "liquidity_flag": "A"}

    def canceled(self, k, qty, reason="U"):
        return {"type": "C", self.n.id: self.id(k), self.n.cancel_qty: qty, "reason": reason}

    def replace(self, old, new, qty, price):
        return {"type": "U", self.n.replace_old_in: self.id(old), self.n.replace_new_in: self.id(new), self.n.qty: qty,
                "price": price}

    def replaced(self, old, new, qty, price):
        n = self.n
        return {"type": "U", n.replace_old_out: self.id(old), n.replace_new_out: self.id(new), n.side: "B", n.qty: qty,
                n.symbol: "AAPL", "price": price, "order_reference_number": 200 + new, "order_state": "L"}

    def simple(self, t, k, **kw):
        return {"type": t, self.n.id: self.id(k), **kw}


@pytest.fixture(params=("4.2", "5.0"))
def m(request):
    return Msgs(request.param)


def test_fills_give_exact_average_price_then_cancel(m):
    t = OrderTracker(m.v)
    t.on_inbound(m.enter(1))
    assert t.order(m.id(1))["state"] == "pending-new"
    t.on_outbound(m.accepted(1), seq=1)
    t.on_outbound(m.executed(1, 100, P, 1), seq=2)
    t.on_outbound(m.executed(1, 50, P + 100, 2), seq=3)
    t.on_outbound(m.executed(1, 7, P + 33, 3), seq=4)
    o = t.order(m.id(1))
    assert (o["state"], o["executed"], o["leaves"]) == ("partially-filled", 157, 143)
    assert (o["avg_price_num"], o["avg_price_den"]) == (100 * P + 50 * (P + 100) + 7 * (P + 33), 157)
    t.on_inbound(m.simple("X", 1, **{m.n.qty: 0}))
    t.on_outbound(m.canceled(1, 143), seq=5)
    o = t.order(m.id(1))
    assert (o["state"], o["leaves"], o["executed"], o["order_reference_number"]) == ("canceled", 0, 157, 101)
    assert [h[0] for h in o["history"]] == ["enter", "accepted", "executed", "executed", "executed", "cancel-request",
                                            "canceled"]
    assert t.anomalies == []


def test_replace_links_old_and_new_then_fill(m):
    t = OrderTracker(m.v)
    t.on_inbound(m.enter(1))
    t.on_outbound(m.accepted(1))
    t.on_outbound(m.executed(1, 100))
    t.on_inbound(m.replace(1, 2, 150, P + 500))
    t.on_outbound(m.replaced(1, 2, 150, P + 500))
    t.on_outbound(m.executed(2, 150, P + 500, 9))
    old, new = t.order(m.id(1)), t.order(m.id(2))
    assert (old["state"], old["replaced_by"], old["leaves"], old["executed"]) == ("replaced", m.id(2), 0, 100)
    assert (new["state"], new["replaces"], new["quantity"], new["price"]) == ("filled", m.id(1), 150, P + 500)
    assert (new["avg_price_num"], new["avg_price_den"], new["order_reference_number"]) == (150 * (P + 500), 150, 202)
    assert t.anomalies == []


def test_cancel_pending_cancel_reject_and_broken_trade(m):
    t = OrderTracker(m.v)
    t.on_inbound(m.enter(1))
    t.on_outbound(m.accepted(1))
    t.on_outbound(m.simple("I", 1))  # Cancel Reject on a live order: stays accepted
    assert t.order(m.id(1))["state"] == "accepted"
    t.on_outbound(m.simple("P", 1))
    assert t.order(m.id(1))["state"] == "cancel-pending"
    t.on_outbound(m.executed(1, 100, P, 5))  # the cross still fills
    assert t.order(m.id(1))["state"] == "cancel-pending"
    t.on_outbound(m.simple("I", 1))  # back to live
    assert t.order(m.id(1))["state"] == "partially-filled"
    t.on_outbound(m.executed(1, 60, P + 200, 6))
    t.on_outbound(m.simple("B", 1, match_number=5, reason="E"))  # the first execution is broken
    o = t.order(m.id(1))
    assert (o["executed"], o["leaves"], o["avg_price_num"], o["avg_price_den"]) == (60, 140, 60 * (P + 200), 60)
    t.on_outbound(m.simple("B", 1, match_number=5, reason="E"))
    t.on_outbound(m.simple("B", 1, match_number=77, reason="E"))
    assert t.anomalies == [f"Broken Trade for already broken match number 5 on order {m.id(1)!r}",
                           f"Broken Trade for unknown match number 77 on order {m.id(1)!r}"]


def test_modified_priority_update_aiq_cancel_and_trade_correction():
    m, t = Msgs("5.0"), OrderTracker("5.0")
    t.on_inbound(m.enter(1, side="S"))
    t.on_outbound(m.accepted(1, side="S"))
    t.on_outbound(m.simple("M", 1, side="T", quantity=200))
    t.on_outbound(m.simple("T", 1, price=P - 100, display="Y", order_reference_number=555))
    t.on_outbound(m.executed(1, 50, P - 100, 3))
    t.on_outbound(m.simple("F", 1, quantity=40, price=P - 50, match_number=3, liquidity_flag="A", reason="C"))
    t.on_outbound(m.simple("D", 1, decrement_shares=150, reason="Q", quantity_prevented_from_trading=0))
    t.on_outbound(m.simple("M", 1, side="S", quantity=5))
    o = t.order(1)
    got = (o["state"], o["side"], o["leaves"], o["price"], o["order_reference_number"])
    assert got == ("canceled", "T", 0, P - 100, 555)
    assert (o["executed"], o["avg_price_num"], o["avg_price_den"]) == (40, 40 * (P - 50), 40)
    assert t.anomalies == ["Order Modified for order 1 in state canceled"]


def test_rejected_and_duplicate_id(m):
    t = OrderTracker(m.v)
    t.on_inbound(m.enter(1))
    t.on_outbound(m.simple("J", 1, reason="S" if m.v == "4.2" else 0x17))
    t.on_inbound(m.enter(2))
    t.on_outbound(m.accepted(2))
    t.on_inbound(m.enter(2))  # reuses a live order's id: the venue rejects that attempt
    t.on_outbound(m.simple("J", 2, reason="O"))
    assert t.order(m.id(1))["state"] == "rejected"
    o = t.order(m.id(2))
    assert o["state"] == "accepted" and o["history"][-1] == ("duplicate-rejected", "O")
    assert t.anomalies == [f"Enter Order reuses id {m.id(2)!r} (order is accepted)"]


def test_impossible_transitions_are_reported_not_applied(m):
    t = OrderTracker(m.v)
    t.on_inbound(m.enter(1))
    t.on_outbound(m.accepted(1), seq=1)
    t.on_outbound(m.canceled(1, 300), seq=2)
    t.on_outbound(m.executed(1, 10), seq=3)  # fill on a canceled order
    t.on_outbound(m.accepted(9), seq=4)  # accept of an unknown id
    t.on_outbound(m.accepted(9), seq=4)  # sequence number again
    t.on_outbound(m.executed(9, 301), seq=7)  # gap, then an overfill
    t.on_outbound(m.simple("P", 1), seq=8)
    t.on_outbound(m.canceled(42, 1), seq=9)
    t.on_outbound({"type": "?"}, seq=10)
    i1, i9 = repr(m.id(1)), repr(m.id(9))
    assert t.anomalies == [
        f"Executed for order {i1} in state canceled",
        f"Accepted for unknown order {i9}",
        "sequence 4 again (last applied 4): not applied",
        "sequence gap: 5..6 missing",
        f"Executed 301 shares of order {i9} with 300 leaves",
        f"Cancel Pending for order {i1} in state canceled",
        f"Canceled for unknown order {m.id(42)!r}",
        "outbound message type '?' not understood",
    ]
    o1, o9 = t.order(m.id(1)), t.order(m.id(9))
    assert (o1["state"], o1["executed"], o9["state"], o9["executed"]) == ("canceled", 0, "accepted", 0)
    assert ("anomaly", f"Executed for order {i1} in state canceled") in o1["history"]


def test_user_ref_num_must_increase():
    t = OrderTracker("5.0")
    m = Msgs("5.0")
    t.on_inbound(m.enter(5))
    t.on_inbound(m.enter(3))
    t.on_inbound(m.replace(5, 4, 10, P))
    assert t.anomalies == ["Enter Order with UserRefNum 3 not above the last one (5)",
                           "Replace Order with UserRefNum 4 not above the last one (5)"]
    with pytest.raises(ValueError, match="version"):
        OrderTracker("4.1")


@pytest.mark.parametrize("v", ("4.2", "5.0"))
def test_tracker_follows_a_session_across_a_reconnect(v):
    clock, f = FakeClock(), Flow(v)
    sched = {f.id(1): [(0.0, 30), (1.0, 30)], f.id(2): [(1.0, 400)], f.id(4): [(2.0, 10)], f.id(5): [(0.0, 5)]}
    tracker = OrderTracker(v)

    def on_message(seq, payload):
        tracker.on_outbound(decode(v, "out", payload), seq)

    def send(c, payload):
        tracker.on_inbound(decode(v, "in", payload))
        c.send(payload)

    with Gateway(v, USERS, clock=clock, symbols=["AAPL"], fill_schedule=lambda o: sched.get(o["id"], [])) as gw:
        c = OuchClient(gw.address, "ALICE", "alicepw", v, clock=FakeClock(), on_message=on_message)
        send(c, f.enter(1, "B", 100, price=P))
        send(c, f.enter(2, "S", 400, price=P + 100))
        send(c, f.enter(3, "B", 10, sym="NOPE"))
        send(c, f.enter(4, "B", 50, price=P - 100, cross="C"))
        drive([c], lambda: c.next_seq > 6)  # S A E A J A
        c.close()
        clock.t += 1.0  # order 1 fills 30 more, order 2 fills completely while disconnected
        eventually(lambda: len(gw.messages("ALICE")) == 8)
        c.reconnect()
        send(c, f.replace(1, 5, 60, P + 50))
        send(c, f.cancel(4))
        drive([c], lambda: c.next_seq > 11)  # E E U E P
        clock.t += 1.0
        drive([c], lambda: c.next_seq > 13)  # E C: the cross fills 10, then the rest is canceled
        c.logout()
    got = {o["id"]: o for o in tracker.orders()}
    assert tracker.anomalies == [] and tracker.last_seq == 13 and tracker.system_events == ["S"]
    state = {k: (o["state"], o["leaves"], o["executed"], o["avg_price_num"], o["avg_price_den"])
             for k, o in got.items()}
    assert state == {
        f.id(1): ("replaced", 0, 60, 60 * P, 60),
        f.id(2): ("filled", 0, 400, 400 * (P + 100), 400),
        f.id(3): ("rejected", 0, 0, 0, 0),
        f.id(4): ("canceled", 0, 10, 10 * (P - 100), 10),
        f.id(5): ("partially-filled", 55, 5, 5 * (P + 50), 5),
    }
    assert got[f.id(5)]["replaces"] == f.id(1) and got[f.id(1)]["replaced_by"] == f.id(5)
    assert [h[0] for h in got[f.id(4)]["history"]] == ["enter", "accepted", "cancel-request", "cancel-pending",
                                                       "executed", "canceled"]
