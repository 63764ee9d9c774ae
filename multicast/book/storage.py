"""The order book's storage: its records' layouts, its arrays at their sizes, made on huge pages.

This module does not import numba, so that a command can make a book's storage and start populating it on the
other core while numba and the book's compiled code load (`xdpfeed book` on a large file, multicast.cli.main:
capture.huge_arrays.Prefaulting). OrderBook (multicast.book.order_book) owns the arrays once made and grows them;
the compiled code (multicast.book.store, multicast.book.apply) reads and writes them.
"""

from typing import NamedTuple

import numpy as np

from xdpfeed.capture import huge_arrays

# an order. level: its price level's handle; live: 1 while the slot holds an order (a window slot's reference is
# implied by the slot)
ORDER = np.dtype([("price", np.uint32), ("shares", np.uint32), ("level", np.uint32), ("locate", np.uint16),
                  ("side", np.uint8), ("live", np.uint8)], align=True)
HASHED = np.dtype([("ref", np.uint64), ("order", ORDER)], align=True)  # a hash slot: ref 0 when empty
LEVEL = np.dtype([("shares", np.uint64), ("price", np.uint32), ("orders", np.uint32)], align=True)
STOCK = np.dtype([("symbol", np.uint64), ("round_lot", np.uint32), ("trading_state", np.uint8),
                  ("stale", np.uint8), ("reason", np.uint32)], align=True)
# a top-of-book event: the stock's best bid and offer after the message numbered seq changed one of them
EVENT = np.dtype([("seq", np.uint64), ("timestamp", np.uint64), ("bid_shares", np.uint64),
                  ("ask_shares", np.uint64), ("bid_price", np.uint32), ("ask_price", np.uint32),
                  ("locate", np.uint16)], align=True)

LOCATES = 65536  # every ITCH stock locate

# One book's default sizes: they hold a real NASDAQ day (about 2M live orders at peak) without growing.
WINDOW = 1 << 22  # direct-indexed order slots
HASH_ORDERS = 1 << 21  # hash slots, for the orders the window has left behind
LEVELS = 1 << 20  # price levels (and ladder entries)
EVENTS = 1 << 16  # top-of-book events per batch


class Sizes(NamedTuple):
    """A book's sizes: window and hash_orders are rounded up to powers of two (pow2)."""

    window: int = WINDOW
    hash_orders: int = HASH_ORDERS
    levels: int = LEVELS
    events: int = EVENTS

    def rounded(self) -> "Sizes":
        """The sizes the arrays are made at."""
        return Sizes(pow2(self.window), pow2(self.hash_orders), self.levels, self.events)


class Arrays(NamedTuple):
    """The arrays of one book's storage that start zeroed: every array the book's compiled loop reads at random
    but its per-side rows (multicast.book.store.new_sides, made with values) and its small state and counters."""

    window: np.ndarray  # ORDER, by reference
    hash: np.ndarray  # HASHED
    ladder: np.ndarray  # uint64: per side, sorted (price << 32 | level handle) entries
    levels: np.ndarray  # LEVEL, by handle
    lfree: np.ndarray  # uint64: freed level handles
    last: np.ndarray  # int64 (LOCATES, 4): last published bid price, bid shares, ask price, ask shares
    stocks: np.ndarray  # STOCK, by locate
    events: np.ndarray  # EVENT: the pending batch

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self)


ONE_BOOK = Sizes()


def pow2(n: int, floor: int = 4) -> int:
    return 1 << max(floor, int(n - 1).bit_length())


def shard_sizes(shards: int) -> Sizes:
    """One shard's sizes when `shards` books split the stocks (multicast.book.sharded): each holds its share of the
    orders and levels, and its window spans every reference all the same."""
    return Sizes(WINDOW, max(HASH_ORDERS // shards, 1 << 16), max(LEVELS // shards, 1 << 14), EVENTS)


def allocate(sizes: Sizes = ONE_BOOK) -> Arrays:
    """A book's zeroed arrays at these sizes, on memory advised for huge pages (capture.huge_arrays.zeros): mapped,
    not yet populated."""
    z, n = huge_arrays.zeros, sizes.rounded()
    return Arrays(z(n.window, ORDER), z(n.hash_orders, HASHED), z(n.levels, np.uint64), z(n.levels, LEVEL),
                  z(n.levels, np.uint64), z((LOCATES, 4), np.int64), z(LOCATES, STOCK), z(n.events, EVENT))


def sizes_of(arrays: Arrays) -> Sizes:
    """The sizes `arrays` were made at (Sizes.rounded)."""
    return Sizes(arrays.window.size, arrays.hash.size, arrays.levels.size, arrays.events.size)
