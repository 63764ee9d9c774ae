"""A book's state as one object, and every question about it that numpy answers: the arrays of its storage
(multicast.book.storage) with its state, side rows and counters, its top-of-book event batch, and depth, symbols,
trading states, counters and checksum read from them.

BookView imports no numba. OrderBook (multicast.book.order_book) is a BookView that applies messages through
numba and grows its storage; ExportedBook (multicast.book.exported) one that applies them through the same code
exported ahead of time, so that `xdpfeed book` on a file reads, builds and reports a book without loading numba.
"""

import hashlib
import threading

import numpy as np

from xdpfeed.capture import huge_arrays as H
from xdpfeed.multicast.book import storage
from xdpfeed.multicast.book.storage import (
    ASK,
    BID,
    HANDLE_MASK,
    SD_REFS_BACK,
    SD_SIZE,
    SD_START,
    ST_BASE,
    ST_HASH_N,
    ST_LIVE,
    ST_SYSTEM,
    STAT_NAMES,
)

LIVE = np.dtype([("ref", np.uint64), ("price", np.uint32), ("shares", np.uint32), ("level", np.uint32),
                 ("locate", np.uint16), ("side", np.uint8)])  # live_orders(): every live order with its reference
STATE_NAMES = {ord("H"): "halted", ord("P"): "paused", ord("Q"): "quotation-only", ord("T"): "trading", 0: "unknown"}


class BookView:
    """Books for every stock locate of one ITCH feed, as arrays: storage.Arrays (window, hash, ladder, levels,
    lfree, last, stocks, events) and the state, side rows and counters beside them. The subclass that applies
    messages owns them and grows them; the queries here read them. on_events: called with each full or flushed
    batch of top-of-book events (EVENT records). state: the state, side rows and counters (new_state, new_sides,
    new_stats), when they were made beforehand (multicast.book.early_start)."""

    def __init__(self, arrays: storage.Arrays, on_events=None, state: tuple | None = None):
        self.window, self.hash, self.ladder, self.levels, self.lfree, self.last, self.stocks, self.events = arrays
        # per (locate, side) in sides: its vector in the ladder and its best level
        self.state, self.sides, self.stats = state or (storage.new_state(), storage.new_sides(), storage.new_stats())
        self.n_events = 0
        self.on_events = on_events

    def _args(self) -> tuple:
        """The arrays the compiled loops take, in their order (multicast.book.apply)."""
        return (self.window, self.hash, self.state, self.ladder, self.levels, self.lfree, self.sides, self.last,
                self.stocks, self.events)

    def storage(self) -> tuple:
        """Every array of the book's storage: the compiled loops' and the stats."""
        return (*self._args(), self.stats)

    @property
    def storage_bytes(self) -> int:
        """Bytes of the storage (what prefaulting populates)."""
        return sum(a.nbytes for a in self.storage())

    def prefault(self, background: bool = False) -> threading.Thread | None:
        """Make every page of the book's storage the process's before messages arrive, changing no value: the same
        pages faulted in one by one from the compiled loop cost it up to 150 ms on a 10M-message day (and a live
        feed a page fault in the middle of a burst). The kernel populates them (capture.huge_arrays.populate); a
        kernel without that has each page written onto itself, one pass of 10-30 ms for the default sizes here.
        background: populate from a thread (returned) while the caller goes on and the book is used (a Feed's
        start-up does not wait for it; the pages fault in on first use where it has not got to them yet, and
        without the kernel's populate the thread does nothing: writing pages in use would race)."""
        arrays = self.storage()
        if background:
            t = threading.Thread(target=lambda: all(H.populate(a) for a in arrays), name="book-prefault",
                                 daemon=True)
            t.start()
            return t
        for a in arrays:
            if not H.populate(a):
                H.write_pages(a)
        return None

    def live_orders_table(self) -> np.ndarray:
        """Every live order with its reference (LIVE records), in no particular order."""
        return live_orders(self.window, self.hash, self.state)

    @property
    def live_orders(self) -> int:
        return int(self.state[ST_LIVE])

    def stat(self) -> dict:
        d = {name: int(self.stats[i]) for i, name in enumerate(STAT_NAMES)}
        d["live_orders"] = self.live_orders
        d["hash_orders"] = int(self.state[ST_HASH_N])
        d["refs_out_of_order"] = int(self.sides[:, SD_REFS_BACK].sum())  # adds that make a side's queues unknown
        return d

    def depth(self, locate: int, side: int, n: int | None = None) -> list[list[int]]:
        """[[price, shares, orders], ...] best first, at most n levels."""
        lv = self.side_levels(locate * 2 + side)[::-1][:n]
        return [[int(p), int(s), int(o)] for p, s, o in zip(lv["price"], lv["shares"], lv["orders"], strict=True)]

    def depths(self, locates, n: int | None = None) -> list[tuple[list[list[int]], list[list[int]]]]:
        """(bids, asks) of each locate as depth() gives them, gathered for all at once (a whole book's report)."""
        sidx = (np.asarray(locates, dtype=np.int64)[:, None] * 2 + np.arange(2)).ravel()
        start, size = self.sides[sidx, SD_START], self.sides[sidx, SD_SIZE]
        count = size if n is None else np.minimum(size, n)
        first = np.cumsum(count) - count  # where each side's levels begin in the gathered rows
        k = np.arange(int(count.sum())) - np.repeat(first, count)  # 0 for a side's best, 1 for the next...
        lv = self.levels[(self.ladder[np.repeat(start + size - 1, count) - k] & HANDLE_MASK).astype(np.int64)]
        rows = np.stack([lv["price"].astype(np.int64), lv["shares"].astype(np.int64),
                         lv["orders"].astype(np.int64)], axis=1).tolist()
        sides = [rows[f : f + c] for f, c in zip(first.tolist(), count.tolist(), strict=True)]
        return list(zip(sides[0::2], sides[1::2], strict=True))

    def checksum(self) -> str:
        """SHA-256 over every stock's full depth (price, shares, orders per level, both sides) and the
        live order count: two books with the same checksum show consumers the same market."""
        return book_checksum(self)

    def side_levels(self, sidx: int) -> np.ndarray:
        """Side sidx's levels (LEVEL records), worst price first."""
        start, n = int(self.sides[sidx, SD_START]), int(self.sides[sidx, SD_SIZE])
        return self.levels[(self.ladder[start : start + n] & HANDLE_MASK).astype(np.int64)]

    def bbo(self, locate: int) -> tuple[int, int, int, int]:
        """(bid price, bid shares, ask price, ask shares); 0, 0 for an empty side."""
        b = self.depth(locate, BID, 1)
        a = self.depth(locate, ASK, 1)
        return (*(b[0][:2] if b else (0, 0)), *(a[0][:2] if a else (0, 0)))

    def symbol(self, locate: int) -> str:
        v = int(self.stocks[locate]["symbol"])
        return v.to_bytes(8, "big").rstrip(b" \x00").decode("latin-1")

    def symbols(self, locates) -> list[str]:
        """symbol() of each locate, read for all at once."""
        raw = self.stocks["symbol"][np.asarray(locates, dtype=np.int64)].astype(">u8").view("S8").tolist()
        return [r.rstrip(b" \x00").decode("latin-1") for r in raw]

    def trading_states(self, locates) -> list[str]:
        """trading_state() of each locate, read for all at once."""
        codes = self.stocks["trading_state"][np.asarray(locates, dtype=np.int64)].tolist()
        return [STATE_NAMES.get(c, "unknown") for c in codes]

    def locate_of(self, symbol: str) -> int | None:
        key = int.from_bytes(symbol.encode("latin-1").ljust(8, b" ")[:8], "big")
        hits = np.flatnonzero(self.stocks["symbol"] == key)
        return int(hits[0]) if hits.size else None

    def locates(self) -> list[int]:
        """Stock locates with at least one live order."""
        sizes = self.sides[:, SD_SIZE].reshape(-1, 2).sum(axis=1)
        return [int(x) for x in np.flatnonzero(sizes)]

    def trading_state(self, locate: int) -> str:
        return STATE_NAMES.get(int(self.stocks[locate]["trading_state"]), "unknown")

    @property
    def system_event(self) -> str:
        v = int(self.state[ST_SYSTEM])
        return chr(v) if v else ""

    def mark_stale(self, locate: int | None = None, stale: bool = True) -> None:
        """Flag one stock's book (or every book) as not to be trusted, e.g. after an unrecoverable gap."""
        if locate is None:
            self.stocks["stale"] = int(stale)
        else:
            self.stocks[locate]["stale"] = int(stale)

    def is_stale(self, locate: int) -> bool:
        return bool(self.stocks[locate]["stale"])

    def stale_flags(self, locates) -> list[bool]:
        """is_stale() of each locate, read for all at once."""
        return [bool(x) for x in self.stocks["stale"][np.asarray(locates, dtype=np.int64)].tolist()]

    def flush_events(self):
        """Hand the pending top-of-book events to on_events (if any) and start a new batch."""
        if self.n_events and self.on_events is not None:
            self.on_events(self.events[: self.n_events])
        self.n_events = 0


