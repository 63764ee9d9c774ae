"""Where the order book keeps orders and price levels: compiled, preallocated, growable.

Orders (keyed by ITCH order reference number) live in two stores, as one 16-byte ORDER record
(multicast.book.storage, with the other records' layouts):
- a direct-indexed *window*: NASDAQ references are day-unique and nearly sequential, so the refs in
  [base, base + W) sit at slot ref & (W - 1), which names the reference (a slot only says whether it is
  live); when a new ref passes the window's end the window slides and the orders it leaves behind migrate to
- an open-addressed *hash* (multiplicative hashing, linear probing, backward-shift deletion) for the
  long-lived outliers, whose slots (HASHED) hold the reference beside the order.
A ref inside the window's range is always in the window, so a lookup touches one store.

Price levels live in a slab at handles that stay put; each order keeps its level's handle. Each (stock
locate, side) also has a sorted vector of (price, handle) entries in a shared pool, the ladder, with the
best price at the end, where most activity is: a new or emptied level finds its place by looking at the
few best entries, then by binary search (level_search); a side that outgrows its vector moves to the end
of the ladder with twice the room. A side's row in `sides` (where its vector starts, its size, its room and
its best level's handle, and the highest reference added to it) is all a message reads to know whether it
touched the best level and what the top of the book is now.

Functions that need room return a status instead of failing, and the Python layer (multicast.book.order_book)
grows the store and resumes.
"""

import numpy as np

from xdpfeed.capture import huge_arrays
from xdpfeed.capture.jit import njit_no_rc as njit
from xdpfeed.capture.prefetch import prefetch
from xdpfeed.multicast.book.storage import (  # noqa: F401  (the state, side and status names, read as S.*)
    ASK,
    BID,
    HANDLE_MASK,
    HASH_ORDERS,
    HASHED,
    N_SD,
    N_SIDES,
    N_STATE,
    NEED_HASH,
    NEED_LEVELS,
    NEED_POOL,
    NO_LEVEL,
    OK,
    ORDER,
    PRICE_SHIFT,
    SD_BEST,
    SD_CAP,
    SD_MAX_REF,
    SD_REFS_BACK,
    SD_SIZE,
    SD_START,
    ST_BASE,
    ST_HASH_N,
    ST_LFREE,
    ST_LIVE,
    ST_LTOP,
    ST_MIGRATED,
    ST_POOL,
    ST_SYSTEM,
    WINDOW,
    new_sides,
    pow2,
)

HASH_MUL = np.uint64(0x9E3779B97F4A7C15)
MAX_LOAD_NUM, MAX_LOAD_DEN = 1, 2  # the hash is grown before it is more than half full
# A window slide moves the orders it leaves behind into the hash, each to a random slot: the home of the order this
# many slots on is asked for first (on the C twin, a wide day's migrations went from 5 % of its time to under 1 %).
MIGRATE_AHEAD = 32


@njit(cache=True, inline="always")
def hash_home(ref, hmask):
    """Where ref's probe starts in a hash of hmask + 1 slots."""
    return np.int64((np.uint64(ref) * HASH_MUL) >> np.uint64(32)) & hmask


@njit(cache=True)
def hash_find(h, ref):
    """Slot of ref in the hash, or -1."""
    hmask = h.size - 1
    i = hash_home(ref, hmask)
    while True:
        k = np.int64(h[i].ref)
        if k == ref:
            return i
        if k == 0:
            return -1
        i = (i + 1) & hmask


@njit(cache=True)
def hash_insert(h, ref, price, shares, locate, side, level):
    hmask = h.size - 1
    i = hash_home(ref, hmask)
    while h[i].ref != 0:
        i = (i + 1) & hmask
    h[i].ref = ref
    _fill(h[i].order, price, shares, locate, side, level)
    return i


@njit(cache=True, inline="always")
def _fill(r, price, shares, locate, side, level):
    r.price = price
    r.shares = shares
    r.locate = locate
    r.side = side
    r.level = level
    r.live = 1


@njit(cache=True)
def hash_delete(h, i):
    """Empty slot i and shift the following cluster back so no probe chain breaks."""
    hmask = h.size - 1
    j = i
    while True:
        j = (j + 1) & hmask
        if h[j].ref == 0:
            break
        home = hash_home(h[j].ref, hmask)
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
            o = r.order
            hash_insert(new, r.ref, o.price, o.shares, o.locate, o.side, o.level)


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
        hmask = h.size - 1
        for r in range(lo, hi):
            if w[(r + MIGRATE_AHEAD) & (size - 1)].live:  # its hash home is asked for before it is reached
                prefetch(h, hash_home(r + MIGRATE_AHEAD, hmask))
            o = w[r & (size - 1)]
            if o.live:  # the order with reference r
                hash_insert(h, r, o.price, o.shares, o.locate, o.side, o.level)
                o.live = 0
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
        if w[np.uint64(s)].live:
            return 0, s
        return -1, 0
    i = hash_find(h, ref)
    return (1, i) if i >= 0 else (-1, 0)


