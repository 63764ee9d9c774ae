"""The simulated OUCH order-entry gateway, both versions: validation and its Rejected reasons, accepts and
scheduled partial fills on a fake clock, cancels (partial, full, Cancel Pending / Cancel Reject for
cross orders), replaces, modifies, IOC, and the ITCH it publishes applied to an OrderBook. Orders go in
through `Gateway.handle` (what a 'U' packet carries); the TCP side is in test_ouch_session.py.

Also holds what the other OUCH test files share: the message builders (Flow), FakeClock and the client
driving loop."""

import selectors
import time

import numpy as np
import pytest

from xdpfeed.multicast.book.order_book import ASK, BID, OrderBook
from xdpfeed.multicast.exchange.gateway import Gateway, no_fills
from xdpfeed.multicast.exchange.gateway_itch import itch_message
from xdpfeed.multicast.ouch import encode as ouch_encode
from xdpfeed.multicast.ouch import reference as ouch_reference
from xdpfeed.multicast.ouch.tracker import names

encode, decode = ouch_encode.encode, ouch_reference.decode

# ----------------------------------------------------------------------------------- shared helpers
VERSIONS = ("4.2", "5.0")
USERS = {"ALICE": "alicepw", "BOB": "bobpw"}
DEADLINE = 20.0  # real seconds any one loop may take before the test fails
P = 1_500_000  # $150.0000


class FakeClock:
    def __init__(self, t: float = 36_000.0):  # 10:00
        self.t = t

    def __call__(self) -> float:
        return self.t


class Flow:
    """OUCH inbound messages of one version; order k is token ORD000k (4.2) or UserRefNum k (5.0)."""

    def __init__(self, version: str):
        self.v, self.n = version, names(version)

    def id(self, k: int):
        return f"ORD{k:04d}" if self.v == "4.2" else k

    def enter(self, k, side="B", qty=100, sym="AAPL", price=P, ioc=False, display="Y", cross="N") -> bytes:
        if self.v == "4.2":
            return encode("4.2", "in", "O", order_token=self.id(k), buy_sell_indicator=side, shares=qty, stock=sym,
                          price=price, time_in_force=0 if ioc else 99999, firm="XDPF", display=display, capacity="A",
                          intermarket_sweep_eligibility="N", minimum_quantity=0, cross_type=cross, customer_type="N")
        return encode("5.0", "in", "O", user_ref_num=k, side=side, quantity=qty, symbol=sym, price=price,
                      time_in_force="3" if ioc else "0", display=display, capacity="A",
                      intermarket_sweep_eligibility="N", cross_type=cross, cl_ord_id=f"CL{k}",
                      appendage={"firm": "XDPF"})

    def cancel(self, k, keep=0) -> bytes:
        return encode(self.v, "in", "X", **{self.n.id: self.id(k), self.n.qty: keep})

    def modify(self, k, side, qty) -> bytes:
        return encode(self.v, "in", "M", **{self.n.id: self.id(k), self.n.side: side, self.n.qty: qty})

    def replace(self, old, new, qty, price) -> bytes:
        if self.v == "4.2":
            return encode("4.2", "in", "U", existing_order_token=self.id(old), replacement_order_token=self.id(new),
                          shares=qty, price=price, time_in_force=99999, display="Y",
                          intermarket_sweep_eligibility="N", minimum_quantity=0)
        return encode("5.0", "in", "U", orig_user_ref_num=old, user_ref_num=new, quantity=qty, price=price,
                      time_in_force="0", display="Y", intermarket_sweep_eligibility="N", cl_ord_id=f"CL{new}",
                      appendage={})

    def bad_side(self, k) -> bytes:
        raw = bytearray(self.enter(k))
        raw[15 if self.v == "4.2" else 5] = ord("X")
        return bytes(raw)


def drive(clients, until, tick=None) -> None:
    """Poll the clients with a selector until until() holds (every client being over also ends it)."""
    deadline = time.monotonic() + DEADLINE
    sel = selectors.DefaultSelector()
    try:
        while not until():
            live = [c for c in clients if c.state in ("connecting", "login", "active")]
            if not live:
                return
            assert time.monotonic() < deadline, f"stuck: {[(c.state, c.reason, c.next_seq) for c in clients]}"
            for c in live:
                sel.register(c.fileno(), selectors.EVENT_READ | (selectors.EVENT_WRITE if c.wants_write else 0))
            sel.select(0.02)
            for c in live:
                sel.unregister(c.fileno())
            if tick:
                tick()
            for c in live:
                c.poll()
    finally:
        sel.close()


def out(gw: Gateway, user="ALICE", start=0) -> list[dict]:
    return [decode(gw.version, "out", m) for m in gw.messages(user)[start:]]


def types_of(msgs) -> str:
    return "".join(m["type"] for m in msgs)


# ------------------------------------------------------------------------------------------ tests
@pytest.fixture(params=VERSIONS)
def v(request):
    return request.param


