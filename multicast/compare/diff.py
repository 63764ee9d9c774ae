"""Two delivered streams compared message by message (multicast.compare.streams gives both sides).

Alignment: by sequence number when both sides carry them (captures, subscriptions); otherwise by position,
resynchronizing after a difference: when a message turns up again within LOOKAHEAD messages on the other
side, the ones skipped are missing (only in A) or extra (only in B), two neighbours in the opposite order are
two differences, anything else is one difference. Every comparison of two messages is of their bytes.

The report: identical or not; counts of missing, extra and different messages, by ITCH type; the first
divergence with both messages decoded (and the fields that differ); the books each side builds, symbol by
symbol; and where both sides carry receive timestamps, which side had each message first and by how much.
"""

import numpy as np

from xdpfeed.capture.jit import njit

LOOKAHEAD = 64
DBN_ACTION = 38  # offset of an MBO record's action
LATENCY_PERCENTILES = (1, 10, 50, 90, 99)


@njit(cache=True)
def _same(a, ao, i, b, bo, j):
    """Message i of a equals message j of b, byte for byte (length prefix included)."""
    p, q = ao[i], bo[j]
    n = ao[i + 1] - p
    if bo[j + 1] - q != n:
        return False
    for k in range(n):
        if a[p + k] != b[q + k]:
            return False
    return True


@njit(cache=True)
def _pairs_equal(a, ao, ia, b, bo, ib, out):
    for k in range(ia.size):
        out[k] = _same(a, ao, ia[k], b, bo, ib[k])


@njit(cache=True)
def _walk(a, ao, na, b, bo, nb, look, kind, ai, bj):
    """Positional alignment with resynchronization: rows (kind, i, j) with kind 0 equal, 1 missing (i only),
    2 extra (j only), 3 different; returns how many rows."""
    i = j = r = 0
    while i < na and j < nb:
        if _same(a, ao, i, b, bo, j):
            kind[r], ai[r], bj[r] = 0, i, j
            r += 1
            i += 1
            j += 1
            continue
        if i + 1 < na and j + 1 < nb and _same(a, ao, i, b, bo, j + 1) and _same(a, ao, i + 1, b, bo, j):
            for k in range(2):  # a swapped pair: two positions differ
                kind[r], ai[r], bj[r] = 3, i + k, j + k
                r += 1
            i += 2
            j += 2
            continue
        jb = 0
        for k in range(1, look + 1):
            if j + k >= nb:
                break
            if _same(a, ao, i, b, bo, j + k):
                jb = k
                break
        ia = 0
        for k in range(1, look + 1):
            if i + k >= na:
                break
            if _same(a, ao, i + k, b, bo, j):
                ia = k
                break
        if jb and (not ia or jb <= ia):
            for k in range(jb):
                kind[r], ai[r], bj[r] = 2, -1, j + k
                r += 1
            j += jb
        elif ia:
            for k in range(ia):
                kind[r], ai[r], bj[r] = 1, i + k, -1
                r += 1
            i += ia
        else:
            kind[r], ai[r], bj[r] = 3, i, j
            r += 1
            i += 1
            j += 1
    while i < na:
        kind[r], ai[r], bj[r] = 1, i, -1
        r += 1
        i += 1
    while j < nb:
        kind[r], ai[r], bj[r] = 2, -1, j
        r += 1
        j += 1
    return r


def _types(side, idx: np.ndarray) -> dict:
    """ITCH type letter (DBN: MBO action) → how many of these messages."""
    if not idx.size:
        return {}
    t = side.stream[side.offsets[idx] + 2 + (DBN_ACTION if side.kind == "dbn" else 0)]
    letters, counts = np.unique(t, return_counts=True)
    return {chr(int(x)): int(c) for x, c in zip(letters, counts, strict=True)}


def align(a, b) -> dict:
    """Index arrays: both (ia, ib, equal), missing (in a only), extra (in b only), and whether by sequence."""
    if a.sequenced and b.sequenced:
        _, ia, ib = np.intersect1d(a.seq, b.seq, assume_unique=True, return_indices=True)
        eq = np.zeros(ia.size, dtype=np.bool_)
        _pairs_equal(a.stream, a.offsets, ia, b.stream, b.offsets, ib, eq)
        missing = np.flatnonzero(~np.isin(a.seq, b.seq, assume_unique=True))
        extra = np.flatnonzero(~np.isin(b.seq, a.seq, assume_unique=True))
        return {"by": "sequence", "ia": ia, "ib": ib, "equal": eq, "missing": missing, "extra": extra}
    n = a.count + b.count + 1
    kind, ai, bj = np.zeros(n, dtype=np.int8), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    r = _walk(a.stream, a.offsets, a.count, b.stream, b.offsets, b.count, LOOKAHEAD, kind, ai, bj)
    kind, ai, bj = kind[:r], ai[:r], bj[:r]
    both = (kind == 0) | (kind == 3)
    return {"by": "position", "ia": ai[both], "ib": bj[both], "equal": kind[both] == 0, "missing": ai[kind == 1],
            "extra": bj[kind == 2]}


