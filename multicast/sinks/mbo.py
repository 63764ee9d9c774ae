"""The delivered ITCH stream as Databento MBO records (DBN's `MboMsg`, 56 bytes each), in compiled code.

Each ITCH message becomes zero or more MBO records; the last record of each message carries F_LAST, so
a consumer that applies records the standard way (A adds an order, C takes the given size off it and
removes it at zero, M modifies, R clears, T and F leave the book alone) and reads the book after F_LAST
ends at the same book as xdpfeed's. Mapping (docs/outputs.md has the table and the reasons):

| ITCH | MBO records |
|---|---|
| A, F add order | A (order id, side, price, size) |
| E executed | T (the aggressor's side, the order's price), F (the order), C (the executed size) |
| C executed with price | T (execution price; none when not printable), F (execution price), C (the executed size) |
| X cancel | C (the canceled size) |
| D delete | C (the size left) |
| U replace | C (the old order, the size left), A (the new order: the old side, the new price and size) |
| P trade (non-displayed) | T (the aggressor's side: opposite of the resting order's indicator) |
| Q cross trade | T (side N) |
| S R H Y L V W K J h B I N O | none (R names the instruments: the file's symbology) |

An execution, cancel, delete or replace of an order the converter never saw added (a feed joined
mid-day) makes no record and is counted (`UNKNOWN_REFS`). Prices are DBN's fixed point (1e-9 units:
ITCH price4 × 100,000); `instrument_id` is the ITCH stock locate; `ts_event` is the ITCH timestamp on
the day's date (`day_ns`: midnight US Eastern as nanoseconds since the UNIX epoch); `ts_recv` the receive
time of the packet; `sequence` the MoldUDP64 sequence number (mod 2^32, DBN's width).
"""

import numpy as np

from xdpfeed.capture.byteorder import be16, be32, be48, be64
from xdpfeed.capture.jit import njit_no_rc as njit
from xdpfeed.multicast.book import store as S
from xdpfeed.multicast.itch import offsets as O
from xdpfeed.multicast.itch.schema import LENGTHS

MBO = np.dtype([
    ("length", np.uint8), ("rtype", np.uint8), ("publisher_id", "<u2"), ("instrument_id", "<u4"),
    ("ts_event", "<u8"), ("order_id", "<u8"), ("price", "<i8"), ("size", "<u4"), ("flags", np.uint8),
    ("channel_id", np.uint8), ("action", np.uint8), ("side", np.uint8), ("ts_recv", "<u8"),
    ("ts_in_delta", "<i4"), ("sequence", "<u4"),
])
assert MBO.itemsize == 56
RTYPE_MBO = 0xA0
PRICE_SCALE = 100_000  # ITCH price4 (1e-4) → DBN fixed price (1e-9)
F_LAST, F_SNAPSHOT, F_BAD_TS_RECV = 0x80, 0x20, 0x08  # DBN record flags
UNDEF_PRICE = (1 << 63) - 1  # DBN's "no price" (a Clear record's)
MAX_RECORDS_PER_MESSAGE = 3

# stats[]
RECORDS = 0
UNKNOWN_REFS = 1  # E C X D U of an order never added (joined mid-day): no record
MESSAGES = 2
BAD_LENGTHS = 3  # a message whose length is not its type's (or of an unknown type): no record
N_STATS = 4

_A, _B, _N = ord("A"), ord("B"), ord("N")  # sides: ask, bid, none
_ADD, _CANCEL, _TRADE, _FILL = ord("A"), ord("C"), ord("T"), ord("F")
_SIDE = (_B, _A)  # by the book's side (0 bid, 1 ask)


@njit(cache=True, inline="always")
def _rec(out, n, action, side, locate, order_id, price, size, flags, ts_event, ts_recv, seq, publisher):
    r = out[n]
    r.length = 14  # in 4-byte words
    r.rtype = RTYPE_MBO
    r.publisher_id = publisher
    r.instrument_id = locate
    r.ts_event = ts_event
    r.order_id = order_id
    r.price = np.int64(price) * PRICE_SCALE
    r.size = size
    r.flags = flags
    r.channel_id = 0
    r.action = action
    r.side = side
    r.ts_recv = ts_recv
    r.ts_in_delta = 0
    r.sequence = np.uint32(seq & 0xFFFFFFFF)
    return n + 1


