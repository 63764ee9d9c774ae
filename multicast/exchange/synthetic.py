"""Synthetic TotalView-ITCH 5.0 days: seeded, book-consistent message streams for tests and benchmarks.

Owns the generator of a whole trading day (compiled, no Python object per message), its NASDAQ
binary-file encoding ([uint16 BE length][message] records), the packing of such a file into
MoldUDP64 packets written as a nanosecond pcap (Ethernet / 802.1Q / IPv4 / UDP), and the on-disk
cache that benchmarks use so a day is generated once.

The day: S 'O', a stock directory ('R' per stock), S 'S', pre-market order flow, S 'Q' at 09:30,
regular hours (busier near the open and close), S 'M' at 16:00, post-market flow, S 'E', S 'C';
timestamps strictly increase within 04:00–20:00. Order flow mixes A 44 %, D 43 %, U 7 %, E 2 %,
X 1 % and the rest (F, C, P, I, N, Q, H, Y, L, B, J, K, h, O, V, W: each at least once). It is
book-consistent: D/E/X/C/U only name live orders, E/X/C never take more shares than remain (an
order at 0 shares is gone), U gives the order a new reference and keeps its side and stock, and
order references only increase. Live orders first ramp up to `peak_live_orders`, then the A/D
balance follows quotas so that the day's totals land on the mix above. Same arguments, same bytes:
the random numbers come from a splitmix64 generator written here, not from numpy or numba (prices and
times also go through exp/log/sin, so another platform's libm could in principle change a value).
"""

import json
import os

import numpy as np

from xdpfeed.capture.byteorder import be48
from xdpfeed.capture.jit import njit
from xdpfeed.multicast.exchange.rng import next64 as _next
from xdpfeed.multicast.exchange.rng import uniform as _uniform
from xdpfeed.multicast.itch import offsets as O
from xdpfeed.multicast.itch.schema import LENGTHS

GENERATOR_VERSION = 3  # bump when the bytes produced for given arguments change (invalidates caches)

MAX_MESSAGE = 50  # longest ITCH 5.0 message ('I')
NS_HOUR = 3_600_000_000_000
DAY_START = 4 * NS_HOUR
MARKET_OPEN = 9 * NS_HOUR + NS_HOUR // 2
MARKET_CLOSE = 16 * NS_HOUR
DAY_END = 20 * NS_HOUR
FIXED_S = 6  # system events: O, S, Q, M, E, C

# Fractions of the whole day for the order-flow core; the letters after them share what is left.
CORE = {"A": 0.44, "D": 0.43, "U": 0.07, "E": 0.02, "X": 0.01}
REST = {"F": 0.40, "P": 0.20, "I": 0.20, "C": 0.06, "N": 0.05, "H": 0.02, "Q": 0.02, "Y": 0.02,
        "L": 0.01, "B": 0.005, "J": 0.005, "K": 0.002, "h": 0.002, "O": 0.001, "V": 0.0005, "W": 0.0005}
# Forced once at midday when the random draw has not produced them (P before B: B needs a match).
MUST = "FCPQBHYLIJKhVWNO"
MPIDS = (b"GSCO", b"MSCO", b"NITE", b"UBSS", b"LUBS", b"CDRG", b"JPMS", b"SUSQ")
RECENT = 256  # removals pick among the newest RECENT live orders with probability `recent_share`
P_RECENT = 0.6  # default recent_share: 40% of removals hit any live order (harsh on caches)
TICK = 100  # $0.01 in price4

# MoldUDP64 / pcap framing
MAX_BLOCK_BYTES = 1452  # 1500 MTU − IPv4 20 − UDP 8 − MoldUDP64 header 20
L2_LEN = 18  # Ethernet 14 + one 802.1Q tag
FRAME_OVERHEAD = L2_LEN + 20 + 8 + 20
MIDNIGHT_2024_01_02_ET_NS = 1_704_171_600 * 1_000_000_000  # 2024-01-02 00:00 US Eastern (UTC−5)


# ------------------------------------------------------------------------------------------ helpers
@njit(cache=True)
def _below(st, k):
    """Integer in [0, k), k < 2**31."""
    return (np.int64(_next(st) >> np.uint64(32)) * k) >> 32


@njit(cache=True)
def _wr(b, p, v, nbytes):
    """v (int64) big-endian into b[p:p+nbytes]."""
    for i in range(nbytes):
        b[p + i] = (v >> (8 * (nbytes - 1 - i))) & 0xFF


