"""A plain-Python ITCH order book: dicts, readable, slow; the yardstick for multicast.book.order_book.

It applies the book-building rules of docs/protocols.md §4.5 to decoded message dicts (the
shape of multicast.itch.reference.decode) and counts the same anomalies as the compiled book.
"""

from collections import defaultdict

BID, ASK = 0, 1


class ReferenceBook:
    def __init__(self):
        self.orders = {}  # ref -> [locate, side, price, shares]
        self.levels = defaultdict(dict)  # (locate, side) -> {price: [shares, orders]}
        self.symbols = {}  # locate -> stock
        self.trading_state = {}  # locate -> (state, reason)
        self.system_event = ""
        self.stats = defaultdict(int)
        self.events = []  # (seq, timestamp, bid px, bid shares, ask px, ask shares, locate) on every change
        self._last = {}

    # -- book changes -------------------------------------------------------------------------
    def _add(self, ref, locate, side, price, shares):
        if ref == 0:
            self.stats["zero_refs"] += 1
            return
        if ref in self.orders:
            self.stats["duplicate_adds"] += 1
            return
        self.orders[ref] = [locate, side, price, shares]
        lv = self.levels[(locate, side)].setdefault(price, [0, 0])
        lv[0] += shares
        lv[1] += 1

    def _remove_shares(self, ref, n, counter):
        o = self.orders.get(ref)
        if o is None:
            self.stats["unknown_refs"] += 1
            return None
        self.stats[counter] += 1
        locate, side, price, shares = o
        if n > shares:
            self.stats["over_" + counter] += 1
            n = shares
        lv = self.levels[(locate, side)][price]
        lv[0] -= n
        o[3] -= n
        if o[3] == 0:
            self._drop(ref)
        return o

    def _drop(self, ref):
        locate, side, price, shares = self.orders.pop(ref)
        book = self.levels[(locate, side)]
        lv = book[price]
        lv[0] -= shares
        lv[1] -= 1
        if lv[1] == 0:
            del book[price]

    def apply(self, m: dict):
        locate = self._apply(m)
        if locate is not None:
            bbo = self.bbo(locate)
            if self._last.get(locate, (0, 0, 0, 0)) != bbo:
                self._last[locate] = bbo
                self.events.append((m.get("seq", 0), m["timestamp"], bbo[1], bbo[3], bbo[0], bbo[2], locate))

    def _apply(self, m: dict):
        """Apply one message; the stock locate whose book it changed (or tried to), else None."""
        t = m["type"]
        if t in "AF":
            self.stats["adds"] += 1
            side = {"B": BID, "S": ASK}.get(m["buy_sell_indicator"])
            if side is None:
                self.stats["bad_side"] += 1
                return None
            self._add(m["order_reference_number"], m["stock_locate"], side, m["price"], m["shares"])
            return m["stock_locate"]
        elif t in "EC":
            o = self._remove_shares(m["order_reference_number"], m["executed_shares"], "executions")
            return o and o[0]
        elif t == "X":
            o = self._remove_shares(m["order_reference_number"], m["canceled_shares"], "cancels")
            return o and o[0]
        elif t == "D":
            o = self.orders.get(m["order_reference_number"])
            if o is None:
                self.stats["unknown_refs"] += 1
                return None
            self.stats["deletes"] += 1
            self._drop(m["order_reference_number"])
            return o[0]
        elif t == "U":
            o = self.orders.get(m["original_order_reference_number"])
            if o is None:
                self.stats["unknown_refs"] += 1
                return None
            self.stats["replaces"] += 1
            locate, side = o[0], o[1]
            self._drop(m["original_order_reference_number"])
            self._add(m["new_order_reference_number"], locate, side, m["price"], m["shares"])
            return locate
        elif t in "PQB":
            self.stats["trades" if t == "P" else "cross_trades" if t == "Q" else "broken_trades"] += 1
        elif t == "R":
            self.symbols[m["stock_locate"]] = m["stock"]
        elif t == "H":
            self.trading_state[m["stock_locate"]] = (m["trading_state"], m["reason"])
        elif t == "S":
            self.system_event = m["event_code"]
        return None

    # -- queries ------------------------------------------------------------------------------
    def depth(self, locate, side, n=None):
        """[[price, shares, orders], ...] best first."""
        book = self.levels.get((locate, side), {})
        prices = sorted(book, reverse=(side == BID))[:n]
        return [[p, book[p][0], book[p][1]] for p in prices]

    def bbo(self, locate):
        """(bid price, bid shares, ask price, ask shares); zeros for an empty side."""
        b = self.depth(locate, BID, 1)
        a = self.depth(locate, ASK, 1)
        bid = b[0][:2] if b else [0, 0]
        ask = a[0][:2] if a else [0, 0]
        return (*bid, *ask)

    def locates(self):
        return sorted({loc for (loc, _), book in self.levels.items() if book})


def consolidated(books: dict, excluded=()) -> dict:
    """The consolidated best bid and offer, in plain Python, from the venues' final books: {name: OrderBook}
    (or anything with `locates()`, `symbol(locate)` and `bbo(locate)`). {symbol: {"bid": (price, shares,
    "venue,venue") or None, "ask": ...}} over the venues not in `excluded`; a venue's locate goes to the
    symbol its Stock Directory named."""
    quotes: dict[str, dict[str, tuple]] = {}
    for venue, book in books.items():
        if venue in excluded:
            continue
        for loc in book.locates():
            bid_px, bid_sh, ask_px, ask_sh = book.bbo(loc)
            quotes.setdefault(book.symbol(loc) or f"{venue}#{loc}", {})[venue] = (bid_px, bid_sh, ask_px, ask_sh)
    out = {}
    for symbol, by_venue in quotes.items():
        best = {}
        for side, px_i, better in (("bid", 0, max), ("ask", 2, min)):
            prices = [q[px_i] for q in by_venue.values() if q[px_i] > 0]
            if not prices:
                best[side] = None
                continue
            p = better(prices)
            at = sorted(v for v, q in by_venue.items() if q[px_i] == p)
            best[side] = (p, sum(by_venue[v][px_i + 1] for v in at), ",".join(at))
        if best["bid"] or best["ask"]:
            out[symbol] = best
    return out