def book_checksum(book) -> str:
    """OrderBook.checksum of `book` (an OrderBook, or any book with its live_orders, locates() and side_levels())."""
    h = hashlib.sha256(book.live_orders.to_bytes(8, "little"))
    for locate in book.locates():
        h.update(int(locate).to_bytes(2, "little"))
        for side in (BID, ASK):
            lv = book.side_levels(int(locate) * 2 + side)
            h.update(lv.size.to_bytes(4, "little"))
            h.update(np.ascontiguousarray(lv["price"], dtype="<i8").tobytes())
            h.update(np.ascontiguousarray(lv["shares"], dtype="<i8").tobytes())
            h.update(np.ascontiguousarray(lv["orders"], dtype="<i8").tobytes())
    return h.hexdigest()


def live_orders(w, h, state) -> np.ndarray:
    """Every live order of the window and the hash, with its reference (LIVE records, window first)."""
    slots = np.flatnonzero(w["live"])
    base = int(state[ST_BASE])
    inw, inh = w[slots], h[h["ref"] != 0]
    out = np.zeros(slots.size + inh.size, dtype=LIVE)
    out["ref"][: slots.size] = base + ((slots - base) & (w.size - 1))
    out["ref"][slots.size :] = inh["ref"]
    for f in ("price", "shares", "level", "locate", "side"):
        out[f][: slots.size] = inw[f]
        out[f][slots.size :] = inh["order"][f]
    return out