def _decoded(side, k: int) -> dict | None:
    from xdpfeed.multicast.itch.reference import decode

    if k < 0:
        return None
    if side.kind == "dbn":
        from xdpfeed.multicast.sinks.mbo import MBO

        r = np.frombuffer(side.message(k), dtype=MBO)[0]
        return {f: (chr(int(r[f])) if f in ("action", "side") else int(r[f])) for f in MBO.names
                if f not in ("ts_recv", "ts_in_delta")}
    d = decode(side.message(k))
    return d if d is not None else {"raw": side.message(k).hex()}


def compare(a, b, book: bool = True, overlap: bool = False) -> dict:
    """The comparison report of sides a and b; with `overlap`, of both cut to the sequence numbers both cover
    (streams.overlap), with what was outside under "overlap"."""
    from xdpfeed.multicast.compare import streams

    if overlap:
        a, b, outside = streams.overlap(a, b)
        out = compare(a, b, book)
        out["overlap"] = outside
        return out
    if a.kind != b.kind:
        raise streams.CompareError(f"{a.name} holds {a.kind.upper()} and {b.name} {b.kind.upper()}: compare like with "
                                   "like")
    al = align(a, b)
    ia, ib, eq = al["ia"], al["ib"], al["equal"]
    diff_a, diff_b = ia[~eq], ib[~eq]
    sa, sb = a.seqs(), b.seqs()
    # the first divergence, by the A side's sequence (or position) of each kind of mismatch
    cands = []
    if diff_a.size:
        cands.append((int(sa[diff_a[0]]), int(diff_a[0]), int(diff_b[0])))
    if al["missing"].size:
        cands.append((int(sa[al["missing"][0]]), int(al["missing"][0]), -1))
    if al["extra"].size:
        cands.append((int(sb[al["extra"][0]]), -1, int(al["extra"][0])))
    first = None
    if cands:
        seq, i, j = min(cands)
        da, db = _decoded(a, i), _decoded(b, j)
        fields = sorted(k for k in set(da or {}) | set(db or {}) if (da or {}).get(k) != (db or {}).get(k)) \
            if da and db else []
        first = {"seq": seq, "a": da, "b": db, "fields": fields}
    out = {
        "identical": not (diff_a.size or al["missing"].size or al["extra"].size),
        "aligned_by": al["by"],
        "a": {"name": a.name, "messages": a.count, "sequenced": a.sequenced},
        "b": {"name": b.name, "messages": b.count, "sequenced": b.sequenced},
        "compared": int(ia.size), "missing": int(al["missing"].size), "extra": int(al["extra"].size),
        "different": int(diff_a.size),
        "by_type": {"missing": _types(a, al["missing"]), "extra": _types(b, al["extra"]),
                    "different": _types(a, diff_a)},
        "first_divergence": first,
    }
    if book and a.kind == "itch":
        out["book"] = books(a, b)
        out["identical"] = out["identical"] and out["book"]["identical"]
    out["latency"] = latency(a, b, ia[eq], ib[eq])
    return out


def books(a, b, examples: int = 10) -> dict:
    """The order books each side builds, compared symbol by symbol (every level of both sides)."""
    from xdpfeed.multicast.book.order_book import ASK, BID, OrderBook

    ba, bb = OrderBook(), OrderBook()
    ba.apply_stream(a.stream)
    bb.apply_stream(b.stream)
    locates = sorted(set(ba.locates()) | set(bb.locates()))
    differ = [loc for loc in locates
              if any(ba.depth(loc, s) != bb.depth(loc, s) for s in (BID, ASK))]
    names = [ba.symbol(loc) or bb.symbol(loc) or str(loc) for loc in differ]
    return {"identical": not differ and ba.checksum() == bb.checksum(), "symbols": len(locates),
            "symbols_different": len(differ), "examples": names[:examples]}


def latency(a, b, ia: np.ndarray, ib: np.ndarray) -> dict | None:
    """For messages both sides have (equal), where both carry a receive time: B's time − A's, in ns."""
    if a.ts is None or b.ts is None or not ia.size:
        return None
    ta, tb = a.ts[ia], b.ts[ib]
    ok = (ta > 0) & (tb > 0)
    if not ok.any():
        return None
    d = (tb[ok] - ta[ok]).astype(np.int64)
    pct = np.percentile(d, LATENCY_PERCENTILES).round().astype(np.int64).tolist()
    return {"messages": int(d.size), "a_first": int((d > 0).sum()), "b_first": int((d < 0).sum()),
            "same_time": int((d == 0).sum()),
            "b_minus_a_ns": {f"p{p}": v for p, v in zip(LATENCY_PERCENTILES, pct, strict=True)}}
