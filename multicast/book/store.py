"""Where the order book keeps orders and price levels: compiled, preallocated, growable.

Orders (keyed by ITCH order reference number) live in two stores with one record layout:
- a direct-indexed *window*: NASDAQ references are day-unique and nearly sequential, so the refs in
  [base, base + W) sit at slot ref & (W - 1); when a new ref passes the window's end the window
  slides and the orders it leaves behind migrate to
- an open-addressed *hash* (multiplicative hashing, linear probing, backward-shift deletion) for the
  long-lived outliers.
A ref inside the window's range is always in the window, so a lookup touches one store.

Price levels of each (stock locate, side) form a sorted vector in a shared pool with the best price at
the end, where most activity is; a price is found by looking at the few best levels, then by binary
search (level_search); a side that outgrows its vector moves to the end of the pool with twice the
room. Functions that need room return a status instead of failing, and the Python layer
(multicast.book.order_book) grows the store and resumes.
"""

import numpy as np

from xdpfeed.capture.jit import njit_no_rc as njit

ORDER = np.dtype([("ref", np.uint64), ("price", np.uint32), ("shares", np.uint32), ("locate", np.uint16),
                  ("side", np.uint8)], align=True)
LEVEL = np.dtype([("shares", np.uint64), ("price", np.uint32), ("orders", np.uint32)], align=True)

BID, ASK = 0, 1
N_SIDES = 65536 * 2  # every stock locate, both sides: index locate * 2 + side
HASH_MUL = np.uint64(0x9E3779B97F4A7C15)
MAX_LOAD_NUM, MAX_LOAD_DEN = 1, 2  # the hash is grown before it is more than half full

# state[] slots (int64)
ST_BASE = 0  # first ref of the window
ST_HASH_N = 1  # orders in the hash
ST_LIVE = 2  # orders in the book
ST_POOL = 3  # level slots handed out
ST_MIGRATED = 4  # orders moved from window to hash so far
ST_SYSTEM = 5  # last System Event code (S)
N_STATE = 6

OK, NEED_HASH, NEED_POOL = 0, 1, 2


@njit(cache=True, inline="always")
def _home(ref, hmask):
    return np.int64((np.uint64(ref) * HASH_MUL) >> np.uint64(32)) & hmask


@njit(cache=True)
def hash_find(h, ref):
    """Slot of ref in the hash, or -1."""
    hmask = h.size - 1
    i = _home(ref, hmask)
    while True:
        k = np.int64(h[i].ref)
        if k == ref:
            return i
        if k == 0:
            return -1
        i = (i + 1) & hmask


@njit(cache=True)
def hash_insert(h, ref, price, shares, locate, side):
    hmask = h.size - 1
    i = _home(ref, hmask)
    while h[i].ref != 0:
        i = (i + 1) & hmask
    r = h[i]
    r.ref = ref
    r.price = price
    r.shares = shares
    r.locate = locate
    r.side = side
    return i


@njit(cache=True)
def hash_delete(h, i):
    """Empty slot i and shift the following cluster back so no probe chain breaks."""
    hmask = h.size - 1
    j = i
    while True:
        j = (j + 1) & hmask
        if h[j].ref == 0:
            break
        home = _home(h[j].ref, hmask)
        # move j into the hole at i if its home is not in the cyclic range (i, j]
        if ((j - home) & hmask) >= ((j - i) & hmask):
            h[i] = h[j]
            i = j
    h[i].ref = 0


@njit(cache=True)
def hash_has_room(h, state, extra):
    return (state[ST_HASH_N] + extra) * MAX_LOAD_DEN <= h.size * MAX_LOAD_NUM


@njit(cache=True)
def rehash(old, new):
    for i in range(old.size):
        r = old[i]
        if r.ref != 0:
            hash_insert(new, r.ref, r.price, r.shares, r.locate, r.side)


@njit(cache=True)
def slide_window(w, h, state, ref):
    """Advance the window so it covers ref, migrating the orders left behind into the hash. The
    caller has made sure the hash has room for them (see multicast.book.apply._room_for_add)."""
    size = w.size
    base = state[ST_BASE]
    chunk = size >> 4
    while ref >= base + size:
        if ref - base >= 2 * size:  # a jump: everything in the window moves, the window restarts
            lo, hi = base, base + size
            new_base = ref - size + 1
        else:
            lo, hi = base, base + chunk
            new_base = base + chunk
        for r in range(lo, hi):
            s = r & (size - 1)
            o = w[s]
            if np.int64(o.ref) == r and r != 0:
                hash_insert(h, o.ref, o.price, o.shares, o.locate, o.side)
                o.ref = 0
                state[ST_HASH_N] += 1
                state[ST_MIGRATED] += 1
        base = new_base
        state[ST_BASE] = base


# ---- orders: one API over the window and the hash ----------------------------------------------


@njit(cache=True, inline="always")
def order_find(w, h, state, ref):
    """(store, slot): store 0 window, 1 hash, -1 absent. Reference 0 is never an order (it marks empty
    slots)."""
    if ref == 0:
        return -1, 0
    base = state[ST_BASE]
    if base <= ref < base + w.size:
        s = ref & (w.size - 1)
        if np.int64(w[np.uint64(s)].ref) == ref:
            return 0, s
        return -1, 0
    i = hash_find(h, ref)
    return (1, i) if i >= 0 else (-1, 0)


@njit(cache=True, inline="always")
def order_at(w, h, store, slot):
    return w[np.uint64(slot)] if store == 0 else h[np.uint64(slot)]


