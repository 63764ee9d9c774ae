"""Compiled TotalView-ITCH 5.0 decoder: message bytes → one preallocated record table per type.

`ItchTables` holds, for each of the 23 types of multicast.itch.schema, a numpy record array
(`tables['A']['price']` is a column), plus the arrival order across types (`order_type`,
`order_row`). Decoding fills them batch by batch with no allocation; unknown types are skipped by
their transport length and counted, a length that does not match the type is counted and skipped.
Two compiled entry points share one loop, `_walk`: `decode_index` (messages located by the MoldUDP64
walk) and `decode_stream` (NASDAQ binary files: uint16 length before each message).
"""

import numpy as np

from xdpfeed.capture.byteorder import be16, be32, be64, u8
from xdpfeed.capture.jit import njit
from xdpfeed.multicast.itch.schema import CODES, DTYPES, LENGTHS, N_TYPES, TYPE_CODE, TYPES
from xdpfeed.multicast.wire import counters as C

STREAM, INDEX = 0, 1  # the inputs of _walk
_MASK48 = np.uint64(0xFFFFFFFFFFFF)


_S, _R, _H, _Y, _L, _V, _W, _K, _J, _h, _A, _F, _E, _C, _X, _D, _U, _P, _Q, _B, _I, _N, _O = range(N_TYPES)
assert TYPES == "SRHYLVWKJhAFECXDUPQBINO" and TYPE_CODE["A"] == _A and TYPE_CODE["O"] == _O


class ItchTables:
    """Decoded messages of one batch: a record table per type and the order they came in."""

    def __init__(self, capacity: int = 1 << 16):
        self.capacity = capacity
        self.tables = tuple(np.zeros(capacity, dtype=DTYPES[t]) for t in TYPES)
        self.rows = np.zeros(N_TYPES, dtype=np.int64)  # filled rows per table
        self.order_type = np.zeros(capacity, dtype=np.uint8)  # type code of the n-th message
        self.order_row = np.zeros(capacity, dtype=np.uint32)  # its row in that type's table
        self.count = 0

    def clear(self):
        self.rows[:] = 0
        self.count = 0

    def __getitem__(self, t: str) -> np.ndarray:
        """Filled rows of type t's table."""
        code = TYPE_CODE[t]
        return self.tables[code][: self.rows[code]]


@njit(cache=True, inline="always")
def _header(r, b, o, sess, seq):
    r.session = sess
    r.seq = seq
    r.stock_locate = be16(b, o + 1)
    r.tracking_number = be16(b, o + 3)
    r.timestamp = be64(b, o + 3) & _MASK48  # bytes 5..10 in one 8-byte load (every message is >= 12 bytes)


