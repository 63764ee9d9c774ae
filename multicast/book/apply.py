"""Compiled application of ITCH 5.0 messages to the order books (used through multicast.book.order_book).

`apply_stream` (NASDAQ binary files) and `apply_index` (messages located by the
MoldUDP64 walk or delivered by the sequencer) read message bytes directly: decoding the few fields
the book needs is fused into the book update, at offsets taken from the ITCH schema. The rules (the
TotalView-ITCH 5.0 specification's order messages, docs/architecture.md): A and F
add; E and C reduce (removing at zero; C's price is the fill price, the order does not move); X
reduces; D removes; U replaces (new ref, original side and stock, new price and shares, priority
lost); P, Q, B are counted trades; R names stocks; H and S are tracked. Whenever a stock's best bid
or offer (price or size) changes, an event row goes into a preallocated batch. Anomalies (unknown
references, duplicate adds, over-executions and over-cancels) are counted, never fatal. Storage is
in multicast.book.store; when it needs room the compiled loop stops, Python grows it, and the loop
resumes at the same message, so growth is counted and never silent.
"""

import numpy as np

from xdpfeed.capture.byteorder import be16, be32, be48, be64
from xdpfeed.capture.jit import njit_no_rc as njit
from xdpfeed.capture.prefetch import prefetch, prefetch_read
from xdpfeed.multicast.book import storage
from xdpfeed.multicast.book import store as S
from xdpfeed.multicast.book.storage import (  # noqa: F401  (the stats slots and statuses, read as A.*)
    ADDS,
    BAD_LENGTHS,
    BAD_SIDE,
    BBO_EVENTS,
    BROKEN_TRADES,
    CANCELS,
    CROSS_TRADES,
    DELETES,
    DUPLICATE_ADDS,
    EXECUTIONS,
    HASH_GROWS,
    MESSAGES,
    N_STATS,
    NEED_EVENTS,
    OVER_CANCELS,
    OVER_EXECUTIONS,
    POOL_GROWS,
    REPLACES,
    TRADES,
    UNKNOWN_REFS,
    UNKNOWN_TYPES,
    ZERO_REFS,
)
from xdpfeed.multicast.itch.schema import LENGTHS, offset, same_offset

BID, ASK = S.BID, S.ASK

# Where the book reads each message, from the ITCH schema (numba freezes these as constants).
_LOCATE = offset("A", "stock_locate")
_TIMESTAMP = offset("A", "timestamp")
_ADD_REF = same_offset({"A": "order_reference_number", "F": "order_reference_number"})
_ADD_SIDE = same_offset({"A": "buy_sell_indicator", "F": "buy_sell_indicator"})
_ADD_SHARES = same_offset({"A": "shares", "F": "shares"})
_ADD_STOCK = same_offset({"A": "stock", "F": "stock"})
_ADD_PRICE = same_offset({"A": "price", "F": "price"})
_DEL_REF = offset("D", "order_reference_number")
_REP_OLD = offset("U", "original_order_reference_number")
_REP_NEW = offset("U", "new_order_reference_number")
_REP_SHARES = offset("U", "shares")
_REP_PRICE = offset("U", "price")
_RED_REF = same_offset({"E": "order_reference_number", "C": "order_reference_number", "X": "order_reference_number"})
_RED_SHARES = same_offset({"E": "executed_shares", "C": "executed_shares", "X": "canceled_shares"})
_DIR_STOCK = offset("R", "stock")
_DIR_LOT = offset("R", "round_lot_size")
_ACT_STATE = offset("H", "trading_state")
_ACT_REASON = offset("H", "reason")
_SYS_EVENT = offset("S", "event_code")
_ANY_REF = same_offset({"D": "order_reference_number", "E": "order_reference_number",
                        "C": "order_reference_number", "X": "order_reference_number",
                        "U": "original_order_reference_number"})
_ANY_REF_END = _ANY_REF + 8

STAT_NAMES = list(storage.STAT_NAMES)