@njit(cache=True, inline="always")
def order_room(w, h, state, ref):
    """OK when storing ref cannot run out of room half-way (a window slide migrates orders to the hash),
    else NEED_HASH."""
    base = state[ST_BASE]
    need = 0
    if ref < base:
        need = 1
    elif ref >= base + w.size:
        in_window = state[ST_LIVE] - state[ST_HASH_N]
        chunk = w.size >> 4
        need = min(in_window, ((ref - base - w.size) // chunk + 1) * chunk)
    if need and not hash_has_room(h, state, need):
        return NEED_HASH
    return OK


@njit(cache=True, inline="always")
def order_put(w, h, state, ref, price, shares, locate, side):
    """Store a new order (room was checked by order_room)."""
    if ref >= state[ST_BASE] + w.size:
        slide_window(w, h, state, ref)
    if ref < state[ST_BASE]:
        hash_insert(h, ref, price, shares, locate, side)
        state[ST_HASH_N] += 1
    else:
        o = w[ref & (w.size - 1)]
        o.ref = ref
        o.price = price
        o.shares = shares
        o.locate = locate
        o.side = side
    state[ST_LIVE] += 1


@njit(cache=True, inline="always")
def order_drop(w, h, state, store, slot):
    if store == 0:
        w[slot].ref = 0
    else:
        hash_delete(h, slot)
        state[ST_HASH_N] -= 1
    state[ST_LIVE] -= 1


def pow2(n: int, floor: int = 4) -> int:
    return 1 << max(floor, int(n - 1).bit_length())


class OrderStore:
    """The live orders of one feed (window + hash), for code that tracks orders without the price levels
    (the DBN sink's ITCH → MBO conversion); grows its hash when a compiled loop asks (NEED_HASH)."""

    def __init__(self, window: int = 1 << 22, hash_orders: int = 1 << 21):
        self.window = np.zeros(pow2(window), dtype=ORDER)
        self.hash = np.zeros(pow2(hash_orders), dtype=ORDER)
        self.state = np.zeros(N_STATE, dtype=np.int64)
        self.grows = 0

    def grow(self) -> None:
        new = np.zeros(self.hash.size * 2, dtype=ORDER)
        rehash(self.hash, new)
        self.hash = new
        self.grows += 1

    @property
    def live(self) -> int:
        return int(self.state[ST_LIVE])


# ---- price levels -------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _better(side, p, q):
    return p > q if side == BID else p < q


NEAR_BEST = 8  # levels looked at one by one from the best before a binary search


@njit(cache=True, inline="always")
def level_search(pool, start, n, side, price):
    """The last position in side [start, start + n) whose price is not better than `price` (start - 1 when all
    are): where `price` is, or goes after. Most activity is at the best levels, at the end, so the last
    NEAR_BEST are looked at one by one; deeper prices are found by binary search (a deep book's executions,
    cancels and adds far from the touch cost log2(levels), not a walk from the best)."""
    j = start + n - 1
    lo = max(start, j - NEAR_BEST + 1)
    while j >= lo:
        if not _better(side, pool[j].price, price):
            return j
        j -= 1
    # pool[lo..end) are all better; search [start, lo) for the last one that is not
    a, b = start, lo  # the answer is in [a - 1, b - 1]
    while a < b:
        m = (a + b) >> 1
        if _better(side, pool[m].price, price):
            b = m
        else:
            a = m + 1
    return a - 1


@njit(cache=True, inline="always")
def level_add(pool, s_start, s_size, s_cap, state, sidx, side, price, shares):
    """Add one order of `shares` at `price` to side sidx. The caller has made sure the pool has room
    for this side to move (see multicast.book.apply._room_for_add)."""
    start = s_start[sidx]
    n = s_size[sidx]
    j = level_search(pool, start, n, side, price)
    if j >= start and pool[j].price == price:
        pool[j].shares += np.uint64(shares)
        pool[j].orders += 1
        return
    if n == s_cap[sidx]:  # move this side to the end of the pool with twice the room
        cap = max(8, 2 * n)
        new = state[ST_POOL]
        for k in range(n):
            pool[new + k] = pool[start + k]
        j += new - start
        start = new
        s_start[sidx] = new
        s_cap[sidx] = cap
        state[ST_POOL] = new + cap
    # insert after j: shift (j, end) one up
    for k in range(start + n, j + 1, -1):
        pool[k] = pool[k - 1]
    lv = pool[j + 1]
    lv.price = price
    lv.shares = shares
    lv.orders = 1
    s_size[sidx] = n + 1


@njit(cache=True, inline="always")
def level_remove(pool, s_start, s_size, sidx, side, price, shares, whole_order):
    """Take shares (and the order, when whole_order) off the level at price; drop an empty level."""
    start = s_start[sidx]
    n = s_size[sidx]
    j = level_search(pool, start, n, side, price)
    if j < start or pool[j].price != price:
        return False  # cannot happen while orders and levels agree
    lv = pool[j]
    lv.shares -= np.uint64(shares)
    if whole_order:
        lv.orders -= 1
        if lv.orders == 0:
            for k in range(j, start + n - 1):
                pool[k] = pool[k + 1]
            s_size[sidx] = n - 1
    return True


@njit(cache=True)
def pool_needed(s_size, s_cap):
    """Slots compact_pool will use."""
    total = 0
    for sidx in range(s_size.size):
        if s_cap[sidx]:
            total += max(8, 2 * s_size[sidx])
    return total


@njit(cache=True)
def compact_pool(old, new, s_start, s_size, s_cap):
    """Copy every side's levels into `new`, packed, each with room to double; returns slots used."""
    pos = 0
    for sidx in range(s_start.size):
        n = s_size[sidx]
        if s_cap[sidx] == 0:
            continue
        cap = max(8, 2 * n)
        for k in range(n):
            new[pos + k] = old[s_start[sidx] + k]
        s_start[sidx] = pos
        s_cap[sidx] = cap
        pos += cap
    return pos