@njit(cache=True, nogil=True)  # the DBN sink runs it on a thread of its own
def convert(b, end, ts, cur, day_ns, publisher, extra_flags, w, h, state, symbols, out, stats):
    """Messages of the delivered stream b[cur[0]:end] (the first one numbered cur[1], its receive time at
    ts[cur[2]]) → MBO records appended at out[cur[3]:]. Stops when `out` could not hold the next message's
    records or the order store needs room; returns the status (S.OK, S.NEED_HASH or 1 for out full) and
    leaves the cursor where to resume: cur = [position, next sequence, message index, records in out]."""
    pos, seq, k, n = cur[0], cur[1], cur[2], cur[3]
    status = S.OK
    while pos + 2 <= end:
        if n + MAX_RECORDS_PER_MESSAGE > out.size:
            status = 1
            break
        ln = be16(b, pos)
        o = pos + 2
        t = b[o] if ln > 0 else 0
        recv = ts[k]
        if ln == 0 or LENGTHS[t] != ln:  # no record; numbered and counted like any other message
            stats[BAD_LENGTHS] += 1
            stats[MESSAGES] += 1
            pos, seq, k = o + ln, seq + 1, k + 1
            continue
        flags = extra_flags | (F_BAD_TS_RECV if recv <= 0 else 0)
        last = flags | F_LAST
        ev = day_ns + np.int64(be48(b, o + O.A.timestamp))
        locate = be16(b, o + O.A.stock_locate)
        if t == 65 or t == 70:  # A, F
            ref = np.int64(be64(b, o + O.A.order_reference_number))
            side = 0 if b[o + O.A.buy_sell_indicator] == 66 else 1
            if S.order_room(w, h, state, ref) != S.OK:
                status = S.NEED_HASH
                break
            price = be32(b, o + O.A.price)
            shares = be32(b, o + O.A.shares)
            if ref != 0 and S.order_find(w, h, state, ref)[0] < 0:
                S.order_put(w, h, state, ref, price, shares, locate, side, 0)
            n = _rec(out, n, _ADD, _SIDE[side], locate, ref, price, shares, last, ev, recv, seq, publisher)
        elif t == 69 or t == 67 or t == 88 or t == 68:  # E, C, X, D
            ref = np.int64(be64(b, o + O.E.order_reference_number))
            store, slot = S.order_find(w, h, state, ref)
            if store < 0:
                stats[UNKNOWN_REFS] += 1
            else:
                r = S.order_at(w, h, store, slot)
                left = np.int64(r.shares)
                side = np.int64(r.side)
                price = np.int64(r.price)
                qty = left if t == 68 else min(left, np.int64(be32(b, o + O.E.executed_shares)))
                if t == 69 or t == 67:  # an execution: the print, the fill, then the book change
                    px = price if t == 69 else np.int64(be32(b, o + O.C.execution_price))
                    if t == 69 or b[o + O.C.printable] == 89:
                        n = _rec(out, n, _TRADE, _SIDE[1 - side], locate, 0, px, qty, flags, ev, recv, seq,
                                 publisher)
                    n = _rec(out, n, _FILL, _SIDE[side], locate, ref, px, qty, flags, ev, recv, seq, publisher)
                n = _rec(out, n, _CANCEL, _SIDE[side], locate, ref, price, qty, last, ev, recv, seq, publisher)
                if qty >= left:
                    S.order_drop(w, h, state, store, slot)
                else:
                    r.shares = left - qty
        elif t == 85:  # U: the old order goes, the new one takes its side and stock
            old = np.int64(be64(b, o + O.U.original_order_reference_number))
            new = np.int64(be64(b, o + O.U.new_order_reference_number))
            if S.order_room(w, h, state, new) != S.OK:
                status = S.NEED_HASH
                break
            store, slot = S.order_find(w, h, state, old)
            if store < 0:
                stats[UNKNOWN_REFS] += 1
            else:
                r = S.order_at(w, h, store, slot)
                side = np.int64(r.side)
                n = _rec(out, n, _CANCEL, _SIDE[side], r.locate, old, r.price, r.shares, flags, ev, recv, seq,
                         publisher)
                loc = np.int64(r.locate)
                S.order_drop(w, h, state, store, slot)
                price = be32(b, o + O.U.price)
                shares = be32(b, o + O.U.shares)
                if new != 0 and S.order_find(w, h, state, new)[0] < 0:
                    S.order_put(w, h, state, new, price, shares, loc, side, 0)
                n = _rec(out, n, _ADD, _SIDE[side], loc, new, price, shares, last, ev, recv, seq, publisher)
        elif t == 80:  # P: a non-displayed order executed; the aggressor took the other side
            side = 0 if b[o + O.P.buy_sell_indicator] == 66 else 1
            n = _rec(out, n, _TRADE, _SIDE[1 - side], locate, 0, be32(b, o + O.P.price), be32(b, o + O.P.shares),
                     last, ev, recv, seq, publisher)
        elif t == 81:  # Q: the cross
            shares = min(np.int64(be64(b, o + O.Q.shares)), np.int64(0xFFFFFFFF))
            n = _rec(out, n, _TRADE, _N, locate, 0, be32(b, o + O.Q.cross_price), shares, last, ev, recv, seq,
                     publisher)
        elif t == 82:  # R: the instrument's symbol, for the file's symbology
            symbols[locate] = be64(b, o + O.R.stock)
        pos = o + ln
        seq += 1
        k += 1
        stats[MESSAGES] += 1
    stats[RECORDS] += n - cur[3]
    cur[0], cur[1], cur[2], cur[3] = pos, seq, k, n
    return status