# The loops look ahead in two stages and ask for the lines the messages there will need, so that they are on their
# way while the messages before are applied (each is otherwise a wait for memory: on a wide day most removals find
# their order, and most adds their side's row and ladder, out of the cache). PREFETCH_AHEAD messages on, stage one
# (_prefetch_far): the stored order a D, E, C, X or U acts on, an add's side row. Four messages later, with those
# lines in, stage two (_prefetch_near) on what stage one found (kept meanwhile in the registers c1..c4): that
# order's level and side row, the add's side's best ladder entries. Measured on the C twin (bench/book.c), wide
# day: one stage at 8 ahead +25-30 % (4 and 16 less); the second stage 4 ahead +15 % more (3 and 5 the same, 6
# less); a third stage for an add's level (reading the ladder 2 ahead) -15 %.
PREFETCH_AHEAD = 8
# A shard's listing asks for the stream's bytes STREAM_AHEAD on: the CPU's stream prefetcher stops at every 4 KiB page
# of the mapped file (a bare walk over the wide day's 10M records: 0.10 s, with this 0.034 s; a shard of two 0.47 s,
# with this 0.43 s). The one-book loop above gains nothing from it (4 alternating pairs, 0.63-0.66 s either way):
# its waits for the book's memory hide the stream's.
STREAM_AHEAD = 4096


@njit(cache=True, inline="always")
def _room_for_add(w, h, state, ladder, levels, sides, ref, sidx):
    """OK when adding ref on side sidx cannot run out of room half-way, else the store to grow."""
    st = S.order_room(w, h, state, ref)
    if st != S.OK:
        return st
    cap = sides[S.uidx(sidx), S.SD_CAP]
    if sides[S.uidx(sidx), S.SD_SIZE] == cap and state[S.ST_POOL] + max(8, 2 * cap) > ladder.size:
        return S.NEED_POOL
    if not S.level_room(levels, state):
        return S.NEED_LEVELS
    return S.OK


@njit(cache=True, inline="always")
def _add(w, h, state, ladder, levels, lfree, sides, ref, locate, side, price, shares):
    """Insert a new order (room was checked by _room_for_add); returns its side + 1 when its level is the side's
    best (that side's top of book may have changed), else 0."""
    sidx = locate * 2 + side
    lh = S.level_add(ladder, levels, lfree, sides, state, sidx, side, price, shares)
    S.order_put(w, h, state, ref, price, shares, locate, side, lh)
    if ref > sides[S.uidx(sidx), S.SD_MAX_REF]:  # references rise through the day: a level's queue is their order
        sides[S.uidx(sidx), S.SD_MAX_REF] = ref
    else:
        sides[S.uidx(sidx), S.SD_REFS_BACK] += 1
    return side + 1 if S.is_best(sides, sidx, lh) else 0


@njit(cache=True, inline="always")
def _remove(ladder, levels, lfree, sides, state, o, shares, whole):
    """Take shares (and, when whole, the order) off order o's level; drop the level when it empties. Returns the
    side + 1 when that level was the side's best (its top of book may have changed), else 0."""
    side = np.int64(o.side)
    sidx = np.int64(o.locate) * 2 + side
    best = side + 1 if S.is_best(sides, sidx, o.level) else 0
    if S.level_take(levels, o.level, shares, whole):
        S.level_drop(ladder, levels, lfree, sides, state, sidx, side, o.level)
    return best


_find, _order, _drop = S.order_find, S.order_at, S.order_drop