@njit(cache=True)
def _msg(b, q, ln, ty, locate, ts):
    """Record prefix and common header of one message at q; returns the message's first byte."""
    _wr(b, q, ln, 2)
    p = q + 2
    b[p] = ty
    _wr(b, p + O.S.stock_locate, locate, 2)
    _wr(b, p + O.S.tracking_number, locate & 7, 2)  # tracking number: Nasdaq-internal, any small value
    _wr(b, p + O.S.timestamp, ts, 6)
    return p


@njit(cache=True)
def _stock(b, p, sym, s):
    for i in range(8):
        b[p + i] = sym[s, i]


@njit(cache=True)
def _shares(st):
    u = _uniform(st)
    if u < 0.62:
        return 100
    if u < 0.82:
        return 100 * (2 + _below(st, 9))
    if u < 0.95:
        return 1 + _below(st, 99)
    return 100 * (10 + _below(st, 90))


@njit(cache=True)
def _ticks(st):
    """Distance from the mid in ticks: 1 + an exponential of mean 3, at most 60."""
    return 1 + min(np.int64(-np.log(1.0 - _uniform(st)) * 3.0), 59)


@njit(cache=True)
def _time(j, m_pre, m_reg, m, t_pre, st):
    """Timestamp of flow message j: uniform before the open and after the close, U-shaped between."""
    u = _uniform(st)
    if j < m_pre:
        return t_pre + np.int64((j + u) * ((MARKET_OPEN - 1 - t_pre) / m_pre))
    if j < m_pre + m_reg:
        x = (j - m_pre + u) / m_reg
        x = x - 0.6 * np.sin(2.0 * np.pi * x) / (2.0 * np.pi)  # denser near the open and close
        return MARKET_OPEN + 1 + np.int64(x * (MARKET_CLOSE - MARKET_OPEN - 2))
    step = (DAY_END - 2001 - MARKET_CLOSE) / (m - m_pre - m_reg)
    return MARKET_CLOSE + 1 + np.int64((j - m_pre - m_reg + u) * step)


