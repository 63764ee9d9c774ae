"""The consolidated book: the best bid and offer of each symbol across several venues' books (Nasdaq, BX,
PSX: each its own TotalView-ITCH feed), with the venue and size of each, and a merged depth view.

Stock locates differ per venue: each venue's locate is mapped to one symbol id through the symbol of its
Stock Directory ('R') message (the venue's `OrderBook` has it); a symbol quoted on one venue only is normal.
The venues' own top-of-book events (multicast.book.storage.EVENT, once per batch) drive it: a compiled kernel
keeps each venue's best bid and offer per symbol and recomputes the consolidated one for the symbols that
changed, emitting a consolidated event (CEVENT) when it moved:

    seq, timestamp      the message that caused it (of venue `feed`); 0 for a venue's state change
    feed                index of the venue (in `names`) whose message or state caused it
    symbol              symbol id (`symbols[id]` is its name)
    bid_price, bid_shares, bid_venues   the best bid across venues; shares summed over the venues quoting
    ask_price, ask_shares, ask_venues   it; *_venues a bit mask of venue indexes (0 and 0 shares: no quote)
    flags               LOCKED (best bid = best ask), CROSSED (bid > ask), EXCLUDED (a venue with quotes for
                        the symbol is left out, being STALE), VENUE_STATE (caused by a venue's state change)

A STALE venue's quotes are left out until it is SYNCHRONIZED again (`set_included`), and the events of that
change say so. Locked and crossed markets across venues are reported (flags, counts), never "fixed". A
venue whose book was cleared (a new session) has its quotes dropped (`clear_venue`).
"""

import numpy as np

from xdpfeed.capture.jit import njit
from xdpfeed.multicast.book.storage import EVENT
from xdpfeed.multicast.book.store import ASK, BID

CEVENT = np.dtype([("seq", np.uint64), ("timestamp", np.uint64), ("bid_shares", np.uint64),
                   ("ask_shares", np.uint64), ("bid_price", np.uint32), ("ask_price", np.uint32),
                   ("symbol", np.uint32), ("feed", np.uint8), ("bid_venues", np.uint8), ("ask_venues", np.uint8),
                   ("flags", np.uint8)], align=True)
LOCKED, CROSSED, EXCLUDED, VENUE_STATE = 1, 2, 4, 8
MAX_VENUES = 8
MAX_SYMBOLS = 1 << 17

# stats[]
EVENTS, LOCKED_ENTERED, CROSSED_ENTERED, LOCKED_NOW, CROSSED_NOW, UNKNOWN_LOCATES = range(6)
N_STATS = 6
# per-venue quote fields, consolidated fields
VB_PX, VB_SH, VA_PX, VA_SH = range(4)
CB_PX, CB_SH, CB_V, CA_PX, CA_SH, CA_V = range(6)


@njit(cache=True, nogil=True)
def _recompute(sym, vq, ok, cons, cflag, stats):
    """The consolidated quote of `sym` from the included venues; returns True when it changed."""
    bpx = np.int64(0)
    bsh = np.int64(0)
    bv = np.int64(0)
    apx = np.int64(0)
    ash = np.int64(0)
    av = np.int64(0)
    for v in range(vq.shape[1]):
        if not ok[v]:
            continue
        p = vq[sym, v, VB_PX]
        if p > 0:
            if p > bpx:
                bpx, bsh, bv = p, vq[sym, v, VB_SH], np.int64(1) << v
            elif p == bpx:
                bsh += vq[sym, v, VB_SH]
                bv |= np.int64(1) << v
        p = vq[sym, v, VA_PX]
        if p > 0:
            if apx == 0 or p < apx:
                apx, ash, av = p, vq[sym, v, VA_SH], np.int64(1) << v
            elif p == apx:
                ash += vq[sym, v, VA_SH]
                av |= np.int64(1) << v
    flag = 0
    if bpx > 0 and apx > 0:
        if bpx == apx:
            flag = LOCKED
        elif bpx > apx:
            flag = CROSSED
    old = cflag[sym] & (LOCKED | CROSSED)
    if flag != old:
        if old == LOCKED:
            stats[LOCKED_NOW] -= 1
        elif old == CROSSED:
            stats[CROSSED_NOW] -= 1
        if flag == LOCKED:
            stats[LOCKED_NOW] += 1
            stats[LOCKED_ENTERED] += 1
        elif flag == CROSSED:
            stats[CROSSED_NOW] += 1
            stats[CROSSED_ENTERED] += 1
        cflag[sym] = flag
    c = cons[sym]
    if c[CB_PX] == bpx and c[CB_SH] == bsh and c[CB_V] == bv and c[CA_PX] == apx and c[CA_SH] == ash \
            and c[CA_V] == av:
        return False
    c[CB_PX], c[CB_SH], c[CB_V], c[CA_PX], c[CA_SH], c[CA_V] = bpx, bsh, bv, apx, ash, av
    return True