def gateway(v, clock, itch=None, **kw) -> Gateway:
    return Gateway(v, USERS, clock=clock, itch_sink=None if itch is None else itch.append, **kw)


def test_accept_then_scheduled_partial_fills(v):
    clock, f = FakeClock(), Flow(v)
    gw = gateway(v, clock, fill_schedule=lambda o: [(0.0, 30), (2.0, 20), (3.0, 500)])
    gw.handle("ALICE", f.enter(1, "S", 100, "AAPL", P))
    a, e1 = out(gw)
    n = f.n
    assert (a["type"], a[n.id], a[n.side], a[n.qty], a[n.symbol], a["price"]) == ("A", f.id(1), "S", 100, "AAPL", P)
    assert (a["order_reference_number"], a["order_state"], a["timestamp"]) == (1, "L", 36_000 * 10**9)
    assert (e1["type"], e1[n.id], e1[n.exec_qty], e1[n.exec_price], e1["match_number"]) == ("E", f.id(1), 30, P, 1)
    if v == "5.0":
        assert a["cl_ord_id"] == "CL1" and a["appendage"]["firm"] == "XDPF"
    clock.t += 1.999
    gw.run_due()
    assert len(gw.messages("ALICE")) == 2
    clock.t += 0.001
    gw.run_due()
    clock.t += 5
    gw.run_due()  # the last fill is capped at the 50 shares left
    e2, e3 = out(gw, start=2)
    assert (e2[n.exec_qty], e2["match_number"], e3[n.exec_qty], e3["match_number"]) == (20, 2, 50, 3)
    assert gw.stats["executions"] == 3 and gw.messages("BOB") == []


def test_rejected_reasons(v):
    f, n = Flow(v), names(v)
    gw = gateway(v, FakeClock(), symbols=["AAPL"], fill_schedule=no_fills)
    gw.handle("ALICE", f.enter(5))
    for _k, payload in ((6, f.bad_side(6)), (7, f.enter(7, qty=0)), (8, f.enter(8, sym="ZZZZ")),
                       (9, f.enter(9, price=0)), (10, f.enter(10, display="?")), (5, f.enter(5))):
        gw.handle("ALICE", payload)
    msgs = out(gw)
    assert types_of(msgs) == "AJJJJJJ"
    got = [(m[n.id], m["reason"]) for m in msgs[1:]]
    if v == "4.2":
        assert got == [(f.id(6), "O"), (f.id(7), "Z"), (f.id(8), "S"), (f.id(9), "X"), (f.id(10), "D"), (f.id(5), "O")]
    else:
        assert got == [(6, 0x0F), (7, 0x13), (8, 0x17), (9, 0x1D), (10, 0x03), (5, 0x0F)]
        gw.handle("ALICE", f.enter(4))  # UserRefNum not above the last one
        assert (out(gw)[-1]["type"], out(gw)[-1]["reason"]) == ("J", 0x0F)
    assert gw.stats["accepted"] == 1


def test_cancel_partial_then_rest_then_ignored(v):
    f, n, itch = Flow(v), names(v), []
    gw = gateway(v, FakeClock(), itch, fill_schedule=no_fills)
    gw.handle("ALICE", f.enter(1, qty=100))
    gw.handle("ALICE", f.cancel(1, keep=60))
    gw.handle("ALICE", f.cancel(1, keep=0))
    gw.handle("ALICE", f.cancel(1, keep=0))  # order gone: ignored, as OUCH does
    gw.handle("ALICE", f.cancel(99, keep=0))
    msgs = out(gw)
    assert types_of(msgs) == "ACC"
    assert [(m[n.cancel_qty], m["reason"]) for m in msgs[1:]] == [(40, "U"), (60, "U")]
    assert gw.stats["ignored"] == 2
    assert [m[:1] for m in itch] == [b"R", b"A", b"X", b"D"]


def test_replace_links_new_id_and_new_reference(v):
    f, n, itch = Flow(v), names(v), []
    gw = gateway(v, FakeClock(), itch, fill_schedule=lambda o: [(0.0, 10)])
    gw.handle("ALICE", f.enter(1, qty=100))
    gw.handle("ALICE", f.replace(1, 2, 80, P + 100))
    gw.handle("ALICE", f.cancel(1))  # the old id is finished
    gw.handle("ALICE", f.replace(2, 2, 50, P))  # replacement id already used
    msgs = out(gw)
    assert types_of(msgs) == "AEUEJ"
    u = msgs[2]
    assert (u[n.replace_new_out], u[n.replace_old_out], u[n.qty], u["price"]) == (f.id(2), f.id(1), 80, P + 100)
    assert (u["order_reference_number"], u[n.side], u[n.symbol]) == (2, "B", "AAPL")
    assert msgs[3][n.id] == f.id(2) and msgs[4][n.id] == f.id(2)
    assert [m[:1] for m in itch] == [b"R", b"A", b"E", b"U", b"E"]