@njit(cache=True)
def _walk(b, mode, pos, end, m_off, m_blocks, m_seq, m_sess, i, stop, sess, tables, rows, o_type, o_row, n, cnt):
    """The one decoding loop, over one of two inputs:
    - STREAM: length-prefixed records in b[pos:end];
    - INDEX: the blocks of PacketIndex rows [i, stop), admitting a packet only when all of it fits.
    Returns (next position or row, order count, cut).

    The per-message code is written inside the loop on purpose: a compiled helper that receives the
    tables (inlined or not) increfs and decrefs each array argument on every call, because numba's
    refcount pruning gives up when an argument is used on some branches only — 56 atomic operations
    per message. Offsets become unsigned before indexing so that no negative-index wraparound code is
    emitted (LLVM then merges the byte loads of be16/be32/be64 into single MOVBE loads)."""
    cap = o_type.size
    cut = 0
    seq = np.uint64(0)
    next_seq = np.uint64(0)
    q = 0
    left = 0
    while n < cap:
        if mode == STREAM:
            if pos + 2 > end:
                cut = 1 if pos < end else 0
                break
            ln = be16(b, pos)
            if pos + 2 + ln > end:
                cut = 1
                break
            cnt[C.MESSAGES] += 1
            o = pos + 2
            pos += 2 + ln
        else:
            if left == 0:
                if i >= stop or n + m_blocks[i] > cap:
                    break
                q = m_off[i]
                left = m_blocks[i]
                next_seq = m_seq[i]
                sess = m_sess[i]
                i += 1
                if left == 0:
                    continue
            ln = be16(b, q)
            o = q + 2
            q += 2 + ln
            left -= 1
            seq = next_seq
            next_seq += np.uint64(1)
        if ln == 0:
            cnt[C.BAD_LENGTH_MESSAGES] += 1
            continue
        ty = u8(b, o)
        code = CODES[ty]
        if code < 0:
            cnt[C.UNKNOWN_TYPES] += 1
            continue
        if ln != LENGTHS[ty]:
            cnt[C.BAD_LENGTH_MESSAGES] += 1
            continue
        k = rows[code]
        rows[code] = k + 1
        uk = np.uint64(k)
        o_type[np.uint64(n)] = code
        o_row[np.uint64(n)] = k
        cnt[C.DECODED] += 1
        # LLVM turns this chain into a jump table; most frequent first anyway (A, D, U, E, X, F, C).
        if code == _A:
            r = tables[_A][uk]
            _header(r, b, o, sess, seq)
            r.order_reference_number = be64(b, o + 11)
            r.buy_sell_indicator = u8(b, o + 19)
            r.shares = be32(b, o + 20)
            r.stock = be64(b, o + 24)
            r.price = be32(b, o + 32)
        elif code == _D:
            r = tables[_D][uk]
            _header(r, b, o, sess, seq)
            r.order_reference_number = be64(b, o + 11)
        elif code == _U:
            r = tables[_U][uk]
            _header(r, b, o, sess, seq)
            r.original_order_reference_number = be64(b, o + 11)
            r.new_order_reference_number = be64(b, o + 19)
            r.shares = be32(b, o + 27)
            r.price = be32(b, o + 31)
        elif code == _E:
            r = tables[_E][uk]
            _header(r, b, o, sess, seq)
            r.order_reference_number = be64(b, o + 11)
            r.executed_shares = be32(b, o + 19)
            r.match_number = be64(b, o + 23)
        elif code == _X:
            r = tables[_X][uk]
            _header(r, b, o, sess, seq)
            r.order_reference_number = be64(b, o + 11)
            r.canceled_shares = be32(b, o + 19)
        elif code == _F:
            r = tables[_F][uk]
            _header(r, b, o, sess, seq)
            r.order_reference_number = be64(b, o + 11)
            r.buy_sell_indicator = u8(b, o + 19)
            r.shares = be32(b, o + 20)
            r.stock = be64(b, o + 24)
            r.price = be32(b, o + 32)
            r.attribution = be32(b, o + 36)
        elif code == _C:
            r = tables[_C][uk]
            _header(r, b, o, sess, seq)
            r.order_reference_number = be64(b, o + 11)
            r.executed_shares = be32(b, o + 19)
            r.match_number = be64(b, o + 23)
            r.printable = u8(b, o + 31)
            r.execution_price = be32(b, o + 32)
        elif code == _P:
            r = tables[_P][uk]
            _header(r, b, o, sess, seq)
            r.order_reference_number = be64(b, o + 11)
            r.buy_sell_indicator = u8(b, o + 19)
            r.shares = be32(b, o + 20)
            r.stock = be64(b, o + 24)
            r.price = be32(b, o + 32)
            r.match_number = be64(b, o + 36)
        elif code == _Q:
            r = tables[_Q][uk]
            _header(r, b, o, sess, seq)
            r.shares = be64(b, o + 11)
            r.stock = be64(b, o + 19)
            r.cross_price = be32(b, o + 27)
            r.match_number = be64(b, o + 31)
            r.cross_type = u8(b, o + 39)
        elif code == _B:
            r = tables[_B][uk]
            _header(r, b, o, sess, seq)
            r.match_number = be64(b, o + 11)
        elif code == _I:
            r = tables[_I][uk]
            _header(r, b, o, sess, seq)
            r.paired_shares = be64(b, o + 11)
            r.imbalance_shares = be64(b, o + 19)
            r.imbalance_direction = u8(b, o + 27)
            r.stock = be64(b, o + 28)
            r.far_price = be32(b, o + 36)
            r.near_price = be32(b, o + 40)
            r.current_reference_price = be32(b, o + 44)
            r.cross_type = u8(b, o + 48)
            r.price_variation_indicator = u8(b, o + 49)
        elif code == _S:
            r = tables[_S][uk]
            _header(r, b, o, sess, seq)
            r.event_code = u8(b, o + 11)
        elif code == _R:
            r = tables[_R][uk]
            _header(r, b, o, sess, seq)
            r.stock = be64(b, o + 11)
            r.market_category = u8(b, o + 19)
            r.financial_status_indicator = u8(b, o + 20)
            r.round_lot_size = be32(b, o + 21)
            r.round_lots_only = u8(b, o + 25)
            r.issue_classification = u8(b, o + 26)
            r.issue_sub_type = be16(b, o + 27)
            r.authenticity = u8(b, o + 29)
            r.short_sale_threshold_indicator = u8(b, o + 30)
            r.ipo_flag = u8(b, o + 31)
            r.luld_reference_price_tier = u8(b, o + 32)
            r.etp_flag = u8(b, o + 33)
            r.etp_leverage_factor = be32(b, o + 34)
            r.inverse_indicator = u8(b, o + 38)
        elif code == _H:
            r = tables[_H][uk]
            _header(r, b, o, sess, seq)
            r.stock = be64(b, o + 11)
            r.trading_state = u8(b, o + 19)
            r.reserved = u8(b, o + 20)
            r.reason = be32(b, o + 21)
        elif code == _Y:
            r = tables[_Y][uk]
            _header(r, b, o, sess, seq)
            r.stock = be64(b, o + 11)
            r.reg_sho_action = u8(b, o + 19)
        elif code == _L:
            r = tables[_L][uk]
            _header(r, b, o, sess, seq)
            r.mpid = be32(b, o + 11)
            r.stock = be64(b, o + 15)
            r.primary_market_maker = u8(b, o + 23)
            r.market_maker_mode = u8(b, o + 24)
            r.market_participant_state = u8(b, o + 25)
        elif code == _V:
            r = tables[_V][uk]
            _header(r, b, o, sess, seq)
            r.level_1 = be64(b, o + 11)
            r.level_2 = be64(b, o + 19)
            r.level_3 = be64(b, o + 27)
        elif code == _W:
            r = tables[_W][uk]
            _header(r, b, o, sess, seq)
            r.breached_level = u8(b, o + 11)
        elif code == _K:
            r = tables[_K][uk]
            _header(r, b, o, sess, seq)
            r.stock = be64(b, o + 11)
            r.ipo_quotation_release_time = be32(b, o + 19)
            r.ipo_quotation_release_qualifier = u8(b, o + 23)
            r.ipo_price = be32(b, o + 24)
        elif code == _J:
            r = tables[_J][uk]
            _header(r, b, o, sess, seq)
            r.stock = be64(b, o + 11)
            r.auction_collar_reference_price = be32(b, o + 19)
            r.upper_auction_collar_price = be32(b, o + 23)
            r.lower_auction_collar_price = be32(b, o + 27)
            r.auction_collar_extension = be32(b, o + 31)
        elif code == _h:
            r = tables[_h][uk]
            _header(r, b, o, sess, seq)
            r.stock = be64(b, o + 11)
            r.market_code = u8(b, o + 19)
            r.operational_halt_action = u8(b, o + 20)
        elif code == _N:
            r = tables[_N][uk]
            _header(r, b, o, sess, seq)
            r.stock = be64(b, o + 11)
            r.interest_flag = u8(b, o + 19)
        else:  # _O
            r = tables[_O][uk]
            _header(r, b, o, sess, seq)
            r.stock = be64(b, o + 11)
            r.open_eligibility_status = u8(b, o + 19)
            r.minimum_allowable_price = be32(b, o + 20)
            r.maximum_allowable_price = be32(b, o + 24)
            r.near_execution_price = be32(b, o + 28)
            r.near_execution_time = be64(b, o + 32)
            r.lower_price_range_collar = be32(b, o + 40)
            r.upper_price_range_collar = be32(b, o + 44)
        n += 1
    return (pos if mode == STREAM else i), n, cut