@njit(cache=True, inline="always")
def order_at(w, h, store, slot):
    return w[np.uint64(slot)] if store == 0 else h[np.uint64(slot)].order


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
def order_put(w, h, state, ref, price, shares, locate, side, level):
    """Store a new order (room was checked by order_room); level is its price level's handle."""
    if ref >= state[ST_BASE] + w.size:
        slide_window(w, h, state, ref)
    if ref < state[ST_BASE]:
        hash_insert(h, ref, price, shares, locate, side, level)
        state[ST_HASH_N] += 1
    else:
        _fill(w[uidx(ref & (w.size - 1))], price, shares, locate, side, level)
    state[ST_LIVE] += 1


@njit(cache=True, inline="always")
def order_drop(w, h, state, store, slot):
    if store == 0:
        w[uidx(slot)].live = 0
    else:
        hash_delete(h, slot)
        state[ST_HASH_N] -= 1
    state[ST_LIVE] -= 1


class OrderStore:
    """The live orders of one feed (window + hash), for code that tracks orders without the price levels
    (the DBN sink's ITCH → MBO conversion); grows its hash when a compiled loop asks (NEED_HASH)."""

    def __init__(self, window: int = WINDOW, hash_orders: int = HASH_ORDERS):
        self.window = huge_arrays.zeros(pow2(window), ORDER)
        self.hash = huge_arrays.zeros(pow2(hash_orders), HASHED)
        self.state = np.zeros(N_STATE, dtype=np.int64)
        self.grows = 0

    def grow(self) -> None:
        new = huge_arrays.zeros(self.hash.size * 2, HASHED)
        rehash(self.hash, new)
        self.hash = new
        self.grows += 1

    @property
    def live(self) -> int:
        return int(self.state[ST_LIVE])


# ---- price levels -------------------------------------------------------------------------------
# A level lives in a slab (`levels`, LEVEL records) at a handle that never changes while it lives; freed
# handles go on a stack (`lfree`) and are handed out again. Each side's levels are also a sorted vector of
# entries (price << 32 | handle) in a shared pool (`ladder`), the best price at the end: an order keeps its
# level's handle, so executions, cancels and deletes reach the level without a search, and only a level's
# creation or removal finds its place in the side's vector (the few best entries, then a binary search) and
# shifts 8-byte entries.


@njit(cache=True, inline="always")
def _better(side, p, q):
    return p > q if side == BID else p < q


@njit(cache=True, inline="always")
def _price(entry):
    return np.int64(entry >> PRICE_SHIFT)


@njit(cache=True, inline="always")
def uidx(i):
    """An index known not to be negative, as unsigned: numba emits no negative-index wraparound for it (a shift,
    an and and an add on every access with a signed index; the book's loops had 107 of them, and were 10 % slower
    than their C twin for it)."""
    return np.uint64(i)


NEAR_BEST = 8  # entries looked at one by one from the best before a binary search


@njit(cache=True, inline="always")
def level_search(ladder, start, n, side, price):
    """The last position in side [start, start + n) whose price is not better than `price` (start - 1 when all
    are): where `price` is, or goes after. Most activity is at the best levels, at the end, so the last
    NEAR_BEST are looked at one by one; deeper prices are found by binary search."""
    j = start + n - 1
    lo = max(start, j - NEAR_BEST + 1)
    while j >= lo:
        if not _better(side, _price(ladder[uidx(j)]), price):
            return j
        j -= 1
    a, b = start, lo  # ladder[lo..end) are all better; the answer is in [a - 1, b - 1]
    while a < b:
        m = (a + b) >> 1
        if _better(side, _price(ladder[uidx(m)]), price):
            b = m
        else:
            a = m + 1
    return a - 1


@njit(cache=True, inline="always")
def level_room(levels, state):
    """A new level has a handle to take."""
    return state[ST_LFREE] > 0 or state[ST_LTOP] < levels.size


