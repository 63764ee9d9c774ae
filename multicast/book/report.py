"""What `xdpfeed book` prints and writes: final depth per stock (table or JSON), with each level's queue
when asked, and the top-of-book event file (CSV, or Parquet when pyarrow is installed)."""

import json

import numpy as np

from xdpfeed.multicast.book.view import ASK, BID

STAT_KEYS = ("live_orders", "adds", "executions", "cancels", "deletes", "replaces", "unknown_refs", "trades",
             "cross_trades", "broken_trades", "duplicate_adds", "over_executions", "over_cancels", "bad_side",
             "zero_refs", "bbo_events", "hash_grows", "pool_grows")


def _names(book, locates) -> list[str]:
    return [sym or f"#{loc}" for loc, sym in zip(locates, book.symbols(locates), strict=True)]


def selected_locates(book, symbols):
    """Locates to report: the named symbols (unknown names raise ValueError), else every stock with orders."""
    if not symbols:
        return book.locates()
    out = []
    for sym in symbols:
        loc = book.locate_of(sym)
        if loc is None:
            raise ValueError(f"symbol {sym!r} never appeared in the input")
        out.append(loc)
    return out


def _queues(book, locate, side, levels):
    """[[[ref, shares], ...] per level, first in line first], or the reason the side's queues are not known."""
    try:
        return [book.queue(locate, side, price).tolist() for price, _, _ in levels], None
    except ValueError as e:
        return None, str(e)


def as_json(book, locates, depth, queues=False) -> str:
    doc = {}
    for loc, name, (bids, asks) in zip(locates, _names(book, locates), book.depths(locates, depth), strict=True):
        d = doc[name] = {"bids": bids, "asks": asks}
        if queues:
            for key, side in (("bid", BID), ("ask", ASK)):
                d[f"{key}_queues"], why = _queues(book, loc, side, d[f"{key}s"])
                if why:
                    d[f"{key}_queues_unknown"] = why
    stats = book.stat()
    doc["stats"] = {k: stats[k] for k in STAT_KEYS}
    return json.dumps(doc)


def as_table(book, locates, depth, queues=False) -> str:
    lines = []
    head = f"  {'orders':>10} {'shares':>10} {'bid':>12} | {'ask':<12} {'shares':<10} orders"
    for loc, name, state, st, (bids, asks) in zip(locates, _names(book, locates), book.trading_states(locates),
                                                  book.stale_flags(locates), book.depths(locates, depth), strict=True):
        lines.append(f"{name}  (locate {loc}, {state}){'  STALE' if st else ''}")
        lines.append(head)
        for i in range(max(len(bids), len(asks))):
            b = f"{bids[i][2]:>10} {bids[i][1]:>10} {bids[i][0]:>12}" if i < len(bids) else " " * 34
            a = f"{asks[i][0]:<12} {asks[i][1]:<10} {asks[i][2]}" if i < len(asks) else ""
            lines.append(f"  {b} | {a}".rstrip())
        if queues:
            for name, side, levels in (("bid", BID, bids), ("ask", ASK, asks)):
                qs, why = _queues(book, loc, side, levels)
                if why:
                    lines.append(f"  {name} queues not known: {why}")
                    continue
                for (price, _, _), q in zip(levels, qs, strict=True):
                    lines.append(f"  {name} {price} queue: " + " ".join(f"{r}:{s}" for r, s in q))
    stats = book.stat()
    lines.append("  ".join(f"{k}: {stats[k]}" for k in STAT_KEYS))
    return "\n".join(lines)


def consolidated_json(view: dict) -> str:
    """The consolidated view (ConsolidatedBook.view) as JSON: per symbol {"bid": [price, shares, venues] or
    null, "ask": ..., "depth": {"bid": [[price, shares, {venue: shares}], ...], "ask": [...]}}."""
    return json.dumps(view, indent=1)


def consolidated_table(view: dict, book) -> str:
    """The consolidated view as a table: per symbol the best bid and offer with their venues (LOCKED or
    CROSSED when across venues they meet or cross), then the merged levels with each venue's shares."""
    lines = []
    for sym, q in view.items():
        def side(x):
            return f"{x[0]} x {x[1]} ({x[2]})" if x else "-"

        mark = ""
        if q["bid"] and q["ask"]:
            mark = "  LOCKED" if q["bid"][0] == q["ask"][0] else "  CROSSED" if q["bid"][0] > q["ask"][0] else ""
        lines.append(f"{sym}  bid {side(q['bid'])}  ask {side(q['ask'])}{mark}")
        bids, asks = q["depth"]["bid"], q["depth"]["ask"]
        for i in range(max(len(bids), len(asks))):
            b = f"{_venues(bids[i][2]):>28} {bids[i][1]:>10} {bids[i][0]:>12}" if i < len(bids) else " " * 52
            a = f"{asks[i][0]:<12} {asks[i][1]:<10} {_venues(asks[i][2])}" if i < len(asks) else ""
            lines.append(f"  {b} | {a}".rstrip())
    s = book.summary()
    lines.append(f"symbols: {s['symbols']}  best bid/offer changes: {s['events']}  locked now: {s['locked_now']}  "
                 f"crossed now: {s['crossed_now']}  left out: {', '.join(s['excluded_venues']) or 'none'}")
    return "\n".join(lines)


def _venues(by_venue: dict) -> str:
    return " ".join(f"{v}:{n}" for v, n in by_venue.items())


class EventWriter:
    """Top-of-book events to CSV or Parquet (chosen by the file name), batch by batch."""

    COLUMNS = ("seq", "timestamp", "locate", "symbol", "bid_price", "bid_shares", "ask_price", "ask_shares")

    def __init__(self, path: str, book):
        self.path, self.book = path, book
        self.parquet = path.endswith(".parquet")
        self.rows = 0
        if self.parquet:
            import pyarrow  # noqa: F401  (checked by the CLI before the run starts)

            self._parts = []
        else:
            self._f = open(path, "w")
            self._f.write(",".join(self.COLUMNS) + "\n")

    def __call__(self, events: np.ndarray):
        symbols = self.book.stocks["symbol"][events["locate"]].astype(">u8").view("S8")
        if self.parquet:
            self._parts.append((events.copy(), symbols.copy()))
        else:
            cols = [events[c].tolist() for c in ("seq", "timestamp", "locate")]
            names = [s.rstrip(b" ").decode("latin-1") for s in symbols.tolist()]
            rest = [events[c].tolist() for c in ("bid_price", "bid_shares", "ask_price", "ask_shares")]
            self._f.writelines(",".join(map(str, row)) + "\n" for row in zip(*cols, names, *rest, strict=True))
        self.rows += len(events)

    def close(self):
        if not self.parquet:
            self._f.close()
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        ev = np.concatenate([e for e, _ in self._parts]) if self._parts else np.zeros(0, self.book.events.dtype)
        sy = np.concatenate([s for _, s in self._parts]) if self._parts else np.zeros(0, "S8")
        table = pa.table({c: (np.char.rstrip(sy).astype(str) if c == "symbol" else ev[c]) for c in self.COLUMNS})
        pq.write_table(table, self.path)