@njit(cache=True)
def decode_index(b, m_off, m_blocks, m_seq, m_sess, start, stop, tables, rows, o_type, o_row, n, cnt):
    """Decode the packets of index rows [start, stop) while the tables have room for a whole packet;
    returns (next row, order count)."""
    i, n, _ = _walk(b, INDEX, 0, 0, m_off, m_blocks, m_seq, m_sess, start, stop, np.uint16(0), tables, rows,
                    o_type, o_row, n, cnt)
    return i, n


@njit(cache=True)
def decode_stream(b, pos, end, sess, tables, rows, o_type, o_row, n, cnt):
    """Decode length-prefixed messages in b[pos:end] while the tables have room.

    Returns (next position, order count, cut): cut is 1 when the bytes left cannot hold the next
    record (the caller supplies more bytes, or reports a truncated record at the end of the input)."""
    none = np.zeros(0, np.int64)
    return _walk(b, STREAM, pos, end, none, none, np.zeros(0, np.uint64), np.zeros(0, np.uint16), 0, 0,
                 np.uint16(sess), tables, rows, o_type, o_row, n, cnt)


def decode_batch(buf, index, start: int, out: ItchTables, cnt) -> int:
    """Decode the packets of a PacketIndex from row `start` into `out` (appending); returns the next row.
    `out` must hold at least one maximal packet (moldudp64.MAX_BLOCKS_PER_PACKET messages)."""
    nxt, n = decode_index(
        buf, index.offset, index.blocks, index.seq, index.session, start, index.rows,
        out.tables, out.rows, out.order_type, out.order_row, out.count, cnt,
    )
    out.count = n
    return nxt


@njit(cache=True)
def stream_end(b, pos, end):
    """Where the last complete length-prefixed record in b[pos:end] ends."""
    while pos + 2 <= end:
        ln = be16(b, pos)
        if pos + 2 + ln > end:
            break
        pos += 2 + ln
    return pos

