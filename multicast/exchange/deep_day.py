"""A narrow and deep synthetic ITCH 5.0 day, the other shape of book benchmarks and tests: few stocks (50),
each with about `levels` price levels on each side (orders are placed uniformly 1..levels ticks from a fixed
mid), and order flow that touches any live order, not mostly the newest, so executions, cancels, deletes and
replaces land at every depth. It also carries what real days and other generators do and a book must
survive: dead references (E, X, D, U naming an order that is gone or never was) and over-executions (E
executing more shares than remain).

The mix after the ramp to `live` orders: A 40 % (F one in 20 of them), D 22 %, X 12 %, E 12 % (one in 50
over-executes), U 8 %, C 2 %, P 1 %, dead references 3 %. Timestamps increase from 09:30. The file is
[uint16 BE length][message] records, seeded (splitmix64) and compiled; `generate_to_file` caches it
beside its metadata as multicast.exchange.synthetic does.
"""

import os

import numpy as np

from xdpfeed.capture.jit import njit
from xdpfeed.multicast.exchange import synthetic as syn
from xdpfeed.multicast.exchange.rng import uniform as _uniform
from xdpfeed.multicast.itch import offsets as O

VERSION = 1
TICK = syn.TICK


@njit(cache=True)
def _add(b, q, ts, locate, ref, side, shares, price, sym, s, attributed):
    ty = 70 if attributed else 65
    ln = O.F.length if attributed else O.A.length
    p = syn._msg(b, q, ln, ty, locate, ts)
    syn._wr(b, p + O.A.order_reference_number, ref, 8)
    b[p + O.A.buy_sell_indicator] = 66 if side == 0 else 83
    syn._wr(b, p + O.A.shares, shares, 4)
    syn._stock(b, p + O.A.stock, sym, s)
    syn._wr(b, p + O.A.price, price, 4)
    if attributed:
        for i in range(4):
            b[p + O.F.attribution + i] = 78 + i  # NOPQ
    return q + 2 + ln


@njit(cache=True)
def _system_event(b, q, ts, code):
    p = syn._msg(b, q, O.S.length, 83, 0, ts)
    b[p + O.S.event_code] = code
    return q + 2 + O.S.length


@njit(cache=True)
def _replace(b, q, ts, locate, old, new, shares, price):
    p = syn._msg(b, q, O.U.length, 85, locate, ts)
    syn._wr(b, p + O.U.original_order_reference_number, old, 8)
    syn._wr(b, p + O.U.new_order_reference_number, new, 8)
    syn._wr(b, p + O.U.shares, shares, 4)
    syn._wr(b, p + O.U.price, price, 4)
    return q + 2 + O.U.length


@njit(cache=True)
def _level_price(st, s, side, levels):
    """A price 1..levels ticks from stock s's mid, below it for a bid, above it for an offer."""
    ticks = 1 + syn._below(st, levels)
    mid = (100 + 10 * s) * 100 * TICK
    return mid - ticks * TICK if side == 0 else mid + ticks * TICK


@njit(cache=True)
def _ref_msg(b, q, ts, locate, ty, ref, shares, match):
    """E (shares, match), X (shares), D: one order reference and maybe shares."""
    ln = O.E.length if ty == 69 else O.X.length if ty == 88 else O.D.length
    p = syn._msg(b, q, ln, ty, locate, ts)
    syn._wr(b, p + O.E.order_reference_number, ref, 8)
    if ty == 69:
        syn._wr(b, p + O.E.executed_shares, shares, 4)
        syn._wr(b, p + O.E.match_number, match, 8)
    elif ty == 88:
        syn._wr(b, p + O.X.canceled_shares, shares, 4)
    return q + 2 + ln


