"""The order book's storage: its records' layouts, the slots of its state, side rows and counters, its arrays at
their sizes, made on huge pages.

This module does not import numba, so that a command can make a book's storage and start populating it on the
other core while numba and the book's compiled code load (`xdpfeed book` on a large file, multicast.cli.main:
capture.huge_arrays.Prefaulting), and so that a book applied by its exported loop (multicast.book.exported) is
read without numba at all (multicast.book.view). OrderBook (multicast.book.order_book) owns the arrays once made
and grows them; the compiled code (multicast.book.store, multicast.book.apply) reads and writes them.
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
BID, ASK = 0, 1
N_SIDES = LOCATES * 2  # every stock locate, both sides: index locate * 2 + side

# state[] slots (int64)
ST_BASE = 0  # first ref of the window
ST_HASH_N = 1  # orders in the hash
ST_LIVE = 2  # orders in the book
ST_POOL = 3  # level slots handed out
ST_MIGRATED = 4  # orders moved from window to hash so far
ST_SYSTEM = 5  # last System Event code (S)
ST_LTOP = 6  # level handles handed out so far (the slab's high-water mark)
ST_LFREE = 7  # freed level handles on the free stack
N_STATE = 8

# sides[sidx] columns (int64 rows of N_SD, sidx = locate * 2 + side)
SD_START = 0  # where the side's vector starts in the ladder
SD_SIZE = 1  # its levels
SD_CAP = 2  # its room (0: never had a level)
SD_BEST = 3  # its best level's handle, NO_LEVEL when it has none
SD_MAX_REF = 4  # the highest reference added to it
SD_REFS_BACK = 5  # adds to it whose reference was below one added before them (see store.level_queue)
N_SD = 6
NO_LEVEL = -1
HANDLE_MASK = np.uint64(0xFFFFFFFF)  # a ladder entry is price << PRICE_SHIFT | level handle
PRICE_SHIFT = np.uint64(32)

# stats[] slots (int64): what the book did and what it refused
ADDS = 0
EXECUTIONS = 1
CANCELS = 2
DELETES = 3
REPLACES = 4
TRADES = 5  # P
CROSS_TRADES = 6  # Q
BROKEN_TRADES = 7  # B
UNKNOWN_REFS = 8  # E C X D U naming an order the book does not hold (normal when joining mid-day)
DUPLICATE_ADDS = 9  # A F U adding a reference already live (ignored)
OVER_EXECUTIONS = 10  # executed more than remained: the order is removed
OVER_CANCELS = 11  # canceled more than remained: the order is removed
BAD_SIDE = 12  # buy/sell indicator neither B nor S
ZERO_REFS = 13  # an add with order reference 0 (reserved; ignored)
BBO_EVENTS = 14
MESSAGES = 15  # messages applied (any type)
UNKNOWN_TYPES = 16
BAD_LENGTHS = 17
HASH_GROWS = 18
POOL_GROWS = 19
N_STATS = 20
STAT_NAMES = ("adds", "executions", "cancels", "deletes", "replaces", "trades", "cross_trades", "broken_trades",
              "unknown_refs", "duplicate_adds", "over_executions", "over_cancels", "bad_side", "zero_refs",
              "bbo_events", "messages", "unknown_types", "bad_lengths", "hash_grows", "pool_grows")  # by slot

# what the compiled loops return when they stop before a message: grow this and call again (or, NEED_EVENTS, hand
# out the event batch)
OK, NEED_HASH, NEED_POOL, NEED_EVENTS, NEED_LEVELS = 0, 1, 2, 3, 4

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


def new_state() -> np.ndarray:
    return np.zeros(N_STATE, dtype=np.int64)


def new_sides() -> np.ndarray:
    """Every (locate, side) row empty."""
    sides = huge_arrays.zeros((N_SIDES, N_SD), np.int64)
    sides[:, SD_BEST] = NO_LEVEL
    return sides


def new_stats() -> np.ndarray:
    return np.zeros(N_STATS, dtype=np.int64)


def sizes_of(arrays: Arrays) -> Sizes:
    """The sizes `arrays` were made at (Sizes.rounded)."""
    return Sizes(arrays.window.size, arrays.hash.size, arrays.levels.size, arrays.events.size)