# ---------------------------------------------------------------------------------------- generator
@njit(cache=True)
def _generate(out, n, n_stocks, seed, peak, ramp_end, quota_a, quota_d, p_ad, rest_cum, rest_ty, must, mpids,
              recent_share, stats, locs, mid_seed, mid_offset):
    """Write one day into `out`; returns the bytes used. stats: peak live, live at end, count by type byte.
    locs[s]: stock s's locate; mid_seed >= 0: the stocks' mid prices from their own generator (venues sharing
    a universe), moved by mid_offset ticks."""
    st = np.zeros(1, dtype=np.uint64)
    st[0] = np.uint64(seed) * np.uint64(0xD1B54A32D192ED03) + np.uint64(0x1234567)
    st_mid = st
    if mid_seed >= 0:
        st_mid = np.zeros(1, dtype=np.uint64)
        st_mid[0] = np.uint64(mid_seed) * np.uint64(0xD1B54A32D192ED03) + np.uint64(0x7654321)
    cnt = stats[2:]
    m = n - n_stocks - FIXED_S
    # stocks: symbols, mid prices, Zipf-like activity
    sym = np.full((n_stocks, 8), 0x20, dtype=np.uint8)
    mid = np.empty(n_stocks, dtype=np.int64)
    cw = np.empty(n_stocks, dtype=np.float64)
    acc = 0.0
    for s in range(n_stocks):
        k = s + 26 * 26 + 26  # bijective base 26 from "AAA": unique 3–5 letter symbols
        digits = np.empty(8, dtype=np.uint8)
        nd = 0
        while k > 0:
            k -= 1
            digits[nd] = 65 + k % 26
            nd += 1
            k //= 26
        for i in range(nd):
            sym[s, i] = digits[nd - 1 - i]
        mid[s] = np.int64(np.exp(np.log(2.0) + _uniform(st_mid) * np.log(200.0)) * 100.0) * TICK + mid_offset * TICK
        acc += 1.0 / (s + 1.0) ** 0.9
        cw[s] = acc
    cw /= acc
    cap = peak + n // 16 + 1024
    l_ref = np.empty(cap, dtype=np.int64)
    l_stock = np.empty(cap, dtype=np.int64)
    l_side = np.empty(cap, dtype=np.uint8)
    l_shares = np.empty(cap, dtype=np.int64)
    l_price = np.empty(cap, dtype=np.int64)
    live = 0
    ref = 1000 + _below(st, 1000)
    match = 0
    q = 0
    ts = DAY_START
    # S 'O', directory, S 'S'
    p = _msg(out, q, O.S.length, 83, 0, ts)
    out[p + O.S.event_code] = 79
    q += 2 + O.S.length
    cnt[83] += 1
    cats = np.array([81, 71, 83, 78, 65, 80, 90], dtype=np.uint8)
    for s in range(n_stocks):
        ts += 500 + _below(st, 1000)
        p = _msg(out, q, O.R.length, 82, locs[s], ts)
        _stock(out, p + O.R.stock, sym, s)
        out[p + O.R.market_category] = cats[_below(st, 7)]
        out[p + O.R.financial_status_indicator] = 78  # financial status N
        _wr(out, p + O.R.round_lot_size, 100, 4)
        out[p + O.R.round_lots_only] = 78
        out[p + O.R.issue_classification] = 67  # issue classification C (common)
        out[p + O.R.issue_sub_type] = 90
        out[p + O.R.issue_sub_type + 1] = 32  # sub-type "Z "
        out[p + O.R.authenticity] = 80  # authenticity P (production)
        out[p + O.R.short_sale_threshold_indicator] = 78
        out[p + O.R.ipo_flag] = 78
        out[p + O.R.luld_reference_price_tier] = 49 + _below(st, 2)  # LULD tier 1 or 2
        out[p + O.R.etp_flag] = 78
        _wr(out, p + O.R.etp_leverage_factor, 0, 4)
        out[p + O.R.inverse_indicator] = 78
        q += 2 + O.R.length
        cnt[82] += 1
    ts += 1000
    p = _msg(out, q, O.S.length, 83, 0, ts)
    out[p + O.S.event_code] = 83
    q += 2 + O.S.length
    cnt[83] += 1
    m_pre = max(1, m // 12)
    m_reg = max(1, (m * 5) // 6)
    t_pre = ts + 1000
    missing = 0
    for j in range(m):
        if j == m_pre:
            p = _msg(out, q, O.S.length, 83, 0, MARKET_OPEN)
            out[p + O.S.event_code] = 81  # Q
            q += 2 + O.S.length
            cnt[83] += 1
        elif j == m_pre + m_reg:
            p = _msg(out, q, O.S.length, 83, 0, MARKET_CLOSE)
            out[p + O.S.event_code] = 77  # M
            q += 2 + O.S.length
            cnt[83] += 1
        ts = _time(j, m_pre, m_reg, m, t_pre, st)
        ty = 0
        if j >= m // 2 and missing < must.size:  # midday: make sure every type appeared
            while missing < must.size and cnt[must[missing]] > 0:
                missing += 1
            if missing < must.size:
                ty = must[missing]  # stays missing (and is retried) if it had to become an 'A'
        if ty == 0:
            u = _uniform(st)
            if u < p_ad:
                if stats[0] < peak:  # ramping up until the peak has been reached once
                    target = peak * min(1.0, (j + 1.0) / ramp_end)
                    d = peak / (ramp_end * p_ad) + (target - live) / max(32.0, 0.01 * peak)
                    sigma = 0.5 * (1.0 + min(0.9, max(-0.9, d)))
                else:
                    qa = max(0, quota_a - cnt[65])
                    qd = max(0, quota_d - cnt[68])
                    sigma = 0.5 if qa + qd == 0 else qa / (qa + qd)
                ty = 65 if _uniform(st) < sigma else 68
            else:
                ty = rest_ty[rest_ty.size - 1]
                for i in range(rest_cum.size):
                    if u < rest_cum[i]:
                        ty = rest_ty[i]
                        break
        needs_order = ty == 68 or ty == 85 or ty == 69 or ty == 88 or ty == 67
        if needs_order and live == 0:
            ty = 65
        elif (ty == 65 or ty == 70) and live == cap:
            ty = 68
        # an order to act on: mostly among the newest, otherwise anywhere in the book
        k = 0
        if ty == 68 or ty == 85 or ty == 69 or ty == 88 or ty == 67:
            if live > RECENT and _uniform(st) < recent_share:
                k = live - 1 - _below(st, RECENT)
            else:
                k = _below(st, live)
        gone = False
        if ty == 65 or ty == 70:  # A, F
            s = np.searchsorted(cw, _uniform(st))
            side = 66 if _uniform(st) < 0.5 else 83
            price = mid[s] - TICK * _ticks(st) if side == 66 else mid[s] + TICK * _ticks(st)
            price = max(TICK, price)
            shares = _shares(st)
            ref += 1 + _below(st, 4)
            p = _msg(out, q, LENGTHS[ty], ty, locs[s], ts)
            _wr(out, p + O.A.order_reference_number, ref, 8)
            out[p + O.A.buy_sell_indicator] = side
            _wr(out, p + O.A.shares, shares, 4)
            _stock(out, p + O.A.stock, sym, s)
            _wr(out, p + O.A.price, price, 4)
            if ty == 70:
                _wr(out, p + O.F.attribution, mpids[_below(st, mpids.size)], 4)
            l_ref[live] = ref
            l_stock[live] = s
            l_side[live] = side
            l_shares[live] = shares
            l_price[live] = price
            live += 1
        elif ty == 68:  # D
            p = _msg(out, q, LENGTHS[ty], ty, locs[l_stock[k]], ts)
            _wr(out, p + O.D.order_reference_number, l_ref[k], 8)
            gone = True
        elif ty == 85:  # U: new reference, same side and stock
            s = l_stock[k]
            old = l_ref[k]
            ref += 1 + _below(st, 4)
            price = max(TICK, l_price[k] + TICK * (_below(st, 7) - 3))
            # stay on the order's side of the stock's fixed mid: the book is never crossed or locked
            price = min(price, mid[s] - TICK) if l_side[k] == 66 else max(price, mid[s] + TICK)
            shares = _shares(st)
            p = _msg(out, q, LENGTHS[ty], ty, locs[s], ts)
            _wr(out, p + O.U.original_order_reference_number, old, 8)
            _wr(out, p + O.U.new_order_reference_number, ref, 8)
            _wr(out, p + O.U.shares, shares, 4)
            _wr(out, p + O.U.price, price, 4)
            l_ref[k] = ref
            l_shares[k] = shares
            l_price[k] = price
        elif ty == 69 or ty == 67 or ty == 88:  # E, C, X: take some or all of what remains
            left = l_shares[k]
            take = left if (left == 1 or (ty != 88 and _uniform(st) < 0.6)) else 1 + _below(st, left - 1)
            p = _msg(out, q, LENGTHS[ty], ty, locs[l_stock[k]], ts)
            _wr(out, p + O.E.order_reference_number, l_ref[k], 8)
            _wr(out, p + O.E.executed_shares, take, 4)
            if ty != 88:
                match += 1
                _wr(out, p + O.E.match_number, match, 8)
            if ty == 67:
                out[p + O.C.printable] = 89 if _uniform(st) < 0.9 else 78
                _wr(out, p + O.C.execution_price, max(TICK, l_price[k] + TICK * (_below(st, 3) - 1)), 4)
            l_shares[k] = left - take
            gone = take == left
        elif ty == 80:  # P: non-displayed trade, no book change
            s = np.searchsorted(cw, _uniform(st))
            match += 1
            p = _msg(out, q, LENGTHS[ty], ty, locs[s], ts)
            _wr(out, p + O.P.order_reference_number, 0, 8)
            out[p + O.P.buy_sell_indicator] = 66
            _wr(out, p + O.P.shares, _shares(st), 4)
            _stock(out, p + O.P.stock, sym, s)
            _wr(out, p + O.P.price, mid[s], 4)
            _wr(out, p + O.P.match_number, match, 8)
        elif ty == 73:  # I: imbalance
            s = np.searchsorted(cw, _uniform(st))
            p = _msg(out, q, LENGTHS[ty], ty, locs[s], ts)
            _wr(out, p + O.I.paired_shares, 100 * _below(st, 50000), 8)
            _wr(out, p + O.I.imbalance_shares, 100 * _below(st, 5000), 8)
            out[p + O.I.imbalance_direction] = (66, 83, 78, 79)[_below(st, 4)]
            _stock(out, p + O.I.stock, sym, s)
            _wr(out, p + O.I.far_price, mid[s] + TICK * (_below(st, 21) - 10), 4)
            _wr(out, p + O.I.near_price, mid[s] + TICK * (_below(st, 11) - 5), 4)
            _wr(out, p + O.I.current_reference_price, mid[s], 4)
            out[p + O.I.cross_type] = 79 if j < m_pre + m_reg // 2 else 67
            out[p + O.I.price_variation_indicator] = 76 if _uniform(st) < 0.5 else 32
        elif ty == 81:  # Q: cross
            s = np.searchsorted(cw, _uniform(st))
            match += 1
            p = _msg(out, q, LENGTHS[ty], ty, locs[s], ts)
            _wr(out, p + O.Q.shares, 100 * _below(st, 100000), 8)
            _stock(out, p + O.Q.stock, sym, s)
            _wr(out, p + O.Q.cross_price, mid[s], 4)
            _wr(out, p + O.Q.match_number, match, 8)
            out[p + O.Q.cross_type] = (79, 67, 72, 73)[_below(st, 4)]
        elif ty == 66:  # B: breaks an earlier print
            p = _msg(out, q, LENGTHS[ty], ty, 0, ts)
            _wr(out, p + O.B.match_number, 1 + _below(st, max(1, match)), 8)
        elif ty == 86 or ty == 87:  # V, W: market-wide, locate 0
            p = _msg(out, q, LENGTHS[ty], ty, 0, ts)
            if ty == 86:
                _wr(out, p + O.V.level_1, 4_441_500_000_000, 8)  # $44,415.00 etc. in price8
                _wr(out, p + O.V.level_2, 4_107_900_000_000, 8)
                _wr(out, p + O.V.level_3, 3_582_900_000_000, 8)
            else:
                out[p + O.W.breached_level] = 49 + _below(st, 3)
        else:  # one-stock status and reference messages
            s = np.searchsorted(cw, _uniform(st))
            if ty == 76:  # L
                p = _msg(out, q, LENGTHS[ty], ty, locs[s], ts)
                _wr(out, p + O.L.mpid, mpids[_below(st, mpids.size)], 4)
                _stock(out, p + O.L.stock, sym, s)
                out[p + O.L.primary_market_maker] = 89 if _uniform(st) < 0.3 else 78
                out[p + O.L.market_maker_mode] = 78
                out[p + O.L.market_participant_state] = 65
            elif ty == 75:  # K: locate documented as 0
                p = _msg(out, q, LENGTHS[ty], ty, 0, ts)
                _stock(out, p + O.K.stock, sym, s)
                _wr(out, p + O.K.ipo_quotation_release_time, ts // 1_000_000_000 + 600, 4)
                out[p + O.K.ipo_quotation_release_qualifier] = 65
                _wr(out, p + O.K.ipo_price, mid[s], 4)
            else:
                p = _msg(out, q, LENGTHS[ty], ty, locs[s], ts)
                _stock(out, p + O.R.stock, sym, s)
                if ty == 72:  # H
                    out[p + O.H.trading_state] = (84, 72, 80, 81)[_below(st, 4)]
                    out[p + O.H.reserved] = 32
                    _wr(out, p + O.H.reason, 0x54312020 if _uniform(st) < 0.5 else 0x20202020, 4)  # "T1  " / blank
                elif ty == 89:  # Y
                    out[p + O.Y.reg_sho_action] = 48 + _below(st, 3)
                elif ty == 78:  # N
                    out[p + O.N.interest_flag] = (66, 83, 65, 78)[_below(st, 4)]
                elif ty == 74:  # J
                    _wr(out, p + O.J.auction_collar_reference_price, mid[s], 4)
                    _wr(out, p + O.J.upper_auction_collar_price, mid[s] + mid[s] // 20, 4)
                    _wr(out, p + O.J.lower_auction_collar_price, mid[s] - mid[s] // 20, 4)
                    _wr(out, p + O.J.auction_collar_extension, _below(st, 3), 4)
                elif ty == 104:  # h
                    out[p + O.h.market_code] = (81, 66, 88)[_below(st, 3)]
                    out[p + O.h.operational_halt_action] = 72 if _uniform(st) < 0.5 else 84
                else:  # O
                    out[p + O.O.open_eligibility_status] = 89
                    _wr(out, p + O.O.minimum_allowable_price, mid[s] - mid[s] // 10, 4)
                    _wr(out, p + O.O.maximum_allowable_price, mid[s] + mid[s] // 10, 4)
                    _wr(out, p + O.O.near_execution_price, mid[s], 4)
                    _wr(out, p + O.O.near_execution_time, ts + 60_000_000_000, 8)
                    _wr(out, p + O.O.lower_price_range_collar, mid[s] - mid[s] // 20, 4)
                    _wr(out, p + O.O.upper_price_range_collar, mid[s] + mid[s] // 20, 4)
        q = p + ((np.int64(out[p - 2]) << 8) | out[p - 1])
        cnt[ty] += 1
        if gone:  # swap-remove
            live -= 1
            l_ref[k] = l_ref[live]
            l_stock[k] = l_stock[live]
            l_side[k] = l_side[live]
            l_shares[k] = l_shares[live]
            l_price[k] = l_price[live]
        stats[0] = max(stats[0], live)
    for code in (69, 67):  # S 'E' then S 'C'
        p = _msg(out, q, O.S.length, 83, 0, DAY_END - 1000 if code == 69 else DAY_END)
        out[p + O.S.event_code] = code
        q += 2 + O.S.length
        cnt[83] += 1
    stats[1] = live
    return q


def _plan(n_messages, n_stocks, peak_live_orders):
    if n_stocks is None:
        n_stocks = min(8000, max(1, n_messages // 1000))
    if not 1 <= n_stocks <= 65535 or n_stocks > n_messages // 100:
        raise ValueError(f"n_stocks must be in 1..min(65535, n_messages // 100), got {n_stocks}")
    m = n_messages - n_stocks - FIXED_S
    if m < 1000:
        raise ValueError(f"n_messages must leave at least 1000 order-flow messages, got {n_messages}")
    if peak_live_orders is None:
        peak_live_orders = min(1_000_000, m // 8)
    if not 0 <= peak_live_orders <= m // 4:
        raise ValueError(f"peak_live_orders must be in 0..{m // 4} for {n_messages} messages")
    return n_stocks, m, peak_live_orders


def generate(n_messages: int, n_stocks: int | None = None, seed: int = 1,
             peak_live_orders: int | None = None, recent_share: float = P_RECENT, locates: np.ndarray | None = None,
             mid_seed: int | None = None, mid_offset_ticks: int = 0) -> tuple[np.ndarray, dict]:
    """(ITCH binary file as uint8 array, stats dict) for one synthetic day of exactly n_messages.
    recent_share: fraction of D/E/X/C/U that act on one of the newest 256 live orders (the rest pick
    any live order); real feeds cancel mostly young orders, so higher values are closer to real days.
    Venues sharing one universe of symbols (multicast.exchange.venues): `locates[s]` is the locate of the
    s-th symbol (default s + 1), `mid_seed` draws the symbols' mid prices from a generator of their own
    (the same for every venue), and `mid_offset_ticks` moves them."""
    if not 0.0 <= recent_share <= 1.0:
        raise ValueError(f"recent_share must be in 0..1, not {recent_share}")
    n_stocks, m, peak = _plan(n_messages, n_stocks, peak_live_orders)
    scale = n_messages / m  # flow probabilities are fractions of the whole day
    p_ad = (CORE["A"] + CORE["D"]) * scale
    letters = ["U", "E", "X"]
    probs = [CORE[t] * scale for t in letters]
    rest_total = 1.0 - p_ad - sum(probs)
    wsum = sum(REST.values())
    for t, w in REST.items():
        letters.append(t)
        probs.append(rest_total * w / wsum)
    rest_cum = p_ad + np.cumsum(probs)
    rest_cum[-1] = 1.0
    rest_ty = np.array([ord(t) for t in letters], dtype=np.uint8)
    must = np.array([ord(t) for t in MUST], dtype=np.int64)
    mpids = np.array([int.from_bytes(x, "big") for x in MPIDS], dtype=np.int64)
    ramp_end = min(m // 2, int(peak * 2.3)) if peak else 0
    out = np.empty(n_messages * (MAX_MESSAGE + 2), dtype=np.uint8)  # untouched pages cost nothing
    stats = np.zeros(2 + 256, dtype=np.int64)
    locs = np.arange(1, n_stocks + 1, dtype=np.int64) if locates is None else np.asarray(locates, dtype=np.int64)
    if locs.shape != (n_stocks,) or len(set(locs.tolist())) != n_stocks or locs.min() < 1 or locs.max() > 65535:
        raise ValueError(f"locates must be {n_stocks} different values in 1..65535")
    size = _generate(out, n_messages, n_stocks, seed & 0xFFFFFFFFFFFFFFFF, peak, ramp_end,
                     round(CORE["A"] * n_messages), round(CORE["D"] * n_messages), p_ad, rest_cum, rest_ty,
                     must, mpids, float(recent_share), stats, locs, -1 if mid_seed is None else mid_seed & (2**62 - 1),
                     int(mid_offset_ticks))
    counts = {chr(i): int(stats[2 + i]) for i in range(256) if stats[2 + i]}
    assert sum(counts.values()) == n_messages, counts
    info = {"n_messages": n_messages, "n_stocks": n_stocks, "seed": seed, "peak_live_orders": peak,
            "peak_live": int(stats[0]), "live_at_end": int(stats[1]), "bytes": int(size), "counts": counts,
            "recent_share": recent_share}
    return out[:size].copy(), info


def generate_itch_file_bytes(n_messages: int, n_stocks: int | None = None, seed: int = 1,
                             peak_live_orders: int | None = None) -> np.ndarray:
    """One synthetic day in NASDAQ binary ITCH file format ([uint16 BE length][message] ...)."""
    return generate(n_messages, n_stocks, seed, peak_live_orders)[0]


# -------------------------------------------------------------------------------------- pcap writer
@njit(cache=True)
def _ip_checksum(b, p):
    s = 0
    for i in range(0, 20, 2):
        s += (np.int64(b[p + i]) << 8) | b[p + i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@njit(cache=True)
def _frame(out, o, tmpl, seq, count, blocks, bstart, blen, ts_ns, ip_id):
    """pcap record + frame at out[o]; the MoldUDP64 blocks are blocks[bstart:bstart+blen]. Returns o after."""
    flen = FRAME_OVERHEAD + blen
    sec = ts_ns // 1_000_000_000
    ns = ts_ns % 1_000_000_000
    for i in range(4):  # pcap record header is little-endian
        out[o + i] = (sec >> (8 * i)) & 0xFF
        out[o + 4 + i] = (ns >> (8 * i)) & 0xFF
        out[o + 8 + i] = (flen >> (8 * i)) & 0xFF
        out[o + 12 + i] = (flen >> (8 * i)) & 0xFF
    f = o + 16
    for i in range(tmpl.size):  # L2 + IPv4 + UDP + session: fixed per file
        out[f + i] = tmpl[i]
    ip = f + L2_LEN
    _wr(out, ip + 2, 20 + 8 + 20 + blen, 2)
    _wr(out, ip + 4, ip_id & 0xFFFF, 2)
    _wr(out, ip + 10, 0, 2)
    _wr(out, ip + 10, _ip_checksum(out, ip), 2)
    _wr(out, ip + 24, 8 + 20 + blen, 2)  # UDP length (checksum stays 0: allowed over IPv4)
    _wr(out, ip + 38, seq, 8)
    _wr(out, ip + 46, count, 2)
    d = ip + 48
    for i in range(blen):
        out[d + i] = blocks[bstart + i]
    return d + blen


@njit(cache=True)
def _pack(b, pos, end, out, tmpl, state, max_block, flush_gap_ns, midnight_ns):
    """Pack records b[pos:end] into packets written to `out` until it is nearly full.

    state = [next sequence, ip id, packets, timestamp of the last message]. A record cut short by
    `end` is left out. Returns (next pos, bytes written)."""
    o = 0
    limit = out.size - (16 + FRAME_OVERHEAD + max_block + 2 + 65535)
    while pos < end and o <= limit:
        start = pos
        count = 0
        last_ts = state[3]
        while pos + 2 <= end and count < 0xFFFE:
            ln = (np.int64(b[pos]) << 8) | b[pos + 1]
            if pos + 2 + ln > end or (count > 0 and pos + 2 + ln - start > max_block):
                break
            ts = 0
            if ln >= 11:
                ts = be48(b, pos + 7)
            if count > 0 and flush_gap_ns > 0 and ts - last_ts > flush_gap_ns:
                break
            last_ts = ts
            pos += 2 + ln
            count += 1
        if count == 0:
            return end, o
        o = _frame(out, o, tmpl, state[0], count, b, start, pos - start, midnight_ns + last_ts, state[1])
        state[0] += count
        state[1] += 1
        state[2] += 1
        state[3] = last_ts
    return pos, o


def _template(session: bytes, group: str, port: int, src: str, sport: int, vlan: int) -> np.ndarray:
    """Ethernet (multicast MAC of the group) / 802.1Q / IPv4 / UDP / MoldUDP64 session, lengths left 0."""
    g = bytes(int(x) for x in group.split("."))
    mac = bytes((0x01, 0x00, 0x5E, g[1] & 0x7F, g[2], g[3]))
    l2 = mac + bytes.fromhex("00005e005301") + (0x8100).to_bytes(2, "big") + (vlan & 0xFFF).to_bytes(2, "big")
    l2 += (0x0800).to_bytes(2, "big")
    ip = bytes((0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0)) + bytes(int(x) for x in src.split(".")) + g
    udp = sport.to_bytes(2, "big") + port.to_bytes(2, "big") + bytes(4)
    head = l2 + ip + udp + session.ljust(10, b" ")[:10]
    assert len(head) == FRAME_OVERHEAD - 10
    return np.frombuffer(head, dtype=np.uint8).copy()


def write_moldudp64_pcap(path, itch: np.ndarray, session: bytes = b"SYNTH00001", first_seq: int = 1,
                         group: str = "233.54.12.111", port: int = 26477, src: str = "206.200.127.138",
                         sport: int = 26477, vlan: int = 100, max_block_bytes: int = MAX_BLOCK_BYTES,
                         flush_gap_ns: int = 0, midnight_ns: int = MIDNIGHT_2024_01_02_ET_NS,
                         end_of_session: bool = True, chunk_bytes: int = 64 << 20) -> dict:
    """Write an ITCH binary file's messages as MoldUDP64 packets to a nanosecond pcap at `path`.

    Each packet holds as many whole blocks as fit in `max_block_bytes` (and, when flush_gap_ns > 0,
    starts a new packet when the next message is that much later); its pcap time is midnight_ns plus
    the ITCH timestamp of its last message. Sequence numbers run from first_seq without a hole; an
    End of Session packet (count 0xFFFF) closes the file unless end_of_session is False."""
    tmpl = _template(session, group, port, src, sport, vlan)
    b = np.ascontiguousarray(itch, dtype=np.uint8)
    state = np.array([first_seq, 0, 0, 0], dtype=np.int64)
    buf = np.empty(max(chunk_bytes, 1 << 20), dtype=np.uint8)
    pos = 0
    with open(path, "wb") as f:
        header = (0xA1B23C4D).to_bytes(4, "little") + (2).to_bytes(2, "little") + (4).to_bytes(2, "little")
        f.write(header + bytes(8) + (65535).to_bytes(4, "little") + (1).to_bytes(4, "little"))
        while pos < b.size:
            pos, o = _pack(b, pos, b.size, buf, tmpl, state, max_block_bytes, flush_gap_ns, midnight_ns)
            f.write(memoryview(buf)[:o])
        if end_of_session:
            o = _frame(buf, 0, tmpl, state[0], 0xFFFF, b, 0, 0, midnight_ns + state[3] + 1000, state[1])
            f.write(memoryview(buf)[:o])
            state[1] += 1
            state[2] += 1
    return {"packets": int(state[2]), "messages": int(state[0]) - first_seq, "next_seq": int(state[0]),
            "bytes": os.path.getsize(path)}


# -------------------------------------------------------------------------------------------- cache
def _cached(path: str, key: dict) -> dict | None:
    """The sidecar metadata of `path` when it was written for exactly `key` and is complete."""
    try:
        with open(path + ".json") as f:
            meta = json.load(f)
        if meta.get("key") == key and os.path.getsize(path) == meta["bytes"]:
            return meta
    except (OSError, ValueError, KeyError):
        pass
    return None


def _publish(path: str, tmp: str, meta: dict) -> None:
    os.replace(tmp, path)
    with open(path + ".json.tmp", "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    os.replace(path + ".json.tmp", path + ".json")


def generate_to_file(path: str, n_messages: int, seed: int = 1, n_stocks: int | None = None,
                     peak_live_orders: int | None = None, pcap_path: str | None = None,
                     recent_share: float = P_RECENT) -> dict:
    """Write the day to `path` (ITCH binary file) and, if asked, its MoldUDP64 pcap to `pcap_path`.

    Either file is reused when its sidecar `<file>.json` says it was made by this generator version
    for the same arguments. Returns the ITCH file's metadata (with a "pcap" entry when asked)."""
    key = {"version": GENERATOR_VERSION, "n_messages": n_messages, "seed": seed, "n_stocks": n_stocks,
           "peak_live_orders": peak_live_orders, "recent_share": recent_share}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    meta = _cached(path, key)
    data = None
    if meta is None:
        data, info = generate(n_messages, n_stocks, seed, peak_live_orders, recent_share)
        data.tofile(path + ".tmp")
        meta = dict(info, key=key)
        _publish(path, path + ".tmp", meta)
    if pcap_path is not None:
        pkey = dict(key, pcap=True)
        pmeta = _cached(pcap_path, pkey)
        if pmeta is None:
            if data is None:
                data = np.fromfile(path, dtype=np.uint8)
            info = write_moldudp64_pcap(pcap_path + ".tmp", data)
            pmeta = dict(info, key=pkey)
            _publish(pcap_path, pcap_path + ".tmp", pmeta)
        meta = dict(meta, pcap=pmeta)
    return meta