def test_cross_order_cancel_reject_then_cancel_pending(v):
    clock, f, n = FakeClock(), Flow(v), names(v)
    gw = gateway(v, clock, fill_schedule=lambda o: [(5.0, 10)])
    gw.handle("ALICE", f.enter(1, qty=100, cross="C"))
    gw.handle("ALICE", f.cancel(1, keep=50))  # a cross order cannot be partially canceled
    gw.handle("ALICE", f.cancel(1, keep=0))  # pending until its cross
    clock.t += 5
    gw.run_due()
    msgs = out(gw)
    assert types_of(msgs) == "AIPEC"
    assert (msgs[3][n.exec_qty], msgs[4][n.cancel_qty], msgs[4]["reason"]) == (10, 90, "U")
    assert gw.stats["cancel_rejects"] == 1 and gw.stats["cancel_pending"] == 1


def test_modify_and_ioc(v):
    f, n, itch = Flow(v), names(v), []
    gw = gateway(v, FakeClock(), itch, fill_schedule=lambda o: [(0.0, 40)])
    gw.handle("ALICE", f.enter(1, "S", 100))
    gw.handle("ALICE", f.modify(1, "T", 30))  # sell → sell short, 60 left open → 30
    gw.handle("ALICE", f.modify(1, "B", 30))  # sell → buy is not a modify: ignored
    gw.handle("ALICE", f.enter(2, "B", 100, ioc=True))
    msgs = out(gw)
    assert types_of(msgs) == "AEMAEC"
    assert (msgs[2][n.side], msgs[2][n.qty]) == ("T", 30)
    assert (msgs[5][n.cancel_qty], msgs[5]["reason"]) == (60, "I")
    assert [m[:1] for m in itch] == [b"R", b"A", b"E", b"X", b"A", b"E", b"D"]


def test_itch_output_builds_the_book(v):
    clock, f, itch = FakeClock(), Flow(v), []
    sched = {f.id(1): [(0.0, 30)], f.id(4): [(1.0, 100)], f.id(13): [(0.0, 25)]}
    gw = gateway(v, clock, itch, symbols=["AAPL", "MSFT"], fill_schedule=lambda o: sched.get(o["id"], []))
    gw.handle("ALICE", f.enter(1, "B", 100, "AAPL", P))  # 70 rest
    gw.handle("ALICE", f.enter(2, "B", 200, "AAPL", P - 100))
    gw.handle("BOB", f.enter(11, "S", 300, "AAPL", P + 100, display="A"))  # attributable: 'F'
    gw.handle("BOB", f.enter(12, "S", 50, "MSFT", 4_000_000))
    gw.handle("BOB", f.enter(13, "S", 75, "MSFT", 4_000_000, display="N"))  # hidden: not on the book
    gw.handle("ALICE", f.enter(4, "B", 100, "MSFT", 3_990_000))  # filled a second later
    gw.handle("ALICE", f.replace(2, 5, 150, P - 200))
    gw.handle("BOB", f.cancel(12, keep=20))
    clock.t += 1
    gw.run_due()
    assert itch[0] == itch_message("R", 1, 36_000 * 10**9, stock="AAPL", market_category="Q",
                                   financial_status_indicator="N", round_lot_size=100, round_lots_only="N",
                                   issue_classification="C", issue_sub_type="Z", authenticity="P",
                                   short_sale_threshold_indicator="N", ipo_flag=" ", luld_reference_price_tier="1",
                                   etp_flag="N", etp_leverage_factor=0, inverse_indicator="N")
    kinds = [m[:1] for m in itch]
    assert kinds.count(b"F") == 1 and kinds.count(b"P") == 1  # attributable add; hidden order's execution
    book = OrderBook(window=1 << 10, hash_orders=1 << 6, levels=1 << 10, events=1 << 8)
    stream = np.frombuffer(b"".join(len(m).to_bytes(2, "big") + m for m in itch), dtype=np.uint8)
    assert book.apply_stream(stream) == stream.size
    aapl, msft = book.locate_of("AAPL"), book.locate_of("MSFT")
    assert (aapl, msft) == (1, 2)
    assert book.depth(aapl, BID) == [[P, 70, 1], [P - 200, 150, 1]]
    assert book.depth(aapl, ASK) == [[P + 100, 300, 1]]
    assert book.depth(msft, ASK) == [[4_000_000, 20, 1]] and book.depth(msft, BID) == []
    assert book.live_orders == 4


def test_store_holds_system_events_and_end_of_session(v):
    gw = gateway(v, FakeClock(), fill_schedule=no_fills, session="OUCH7")
    with gw:
        gw.handle("ALICE", Flow(v).enter(1))
        gw.end_session()
        assert types_of(out(gw)) == "SAS" and types_of(out(gw, "BOB")) == "SS"
        assert [m["event_code"] for m in out(gw) if m["type"] == "S"] == ["S", "E"]
        assert gw.session == b"OUCH7     " and gw.address[0] == "127.0.0.1"