@njit(cache=True, inline="always")
def _reduce(w, h, state, ladder, levels, lfree, sides, ref, n, over_counter, stats):
    """E, C, X: take n shares off an order; remove it at zero. Returns (its locate, or -1; as _remove: its side + 1
    when its level was the side's best, else 0)."""
    store, slot = _find(w, h, state, ref)
    if store < 0:
        stats[UNKNOWN_REFS] += 1
        return -1, 0
    o = _order(w, h, store, slot)
    locate = np.int64(o.locate)
    remaining = np.int64(o.shares)
    if n >= remaining:
        if n > remaining:
            stats[over_counter] += 1
        best = _remove(ladder, levels, lfree, sides, state, o, remaining, True)
        _drop(w, h, state, store, slot)
    else:
        best = _remove(ladder, levels, lfree, sides, state, o, n, False)
        o.shares = remaining - n
    return locate, best


@njit(cache=True, inline="always")
def _apply_one(b, o, ln, seq, w, h, state, ladder, levels, lfree, sides, last, stocks, ev, ev_n,
               stats):
    """Apply one message. Returns (status, event count). A non-OK status means nothing was changed
    and the same message must be applied again once the store has room."""
    if ln == 0 or LENGTHS[b[np.uint64(o)]] < 0:  # (a zero-length message has no type byte to read)
        stats[UNKNOWN_TYPES if ln else BAD_LENGTHS] += 1
        stats[MESSAGES] += 1
        return S.OK, ev_n
    t = b[np.uint64(o)]
    if ln != LENGTHS[t]:
        stats[BAD_LENGTHS] += 1
        stats[MESSAGES] += 1
        return S.OK, ev_n
    locate = -1
    best = 0  # side + 1 when the message touched that side's best level: only then can its top of book change
    if t == 65 or t == 70:  # 'A', 'F'
        stats[ADDS] += 1
        sd = b[np.uint64(o + _ADD_SIDE)]
        side = 0 if sd == 66 else 1 if sd == 83 else -1
        ref = np.int64(be64(b, o + _ADD_REF))
        if side < 0:
            stats[BAD_SIDE] += 1
        elif ref == 0:
            stats[ZERO_REFS] += 1
        elif _find(w, h, state, ref)[0] >= 0:
            stats[DUPLICATE_ADDS] += 1
        else:
            loc = be16(b, o + _LOCATE)
            st = _room_for_add(w, h, state, ladder, levels, sides, ref, loc * 2 + side)
            if st != S.OK:
                stats[ADDS] -= 1
                return st, ev_n
            fresh = sides[loc * 2 + side, S.SD_CAP] == 0  # the side's first level ever
            best = _add(w, h, state, ladder, levels, lfree, sides, ref, loc, side,
                        be32(b, o + _ADD_PRICE), be32(b, o + _ADD_SHARES))
            locate = loc
            if fresh and stocks[loc].symbol == 0:  # joined mid-day: the first add names the stock the directory
                stocks[loc].symbol = be64(b, o + _ADD_STOCK)  # did not (read only then: a line less per add)
    elif t == 68:  # 'D'
        ref = np.int64(be64(b, o + _DEL_REF))
        store, slot = _find(w, h, state, ref)
        if store < 0:
            stats[UNKNOWN_REFS] += 1
        else:
            r = _order(w, h, store, slot)
            locate = np.int64(r.locate)
            best = _remove(ladder, levels, lfree, sides, state, r, r.shares, True)
            _drop(w, h, state, store, slot)
            stats[DELETES] += 1
    elif t == 85:  # 'U': the original goes; the new reference takes its side and stock
        old = np.int64(be64(b, o + _REP_OLD))
        new = np.int64(be64(b, o + _REP_NEW))
        store, slot = _find(w, h, state, old)
        if store < 0:
            stats[UNKNOWN_REFS] += 1
        else:
            r = _order(w, h, store, slot)
            loc = np.int64(r.locate)
            side = np.int64(r.side)
            addable = new != 0 and (new == old or _find(w, h, state, new)[0] < 0)
            if addable:
                st = _room_for_add(w, h, state, ladder, levels, sides, new, loc * 2 + side)
                if st != S.OK:
                    return st, ev_n
            elif new == 0:
                stats[ZERO_REFS] += 1
            else:
                stats[DUPLICATE_ADDS] += 1
            best = _remove(ladder, levels, lfree, sides, state, r, r.shares, True)
            _drop(w, h, state, store, slot)
            if addable:
                best |= _add(w, h, state, ladder, levels, lfree, sides, new, loc, side,
                             be32(b, o + _REP_PRICE), be32(b, o + _REP_SHARES))
            stats[REPLACES] += 1
            locate = loc
    elif t == 69 or t == 67 or t == 88:  # 'E', 'C' (executions) and 'X' (cancel): take shares off
        cancel = t == 88
        locate, best = _reduce(w, h, state, ladder, levels, lfree, sides, np.int64(be64(b, o + _RED_REF)),
                         be32(b, o + _RED_SHARES), OVER_CANCELS if cancel else OVER_EXECUTIONS, stats)
        if locate >= 0:
            stats[CANCELS if cancel else EXECUTIONS] += 1
    elif t == 80:
        stats[TRADES] += 1
    elif t == 81:
        stats[CROSS_TRADES] += 1
    elif t == 66:
        stats[BROKEN_TRADES] += 1
    elif t == 82:  # 'R'
        s = stocks[be16(b, o + _LOCATE)]
        s.symbol = be64(b, o + _DIR_STOCK)
        s.round_lot = be32(b, o + _DIR_LOT)
    elif t == 72:  # 'H'
        s = stocks[be16(b, o + _LOCATE)]
        s.trading_state = b[o + _ACT_STATE]
        s.reason = be32(b, o + _ACT_REASON)
    elif t == 83:  # 'S'
        state[S.ST_SYSTEM] = b[o + _SYS_EVENT]
    stats[MESSAGES] += 1
    if best:  # only the touched side's top can have moved: last[] holds the other's, as published
        sd = best - 1
        p, q = S.top_of(levels, sides, locate * 2 + sd)
        ul, px, sz = S.uidx(locate), S.uidx(2 * sd), S.uidx(2 * sd + 1)
        if last[ul, px] != p or last[ul, sz] != q:
            last[ul, px] = p
            last[ul, sz] = q
            e = ev[np.uint64(ev_n)]
            e.seq = seq
            e.timestamp = be48(b, o + _TIMESTAMP)
            e.locate = locate
            e.bid_price = last[ul, 0]
            e.bid_shares = last[ul, 1]
            e.ask_price = last[ul, 2]
            e.ask_shares = last[ul, 3]
            ev_n += 1
            stats[BBO_EVENTS] += 1
    return S.OK, ev_n