@njit(cache=True)
def _generate(out, n, n_stocks, levels, live_target, seed, sym):
    st = np.zeros(1, dtype=np.uint64)
    st[0] = np.uint64(seed)
    cap = n + 16
    # the live orders: a dense array (swap-remove) and each reference's position in it (-1: not live)
    l_ref = np.zeros(cap, dtype=np.int64)
    l_loc = np.zeros(cap, dtype=np.int64)
    l_side = np.zeros(cap, dtype=np.int64)
    l_sh = np.zeros(cap, dtype=np.int64)
    pos = np.full(cap + 1, -1, dtype=np.int64)
    nlive = 0
    next_ref = 1
    match = 1
    counts = np.zeros(8, dtype=np.int64)  # dead refs, over-executions, A, D, X, E, U, C
    q = 0
    ts = syn.MARKET_OPEN - 1000
    m = 0
    # S O, the directory, S Q
    q = _system_event(out, q, ts, 79)  # O
    m += 1
    for s in range(n_stocks):
        ts += 1
        p = syn._msg(out, q, O.R.length, 82, s + 1, ts)
        syn._stock(out, p + O.R.stock, sym, s)
        out[p + O.R.market_category] = 81
        out[p + O.R.financial_status_indicator] = 78
        syn._wr(out, p + O.R.round_lot_size, 100, 4)
        out[p + O.R.round_lots_only] = 78
        out[p + O.R.issue_classification] = 67
        out[p + O.R.issue_sub_type] = 90
        out[p + O.R.issue_sub_type + 1] = 32
        out[p + O.R.authenticity] = 80
        out[p + O.R.short_sale_threshold_indicator] = 78
        out[p + O.R.ipo_flag] = 78
        out[p + O.R.luld_reference_price_tier] = 49
        out[p + O.R.etp_flag] = 78
        out[p + O.R.inverse_indicator] = 78
        q += 2 + O.R.length
        m += 1
    ts += 1
    q = _system_event(out, q, ts, 81)  # Q
    m += 1
    while m < n - 1:
        ts += 7
        u = _uniform(st)
        if nlive < live_target and (nlive < 16 or u < 0.9):
            u = 0.0  # the ramp: adds
        if u < 0.40:  # A (F)
            s = syn._below(st, n_stocks)
            side = syn._below(st, 2)
            price = _level_price(st, s, side, levels)
            shares = 100 * (1 + syn._below(st, 10))
            ref = next_ref
            next_ref += 1
            q = _add(out, q, ts, s + 1, ref, side, shares, price, sym, s, syn._below(st, 20) == 0)
            l_ref[nlive], l_loc[nlive], l_side[nlive], l_sh[nlive] = ref, s, side, shares
            pos[ref] = nlive
            nlive += 1
            counts[2] += 1
        elif u < 0.96 and nlive > 0:
            k = syn._below(st, nlive)
            ref, s, side, shares = l_ref[k], l_loc[k], l_side[k], l_sh[k]
            gone = True
            if u < 0.62:  # D
                q = _ref_msg(out, q, ts, s + 1, 68, ref, 0, 0)
                counts[3] += 1
            elif u < 0.74:  # X: part, or all of it
                x = shares if syn._below(st, 4) == 0 else 1 + syn._below(st, max(1, shares - 1))
                x = min(x, shares)
                q = _ref_msg(out, q, ts, s + 1, 88, ref, x, 0)
                gone = x >= shares
                l_sh[k] = shares - x
                counts[4] += 1
            elif u < 0.86:  # E: part, all, or more than remains (over-execution)
                r = syn._below(st, 50)
                x = shares + 100 * (1 + syn._below(st, 5)) if r == 0 else shares if r < 20 else \
                    1 + syn._below(st, max(1, shares - 1))
                x = min(x, shares) if r != 0 else x
                q = _ref_msg(out, q, ts, s + 1, 69, ref, x, match)
                match += 1
                gone = x >= shares
                l_sh[k] = shares - x
                counts[5] += 1
                if r == 0:
                    counts[1] += 1
            elif u < 0.94:  # U: a new reference, price and size, same side and stock
                price = _level_price(st, s, side, levels)
                nsh = 100 * (1 + syn._below(st, 10))
                new = next_ref
                next_ref += 1
                q = _replace(out, q, ts, s + 1, ref, new, nsh, price)
                # the new order takes the old one's place in the live set
                pos[ref] = -1
                l_ref[k], l_sh[k] = new, nsh
                pos[new] = k
                gone = False
                counts[6] += 1
            else:  # C: part of it at another price
                x = shares if syn._below(st, 3) == 0 else 1 + syn._below(st, max(1, shares - 1))
                x = min(x, shares)
                p = syn._msg(out, q, O.C.length, 67, s + 1, ts)
                syn._wr(out, p + O.C.order_reference_number, ref, 8)
                syn._wr(out, p + O.C.executed_shares, x, 4)
                syn._wr(out, p + O.C.match_number, match, 8)
                out[p + O.C.printable] = 89
                syn._wr(out, p + O.C.execution_price, 100 * TICK, 4)
                q += 2 + O.C.length
                match += 1
                gone = x >= shares
                l_sh[k] = shares - x
                counts[7] += 1
            if gone:  # swap-remove
                last = nlive - 1
                pos[l_ref[k]] = -1
                if k != last:
                    l_ref[k], l_loc[k], l_side[k], l_sh[k] = l_ref[last], l_loc[last], l_side[last], l_sh[last]
                    pos[l_ref[k]] = k
                nlive -= 1
        elif u < 0.97:  # P: a non-displayed trade
            s = syn._below(st, n_stocks)
            p = syn._msg(out, q, O.P.length, 80, s + 1, ts)
            syn._wr(out, p + O.P.order_reference_number, 0, 8)
            out[p + O.P.buy_sell_indicator] = 66
            syn._wr(out, p + O.P.shares, 100, 4)
            syn._stock(out, p + O.P.stock, sym, s)
            syn._wr(out, p + O.P.price, 100 * TICK, 4)
            syn._wr(out, p + O.P.match_number, match, 8)
            match += 1
            q += 2 + O.P.length
        else:  # a dead reference: an order that is gone (or never was)
            s = syn._below(st, n_stocks)
            ref = 1 + syn._below(st, max(1, next_ref - 1)) if syn._below(st, 2) == 0 else next_ref + 1_000_000
            if ref < pos.size and pos[ref] >= 0:
                ref = next_ref + 2_000_000  # it is live: name one that never was
            r = syn._below(st, 4)
            if r == 3:
                q = _replace(out, q, ts, s + 1, ref, next_ref, 100, 100 * TICK)
                next_ref += 1  # the reference is used up: the book ignores the replace
            else:
                q = _ref_msg(out, q, ts, s + 1, (69, 88, 68)[r], ref, 100, match)
                match += 1
            counts[0] += 1
        m += 1
    ts += 1
    q = _system_event(out, q, ts, 67)  # C
    m += 1
    return q, m, nlive, counts