@njit(cache=True, nogil=True)
def _emit(out, n, sym, venue, seq, ts, cons, cflag, vq, ok, extra):
    e = out[n]
    c = cons[sym]
    e.seq, e.timestamp, e.symbol, e.feed = seq, ts, sym, venue
    e.bid_price, e.bid_shares, e.bid_venues = c[CB_PX], c[CB_SH], c[CB_V]
    e.ask_price, e.ask_shares, e.ask_venues = c[CA_PX], c[CA_SH], c[CA_V]
    flags = cflag[sym] | extra
    for v in range(vq.shape[1]):
        if not ok[v] and (vq[sym, v, VB_PX] > 0 or vq[sym, v, VA_PX] > 0):
            flags |= EXCLUDED
    e.flags = flags


@njit(cache=True, nogil=True)
def apply_events(venue, events, loc2sym, vq, ok, cons, cflag, out, n_out, stats):
    """A venue's top-of-book events into its quotes; consolidated events for what moved, into out[n_out:].
    Returns the new n_out (the caller hands them over when the buffer fills)."""
    n = n_out
    for i in range(events.size):
        if n == out.size:
            return -1 - i  # full: hand over, then call again from event i
        ev = events[i]
        sym = loc2sym[ev.locate]
        if sym < 0:
            stats[UNKNOWN_LOCATES] += 1
            continue
        q = vq[sym, venue]
        q[VB_PX], q[VB_SH], q[VA_PX], q[VA_SH] = ev.bid_price, ev.bid_shares, ev.ask_price, ev.ask_shares
        if ok[venue] and _recompute(sym, vq, ok, cons, cflag, stats):
            _emit(out, n, sym, venue, ev.seq, ev.timestamp, cons, cflag, vq, ok, 0)
            n += 1
            stats[EVENTS] += 1
    return n


@njit(cache=True, nogil=True)
def venue_changed(venue, syms, vq, ok, cons, cflag, out, n_out, stats):
    """After venue's inclusion changed or its quotes were dropped: recompute the symbols it quoted
    (`syms`) and emit what moved. Returns the new n_out, or -1 - i when out filled at syms[i]."""
    n = n_out
    for i in range(syms.size):
        if n == out.size:
            return -1 - i
        sym = syms[i]
        if _recompute(sym, vq, ok, cons, cflag, stats):
            _emit(out, n, sym, venue, 0, 0, cons, cflag, vq, ok, VENUE_STATE)
            n += 1
            stats[EVENTS] += 1
    return n