@njit(cache=True, inline="always")
def _prefetch_far(b, q, ln, w, h, state, sides):
    """Stage one for the message at b[q:q + ln]: the slot of the order a D, E, C, X or U acts on (its window slot,
    or its home in the hash); an add's side row. Returns what stage two is to look at: (window slot << 1), or
    (side row << 1) | 1 for an add, or -1."""
    if ln < _ANY_REF_END:
        return -1
    t = b[np.uint64(q)]
    if t == 68 or t == 69 or t == 67 or t == 88 or t == 85:
        ref = np.int64(be64(b, q + _ANY_REF))
        base = state[S.ST_BASE]
        if base <= ref < base + w.size:
            slot = ref & (w.size - 1)
            prefetch(w, slot)
            return slot << 1
        prefetch(h, S.hash_home(ref, h.size - 1))
    elif (t == 65 or t == 70) and ln > _ADD_SIDE:
        sidx = np.int64(be16(b, q + _LOCATE)) * 2 + (b[np.uint64(q + _ADD_SIDE)] == 83)
        prefetch(sides, (sidx, 0))
        return (sidx << 1) | 1
    return -1


@njit(cache=True, inline="always")
def _prefetch_near(code, w, ladder, levels, sides):
    """Stage two, once stage one's lines are in: the level and side row of the order in a window slot; an add's
    side's best ladder entries. Reads the slot and side row, changes nothing."""
    if code < 0:
        return
    x = np.uint64(code >> 1)
    if code & 1:
        e = sides[x, S.SD_START] + sides[x, S.SD_SIZE] - 1
        if e >= 0:
            prefetch(ladder, e)
            prefetch(ladder, max(e - 4, 0))
    else:
        o = w[x]
        prefetch(levels, o.level)
        prefetch(sides, (np.int64(o.locate) * 2 + o.side, 0))


