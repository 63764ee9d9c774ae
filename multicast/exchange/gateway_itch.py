"""What the simulated OUCH gateway's orders look like on the simulated ITCH 5.0 feed.

Owns the translation of order events into ITCH 5.0 message bytes (no length prefix) for the venue's feed
and book: a Stock Directory 'R' per stock on first use, 'A' ('F' for display `A`, attributed to the
firm), 'E' for executions of displayed orders and 'P' for hidden ones, 'X' / 'D' for reductions and
removals, 'U' for replaces that stay on the book (a 'D' or an 'A' when a replace leaves or joins it).
Cross orders never reach the book. Every message goes to `sink(bytes)` in event order.
"""

from xdpfeed.multicast.itch.schema import MESSAGES as ITCH

STOCK_DIRECTORY = {"market_category": "Q", "financial_status_indicator": "N", "round_lot_size": 100,
                   "round_lots_only": "N", "issue_classification": "C", "issue_sub_type": "Z", "authenticity": "P",
                   "short_sale_threshold_indicator": "N", "ipo_flag": " ", "luld_reference_price_tier": "1",
                   "etp_flag": "N", "etp_leverage_factor": 0, "inverse_indicator": "N"}
DEFAULT_ATTRIBUTION = "XDPF"


def itch_message(t: str, locate: int, timestamp_ns: int, **values) -> bytes:
    """One ITCH 5.0 message from itch_schema's layout: alpha fields from str, the others from int."""
    _, total, fields = ITCH[t]
    out = bytearray(t.encode() + locate.to_bytes(2, "big") + b"\0\0" + timestamp_ns.to_bytes(6, "big"))
    for f in fields:
        v = values[f.name]
        out += str(v).encode("ascii").ljust(f.size)[: f.size] if f.kind == "a" else int(v).to_bytes(f.size, "big")
    assert len(out) == total
    return bytes(out)


class ItchMirror:
    """Orders have: symbol, side (OUCH letter), leaves, price, ref (order reference number), live, fields
    (display, cross_type, firm or appendage) and on_book. `now_ns()` stamps the messages."""

    def __init__(self, sink, now_ns):
        self.sink = sink
        self.now_ns = now_ns
        self.messages = 0
        self._locates: dict[str, int] = {}

    def _emit(self, t: str, symbol: str, **values) -> None:
        if self.sink is not None:
            self.messages += 1
            self.sink(itch_message(t, self.locate(symbol), self.now_ns(), **values))

    def locate(self, symbol: str) -> int:
        """The stock locate code of `symbol`, announced with a Stock Directory message on first use."""
        loc = self._locates.get(symbol)
        if loc is None:
            loc = self._locates[symbol] = len(self._locates) + 1
            self._emit("R", symbol, stock=symbol, **STOCK_DIRECTORY)
        return loc

    def add(self, o) -> None:
        if not o.on_book:
            return
        side = "B" if o.side == "B" else "S"
        firm = o.fields.get("firm") or o.fields.get("appendage", {}).get("firm", "")
        kw = dict(order_reference_number=o.ref, buy_sell_indicator=side, shares=o.leaves, stock=o.symbol,
                  price=o.price)
        if o.fields.get("display") == "A":
            self._emit("F", o.symbol, attribution=firm or DEFAULT_ATTRIBUTION, **kw)
        else:
            self._emit("A", o.symbol, **kw)

    def executed(self, o, shares: int, match: int) -> None:
        if o.on_book:
            self._emit("E", o.symbol, order_reference_number=o.ref, executed_shares=shares, match_number=match)
        elif o.fields.get("cross_type", "N") == "N":
            self._emit("P", o.symbol, order_reference_number=0, buy_sell_indicator="B", shares=shares,
                       stock=o.symbol, price=o.price, match_number=match)

    def reduced(self, o, shares: int) -> None:
        """`shares` of o's open shares went away (o.live False: all of them)."""
        if o.on_book and shares:
            if o.live:
                self._emit("X", o.symbol, order_reference_number=o.ref, canceled_shares=shares)
            else:
                self._emit("D", o.symbol, order_reference_number=o.ref)

    def replaced(self, old, new) -> None:
        if old.on_book and new.on_book:
            self._emit("U", new.symbol, original_order_reference_number=old.ref, new_order_reference_number=new.ref,
                       shares=new.leaves, price=new.price)
        elif old.on_book:
            self._emit("D", old.symbol, order_reference_number=old.ref)
        else:
            self.add(new)