class ConsolidatedBook:
    """The venues' books (OrderBook, in `names` order) consolidated; `on_events(CEVENT array)` is called
    with what moved, after each venue batch."""

    def __init__(self, names: list[str], books: list, on_events=None, events: int = 1 << 16):
        if not 1 <= len(names) <= MAX_VENUES:
            raise ValueError(f"a consolidated book takes 1..{MAX_VENUES} venues, not {len(names)}")
        if len(set(names)) != len(names):
            raise ValueError(f"venue names must differ: {names}")
        self.names, self.books = list(names), list(books)
        self.on_events = on_events
        nv = len(names)
        self.loc2sym = np.full((nv, 65536), -1, dtype=np.int32)
        self.symbols: list[str] = []
        self._ids: dict[str, int] = {}
        self.vq = np.zeros((1024, nv, 4), dtype=np.int64)
        self.cons = np.zeros((1024, 6), dtype=np.int64)
        self.cflag = np.zeros(1024, dtype=np.uint8)
        self.ok = np.ones(nv, dtype=np.uint8)
        self.out = np.zeros(events, dtype=CEVENT)
        self.stats = np.zeros(N_STATS, dtype=np.int64)
        # compiled code loaded now, not when the first quote arrives (a stall of tens of ms on a live feed)
        apply_events(0, np.zeros(0, dtype=EVENT), self.loc2sym[0], self.vq, self.ok, self.cons, self.cflag, self.out,
                     0, self.stats)
        venue_changed(0, np.zeros(0, dtype=np.int64), self.vq, self.ok, self.cons, self.cflag, self.out, 0, self.stats)

    # -- symbols ------------------------------------------------------------------------------------
    def symbol_id(self, name: str) -> int:
        sid = self._ids.get(name)
        if sid is None:
            sid = self._ids[name] = len(self.symbols)
            self.symbols.append(name)
            if sid >= self.vq.shape[0]:
                if sid >= MAX_SYMBOLS:
                    raise ValueError(f"more than {MAX_SYMBOLS} symbols")
                grow = self.vq.shape[0]
                self.vq = np.concatenate([self.vq, np.zeros_like(self.vq)])
                self.cons = np.concatenate([self.cons, np.zeros_like(self.cons)])
                self.cflag = np.concatenate([self.cflag, np.zeros(grow, dtype=np.uint8)])
        return sid

    def _map(self, venue: int, locates: np.ndarray) -> None:
        """Symbol ids for the venue's locates not mapped yet, from its book's Stock Directory."""
        row = self.loc2sym[venue]
        new = np.unique(locates[row[locates] < 0])
        book = self.books[venue]
        for loc in new.tolist():
            name = book.symbol(loc) if book is not None else ""
            row[loc] = self.symbol_id(name or f"{self.names[venue]}#{loc}")  # no directory: the venue's own

    # -- what drives it -------------------------------------------------------------------------------
    def apply(self, venue: int, events: np.ndarray) -> None:
        """A venue's top-of-book events (EVENT records of one batch)."""
        if not len(events):
            return
        self._map(venue, events["locate"])
        start = 0
        while True:
            n = apply_events(venue, events[start:], self.loc2sym[venue], self.vq, self.ok, self.cons, self.cflag,
                             self.out, 0, self.stats)
            if n >= 0:
                self._hand_over(n)
                return
            self._hand_over(self.out.size)
            start += -1 - n

    def set_included(self, venue: int, included: bool) -> None:
        """Leave a venue's quotes out (STALE) or take them in again (SYNCHRONIZED)."""
        if bool(self.ok[venue]) == included:
            return
        self.ok[venue] = included
        self._venue_changed(venue)

    def clear_venue(self, venue: int) -> None:
        """Drop a venue's quotes (its book was cleared: a new session)."""
        syms = self._quoted(venue)
        self.vq[:, venue, :] = 0
        self._venue_changed(venue, syms)

    def _quoted(self, venue: int) -> np.ndarray:
        q = self.vq[: len(self.symbols), venue]
        return np.flatnonzero((q[:, VB_PX] > 0) | (q[:, VA_PX] > 0)).astype(np.int64)

    def _venue_changed(self, venue: int, syms: np.ndarray | None = None) -> None:
        syms = self._quoted(venue) if syms is None else syms
        while True:
            n = venue_changed(venue, syms, self.vq, self.ok, self.cons, self.cflag, self.out, 0, self.stats)
            if n >= 0:
                self._hand_over(n)
                return
            self._hand_over(self.out.size)
            syms = syms[-1 - n:]

    def _hand_over(self, n: int) -> None:
        if n and self.on_events is not None:
            self.on_events(self.out[:n])

    # -- what it shows ---------------------------------------------------------------------------------
    def venues_of(self, mask: int) -> str:
        """The venue names of a mask, sorted, comma-separated ("bx,nasdaq")."""
        return ",".join(sorted(self.names[v] for v in range(len(self.names)) if mask >> v & 1))

    def bbo(self, symbol: str):
        """((bid price, shares, venues) or None, (ask price, shares, venues) or None) for a symbol name."""
        sid = self._ids.get(symbol)
        if sid is None:
            return None, None
        c = self.cons[sid]
        bid = (int(c[CB_PX]), int(c[CB_SH]), self.venues_of(int(c[CB_V]))) if c[CB_PX] else None
        ask = (int(c[CA_PX]), int(c[CA_SH]), self.venues_of(int(c[CA_V]))) if c[CA_PX] else None
        return bid, ask

    def depth(self, symbol: str, side: int, levels: int = 5) -> list:
        """Levels merged across the included venues, best first: [[price, shares, {venue: shares}], ...]."""
        sid = self._ids.get(symbol)
        if sid is None:
            return []
        merged: dict[int, dict[str, int]] = {}
        for v, name in enumerate(self.names):
            if not self.ok[v] or self.books[v] is None:
                continue
            loc = np.flatnonzero(self.loc2sym[v] == sid)
            if not loc.size:
                continue
            for price, shares, _ in self.books[v].depth(int(loc[0]), side, levels):
                merged.setdefault(price, {})[name] = shares
        best = sorted(merged, reverse=side == BID)[:levels]  # bids highest first, asks lowest first
        return [[p, sum(merged[p].values()), dict(sorted(merged[p].items()))] for p in best]

    def view(self, levels: int = 5) -> dict:
        """Every symbol quoted somewhere: {"bid": [price, shares, venues] or None, "ask": ..., "depth":
        {"bid": [[price, shares, {venue: shares}], ...], "ask": [...]}} (prices raw ITCH integers)."""
        out = {}
        for name in self.symbols:
            bid, ask = self.bbo(name)
            depth = {"bid": self.depth(name, BID, levels), "ask": self.depth(name, ASK, levels)}
            if bid is None and ask is None and not depth["bid"] and not depth["ask"]:
                continue
            out[name] = {"bid": list(bid) if bid else None, "ask": list(ask) if ask else None, "depth": depth}
        return out

    def summary(self) -> dict:
        s = self.stats
        return {"symbols": len(self.symbols), "events": int(s[EVENTS]), "locked_now": int(s[LOCKED_NOW]),
                "crossed_now": int(s[CROSSED_NOW]), "locked_entered": int(s[LOCKED_ENTERED]),
                "crossed_entered": int(s[CROSSED_ENTERED]), "unknown_locates": int(s[UNKNOWN_LOCATES]),
                "excluded_venues": [n for v, n in enumerate(self.names) if not self.ok[v]]}