@njit(cache=True, inline="always")
def _stream_step(b, q, end):
    """The next length-prefixed message's position after the one at q (end when none follows whole)."""
    if q + 2 <= end:
        nq = q + 2 + be16(b, q)
        if nq <= end:
            return nq
    return end


@njit(cache=True)
def apply_stream(b, pos, end, seqbox, eos, w, h, state, ladder, levels, lfree, sides, last, stocks, ev,
                 ev_n, stats):
    """Length-prefixed messages in b[pos:end]. Returns (position, status, event count); stops before
    a message when the store needs room or the event batch is full, and, when eos, at a zero-length record (a
    NASDAQ binary file's End of Session) instead of counting it as a bad length. seqbox[0] is the sequence number
    of the message at pos (0: unnumbered, a file), stamped on its events and advanced as messages go."""
    status = S.OK
    nseq = seqbox[0]
    step = np.uint64(1) if nseq > 0 else np.uint64(0)
    far = pos  # PREFETCH_AHEAD messages on
    for _ in range(PREFETCH_AHEAD):
        far = _stream_step(b, far, end)
    c1 = c2 = c3 = c4 = -1  # stage one's findings, for stage two 4 messages later
    while pos + 2 <= end:
        if ev_n == ev.size:
            status = NEED_EVENTS
            break
        ln = be16(b, pos)
        if pos + 2 + ln > end or (ln == 0 and eos):
            break
        _prefetch_near(c4, w, ladder, levels, sides)
        code = -1
        if far < end:
            nf = _stream_step(b, far, end)
            code = _prefetch_far(b, far + 2, nf - far - 2, w, h, state, sides)
            far = nf
        c4, c3, c2, c1 = c3, c2, c1, code
        status, ev_n = _apply_one(b, pos + 2, ln, nseq, w, h, state, ladder, levels, lfree, sides,
                                  last, stocks, ev, ev_n, stats)
        if status != S.OK:
            break
        pos += 2 + ln
        nseq += step
    seqbox[0] = nseq
    return pos, status, ev_n


@njit(cache=True, inline="always")
def _index_step(b, m_off, m_blocks, stop, i, q, left):
    """A PacketIndex cursor (row to load next, block offset, blocks left in the row) one message on, into the
    next rows when this one is done; left == 0 when rows up to `stop` have no more."""
    if left > 0:
        q += 2 + be16(b, q)
        left -= 1
    while left <= 0 and i < stop:
        q = m_off[i]
        left = m_blocks[i]
        i += 1
    return i, q, left


@njit(cache=True, nogil=True)  # a capture's next batch is read and indexed meanwhile (itch.index_ahead)
def apply_index(b, m_off, m_blocks, m_seq, cur, stop, w, h, state, ladder, levels, lfree, sides,
                last, stocks, ev, ev_n, stats):
    """The blocks of PacketIndex rows up to `stop`, from the cursor cur = [row, block offset, blocks left
    in that row, next sequence]; the cursor is updated. Returns (status, event count)."""
    status = S.OK
    i, q, left, nseq = cur[0], cur[1], cur[2], np.uint64(cur[3])
    ai, aq, aleft = i, q, left  # PREFETCH_AHEAD messages on
    for _ in range(PREFETCH_AHEAD):
        ai, aq, aleft = _index_step(b, m_off, m_blocks, stop, ai, aq, aleft)
    c1 = c2 = c3 = c4 = -1  # stage one's findings, for stage two 4 messages later
    while True:
        if left == 0:
            if i >= stop:
                break
            q = m_off[i]
            left = m_blocks[i]
            nseq = m_seq[i]
            i += 1
            continue
        if ev_n == ev.size:
            status = NEED_EVENTS
            break
        _prefetch_near(c4, w, ladder, levels, sides)
        code = -1
        if aleft > 0:
            code = _prefetch_far(b, aq + 2, be16(b, aq), w, h, state, sides)
            ai, aq, aleft = _index_step(b, m_off, m_blocks, stop, ai, aq, aleft)
        c4, c3, c2, c1 = c3, c2, c1, code
        ln = be16(b, q)
        status, ev_n = _apply_one(b, q + 2, ln, nseq, w, h, state, ladder, levels, lfree, sides,
                                  last, stocks, ev, ev_n, stats)
        if status != S.OK:
            break
        q += 2 + ln
        left -= 1
        nseq += np.uint64(1)
    cur[0], cur[1], cur[2], cur[3] = i, q, left, np.int64(nseq)
    return status, ev_n