def _symbols(n_stocks: int) -> np.ndarray:
    sym = np.full((n_stocks, 8), 32, dtype=np.uint8)
    for s in range(n_stocks):
        name = f"DP{s:03d}".encode()
        sym[s, : len(name)] = np.frombuffer(name, dtype=np.uint8)
    return sym


def generate(n_messages: int, n_stocks: int = 50, levels: int = 1000, live: int | None = None,
             seed: int = 1) -> tuple[np.ndarray, dict]:
    """(the day as [uint16 length][message] records, what it holds)."""
    if n_messages < n_stocks + 8:
        raise ValueError(f"a deep day of {n_stocks} stocks needs at least {n_stocks + 8} messages")
    live = live or n_stocks * 2 * levels * 2
    out = np.zeros(n_messages * (2 + syn.MAX_MESSAGE), dtype=np.uint8)
    q, m, nlive, c = _generate(out, n_messages, n_stocks, levels, live, seed, _symbols(n_stocks))
    info = {"messages": int(m), "bytes": int(q), "stocks": n_stocks, "levels": levels, "live_target": live,
            "live_at_end": int(nlive), "dead_references": int(c[0]), "over_executions": int(c[1]),
            "adds": int(c[2]), "deletes": int(c[3]), "cancels": int(c[4]), "executions": int(c[5]),
            "replaces": int(c[6]), "c_executions": int(c[7])}
    return out[:q].copy(), info


def generate_to_file(path: str, n_messages: int, seed: int = 1, n_stocks: int = 50, levels: int = 1000) -> dict:
    """Write the day to `path` (ITCH binary file), or reuse it when its sidecar says it is this day."""
    key = {"generator": "deep", "version": VERSION, "n_messages": n_messages, "seed": seed, "n_stocks": n_stocks,
           "levels": levels}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    meta = syn._cached(path, key)
    if meta is None:
        data, info = generate(n_messages, n_stocks, levels, seed=seed)
        data.tofile(path + ".tmp")
        meta = dict(info, key=key)
        syn._publish(path, path + ".tmp", meta)
    return meta