@njit(cache=True, inline="always")
def level_add(ladder, levels, lfree, sides, state, sidx, side, price, shares):
    """Add one order of `shares` at `price` to side sidx; returns its level's handle. The caller has made sure
    the ladder has room for this side to move and the slab a handle (multicast.book.apply._room_for_add)."""
    start = sides[uidx(sidx), SD_START]
    n = sides[uidx(sidx), SD_SIZE]
    j = level_search(ladder, start, n, side, price)
    if j >= start and _price(ladder[uidx(j)]) == price:
        lh = ladder[uidx(j)] & HANDLE_MASK
        lv = levels[lh]
        lv.shares += np.uint64(shares)
        lv.orders += 1
        return lh
    if state[ST_LFREE] > 0:
        state[ST_LFREE] -= 1
        lh = np.uint64(lfree[uidx(state[ST_LFREE])])
    else:
        lh = np.uint64(state[ST_LTOP])
        state[ST_LTOP] += 1
    lv = levels[lh]
    lv.price = price
    lv.shares = shares
    lv.orders = 1
    if n == sides[uidx(sidx), SD_CAP]:  # move this side to the end of the ladder with twice the room
        cap = max(8, 2 * n)
        new = state[ST_POOL]
        for k in range(n):
            ladder[uidx(new + k)] = ladder[uidx(start + k)]
        j += new - start
        start = new
        sides[uidx(sidx), SD_START] = new
        sides[uidx(sidx), SD_CAP] = cap
        state[ST_POOL] = new + cap
    for k in range(start + n, j + 1, -1):  # insert after j
        ladder[uidx(k)] = ladder[uidx(k - 1)]
    ladder[uidx(j + 1)] = (np.uint64(price) << PRICE_SHIFT) | lh
    sides[uidx(sidx), SD_SIZE] = n + 1
    if j + 1 == start + n:  # the new best
        sides[uidx(sidx), SD_BEST] = np.int64(lh)
    return lh


@njit(cache=True, inline="always")
def level_take(levels, lh, shares, whole_order):
    """Take shares (and the order, when whole_order) off level lh; True when it is left without orders (the
    caller then drops it)."""
    lv = levels[lh]
    lv.shares -= np.uint64(shares)
    if whole_order:
        lv.orders -= 1
        return lv.orders == 0
    return False


@njit(cache=True, inline="always")
def level_drop(ladder, levels, lfree, sides, state, sidx, side, lh):
    """Remove the empty level lh from side sidx and free its handle."""
    start = sides[uidx(sidx), SD_START]
    n = sides[uidx(sidx), SD_SIZE]
    j = level_search(ladder, start, n, side, np.int64(levels[lh].price))
    if j < start or (ladder[uidx(j)] & HANDLE_MASK) != lh:
        return False  # cannot happen while orders and levels agree
    for k in range(j, start + n - 1):
        ladder[uidx(k)] = ladder[uidx(k + 1)]
    sides[uidx(sidx), SD_SIZE] = n - 1
    if j == start + n - 1:  # it was the best: the next one is
        sides[uidx(sidx), SD_BEST] = np.int64(ladder[uidx(j - 1)] & HANDLE_MASK) if n > 1 else NO_LEVEL
    lfree[uidx(state[ST_LFREE])] = lh
    state[ST_LFREE] += 1
    return True


@njit(cache=True, inline="always")
def is_best(sides, sidx, lh):
    """Level lh is side sidx's best: only a change to it (or its removal) changes the side's top of book."""
    return sides[uidx(sidx), SD_BEST] == np.int64(lh)


@njit(cache=True, inline="always")
def top_of(levels, sides, sidx):
    """(price, shares) of side sidx's best level; (0, 0) when it has none."""
    lh = sides[uidx(sidx), SD_BEST]
    if lh == NO_LEVEL:
        return 0, 0
    lv = levels[uidx(lh)]
    return np.int64(lv.price), np.int64(lv.shares)


@njit(cache=True)
def pool_needed(sides):
    """Ladder slots compact_pool will use."""
    total = 0
    for sidx in range(sides.shape[0]):
        if sides[sidx, SD_CAP]:
            total += max(8, 2 * sides[sidx, SD_SIZE])
    return total


@njit(cache=True)
def compact_pool(old, new, sides):
    """Copy every side's ladder entries into `new`, packed, each with room to double; returns slots used. Handles
    do not move, so every side's best stays."""
    pos = 0
    for sidx in range(sides.shape[0]):
        n = sides[sidx, SD_SIZE]
        if sides[sidx, SD_CAP] == 0:
            continue
        cap = max(8, 2 * n)
        start = sides[sidx, SD_START]
        for k in range(n):
            new[pos + k] = old[start + k]
        sides[sidx, SD_START] = pos
        sides[sidx, SD_CAP] = cap
        pos += cap
    return pos


@njit(cache=True)
def level_queue(w, h, state, lh, refs, shares):
    """The live orders at level lh, from both stores, into refs[] and shares[] (room for the level's orders);
    returns how many (those past the arrays' room are counted, not written). Their order in the level's queue
    is their references' order: NASDAQ assigns references at receipt, increasing through the day, an execution
    or a cancel keeps an order's place and a replace is a new reference at the back. Each side counts the adds
    that broke that rule (SD_REFS_BACK)."""
    n = 0
    base = state[ST_BASE]
    for s in range(w.size):
        if w[s].live and w[s].level == lh:
            if n < refs.size:
                refs[n] = base + ((s - base) & (w.size - 1))  # the reference in [base, base + W) at slot s
                shares[n] = w[s].shares
            n += 1
    for i in range(h.size):
        if h[i].ref != 0 and h[i].order.level == lh:
            if n < refs.size:
                refs[n] = h[i].ref
                shares[n] = h[i].order.shares
            n += 1
    return n