# ---- one shard's messages (multicast.book.sharded) ------------------------------------------------------------
# A sharded book runs one OrderBook per core over the same input, each applying the messages of the stocks whose
# locate & mask is its shard (every ITCH 5.0 message names its stock locate in bytes 1-2; 0 for the system's, and a
# record too short to name one is shard 0's). Stepping over the other shards' messages one by one in the loop above
# costs a mispredicted branch each (a shard of two took 0.52 s on the wide day, where a stream of its own messages
# took 0.34 s). So the loops below list the shard's messages a few at a time into a small ring, without a branch
# per message, just ahead of applying them: the listing keeps LIST_AHEAD rows listed beyond the one applied, and
# the two-stage look-ahead reads its positions from the ring, PREFETCH_AHEAD rows on (0.43 s with STREAM_AHEAD).
RING_POS = 0  # where the record (its length prefix) or block starts
RING_SEQ = 1  # its sequence number (apply_index_shard), or its count of records from the call's start (a stream)
RING_ROW = 2  # apply_index_shard: the PacketIndex row to load after its row
RING_LEFT = 3  # apply_index_shard: the blocks left in its row, itself included
RING = 32  # rows (a power of two, more than LIST_AHEAD)
LIST_AHEAD = PREFETCH_AHEAD + 1


@njit(cache=True, inline="always")
def _mine(b, q, ln, mask, shard):
    """1 when the record at q (ln bytes after its length prefix) is the shard's, else 0."""
    loc = be16(b, q + 3) if ln >= 3 else 0
    return np.int64((loc & mask) == shard)


@njit(cache=True, inline="always")
def _ring_apply(b, ring, j, n, seq0, step, c4, w, h, state, ladder, levels, lfree, sides, last, stocks, ev, ev_n,
                stats):
    """Apply ring row j (of rows up to n listed), after asking for what row j + PREFETCH_AHEAD will need (stage one)
    and what the row stage one saw 4 rows ago needs (stage two, c4). Returns (stage one's finding, status, event
    count); NEED_EVENTS, with nothing done, when the event batch is full."""
    if ev_n == ev.size:
        return -1, NEED_EVENTS, ev_n
    _prefetch_near(c4, w, ladder, levels, sides)
    code = -1
    if j + PREFETCH_AHEAD < n:
        fq = ring[S.uidx((j + PREFETCH_AHEAD) & (RING - 1)), RING_POS]
        code = _prefetch_far(b, fq + 2, be16(b, fq), w, h, state, sides)
    r = S.uidx(j & (RING - 1))
    q = ring[r, RING_POS]
    status, ev_n = _apply_one(b, q + 2, be16(b, q), seq0 + np.uint64(ring[r, RING_SEQ]) * step, w, h, state,
                              ladder, levels, lfree, sides, last, stocks, ev, ev_n, stats)
    return code, status, ev_n


@njit(cache=True, nogil=True)
def apply_stream_shard(b, pos, end, seqbox, eos, mask, shard, ring, w, h, state, ladder, levels, lfree, sides, last,
                       stocks, ev, ev_n, stats):
    """apply_stream for one shard: the records of b[pos:end] whose stock locate & mask is shard, the others stepped
    over (their sequence numbers counted); ring: RING rows of 4 int64. Returns as apply_stream and stops where it
    would (a message to apply again, a cut record and, when eos, a zero-length one). Runs without the GIL."""
    status = S.OK
    nseq = seqbox[0]
    step = np.uint64(1) if nseq > 0 else np.uint64(0)
    q, k, n, j, listing = pos, 0, 0, 0, True  # the listing's next record and its count; rows listed, applied
    c1 = c2 = c3 = c4 = -1  # stage one's findings, for stage two 4 rows later
    while True:
        while listing and n - j < LIST_AHEAD:
            if q + 2 > end:
                listing = False
                break
            ln = be16(b, q)
            if q + 2 + ln > end or (ln == 0 and eos):
                listing = False
                break
            prefetch_read(b, min(q + STREAM_AHEAD, end - 1))
            r = S.uidx(n & (RING - 1))
            ring[r, RING_POS] = q
            ring[r, RING_SEQ] = k
            n += _mine(b, q, ln, mask, shard)
            q += 2 + ln
            k += 1
        if j == n:
            break
        code, status, ev_n = _ring_apply(b, ring, j, n, nseq, step, c4, w, h, state, ladder, levels, lfree, sides,
                                         last, stocks, ev, ev_n, stats)
        if status != S.OK:
            break
        c4, c3, c2, c1 = c3, c2, c1, code
        j += 1
    if j < n:  # stopped before row j
        r = S.uidx(j & (RING - 1))
        pos = ring[r, RING_POS]
        nseq += np.uint64(ring[r, RING_SEQ]) * step
    else:
        pos = q
        nseq += np.uint64(k) * step
    seqbox[0] = nseq
    return pos, status, ev_n


@njit(cache=True, nogil=True)
def apply_index_shard(b, m_off, m_blocks, m_seq, cur, stop, mask, shard, ring, w, h, state, ladder, levels, lfree,
                      sides, last, stocks, ev, ev_n, stats):
    """apply_index for one shard: the blocks whose stock locate & mask is shard, the others stepped over; ring: RING
    rows of 4 int64. The cursor and the return are apply_index's. Runs without the GIL."""
    status = S.OK
    i, q, left, nseq = cur[0], cur[1], cur[2], np.int64(cur[3])
    n, j, listing = 0, 0, True
    c1 = c2 = c3 = c4 = -1
    while True:
        while listing and n - j < LIST_AHEAD:
            if left == 0:
                if i >= stop:
                    listing = False
                    break
                q = m_off[S.uidx(i)]
                left = m_blocks[S.uidx(i)]
                nseq = np.int64(m_seq[S.uidx(i)])
                i += 1
                continue
            ln = be16(b, q)
            r = S.uidx(n & (RING - 1))
            ring[r, RING_POS] = q
            ring[r, RING_SEQ] = nseq
            ring[r, RING_ROW] = i
            ring[r, RING_LEFT] = left
            n += _mine(b, q, ln, mask, shard)
            q += 2 + ln
            left -= 1
            nseq += 1
        if j == n:
            break
        code, status, ev_n = _ring_apply(b, ring, j, n, np.uint64(0), np.uint64(1), c4, w, h, state, ladder, levels,
                                         lfree, sides, last, stocks, ev, ev_n, stats)
        if status != S.OK:
            break
        c4, c3, c2, c1 = c3, c2, c1, code
        j += 1
    if j < n:  # stopped before row j
        r = S.uidx(j & (RING - 1))
        i, q, left, nseq = ring[r, RING_ROW], ring[r, RING_POS], ring[r, RING_LEFT], ring[r, RING_SEQ]
    cur[0], cur[1], cur[2], cur[3] = i, q, left, nseq
    return status, ev_n
