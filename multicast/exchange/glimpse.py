"""The venue's GLIMPSE 5.0 snapshots: its state at a sequence number, as the ITCH messages a GLIMPSE
session sends (multicast.wire.glimpse, docs/snapshot.md).

`SnapshotBuilder` follows what the venue published: an order book (multicast.book) fed with the store's
messages up to the snapshot's sequence, only as far as asked (each snapshot applies just what was published
since the last), and, per stock locate, where the latest Stock Directory, Trading Action, Reg SHO,
Operational Halt and RPII messages are, the latest System Event, and each order's MPID (Add Order with
attribution; a Replace keeps it). `records(upto)` is the snapshot of messages 1..upto: System Event, the
directory, the per-stock states, one Add Order per live order (F with its MPID, else A) in order
reference order (the order they entered the book, so each level's queue keeps its priority), all
stamped with the time of message `upto`, then End of Snapshot (upto). Orders whose references are too
large to index (over ATTRIBUTION_REFS) lose their MPID and go out as A.
"""

import threading

import numpy as np

from xdpfeed.capture.byteorder import be16, be32, be64
from xdpfeed.capture.jit import njit
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.itch.schema import offset
from xdpfeed.multicast.wire.glimpse import encode_end_of_snapshot

STATE_TYPES = b"RHYhN"  # kept per stock locate, sent in this order after the System Event
ATTRIBUTION_REFS = 1 << 25  # order references indexed for their MPID (4 bytes each)

_F_REF, _F_MPID = offset("F", "order_reference_number"), offset("F", "attribution")
_U_OLD, _U_NEW = offset("U", "original_order_reference_number"), offset("U", "new_order_reference_number")

# Add Order records with their [uint16 length] prefix (an ITCH file's framing), big-endian as on the wire
_ADD = [("len", ">u2"), ("type", "u1"), ("locate", ">u2"), ("tracking", ">u2"), ("ts_hi", ">u2"), ("ts_lo", ">u4"),
        ("ref", ">u8"), ("side", "u1"), ("shares", ">u4"), ("stock", ">u8"), ("price", ">u4")]
ADD_A = np.dtype(_ADD)
ADD_F = np.dtype(_ADD + [("mpid", ">u4")])
assert ADD_A.itemsize == 38 and ADD_F.itemsize == 42


@njit(cache=True)
def _track(b, pos, end, kinds, last, system, mpid):
    """Note where the latest state messages are (last[kind, locate], system[0]) and the MPIDs of orders."""
    p = np.int64(pos)
    while p < end:
        n = np.int64(be16(b, p))
        t = b[p + 2]
        m = p + 2
        if t == 83:  # S
            system[0] = p
        elif t == 70:  # F
            ref = be64(b, m + _F_REF)
            if ref < mpid.size:
                mpid[ref] = be32(b, m + _F_MPID)
        elif t == 85:  # U: the new order keeps the original's attribution
            old, new = be64(b, m + _U_OLD), be64(b, m + _U_NEW)
            if new < mpid.size:
                mpid[new] = mpid[old] if old < mpid.size else 0
        else:
            k = kinds[t]
            if k >= 0:
                last[k, be16(b, m + 1)] = p
        p += 2 + n


def _records_at(records: np.ndarray, offsets: np.ndarray) -> bytes:
    """The [uint16 length][message] records starting at these byte offsets, joined."""
    out = []
    for p in offsets.tolist():
        n = int(records[p]) << 8 | int(records[p + 1])
        out.append(records[p : p + 2 + n].tobytes())
    return b"".join(out)


class SnapshotBuilder:
    """GLIMPSE snapshots of `store` (a DayStore) at any sequence already published. Thread-safe."""

    def __init__(self, store):
        self.store = store
        self.book = OrderBook(events=1 << 16)
        self.applied = 0  # messages 1..applied are in the book
        self.kinds = np.full(256, -1, dtype=np.int64)
        for k, t in enumerate(STATE_TYPES):
            self.kinds[t] = k
        self.last = np.full((len(STATE_TYPES), 65536), -1, dtype=np.int64)
        self.system = np.full(1, -1, dtype=np.int64)
        self.mpid = np.zeros(0, dtype=np.uint32)
        self._lock = threading.Lock()

    def _advance(self, upto: int) -> None:
        if upto < self.applied:
            raise ValueError(f"snapshot at {upto}: the builder is already at {self.applied}")
        if upto == self.applied:
            return
        recs, offs = self.store.records, self.store.offsets
        pos, end = int(offs[self.applied]), int(offs[upto])
        top = self._max_ref(pos, end)
        if top >= self.mpid.size and self.mpid.size < ATTRIBUTION_REFS:
            grown = np.zeros(min(ATTRIBUTION_REFS, max(1 << 16, 2 * (top + 1))), dtype=np.uint32)
            grown[: self.mpid.size] = self.mpid
            self.mpid = grown
        _track(recs, pos, end, self.kinds, self.last, self.system, self.mpid)
        self.book.apply_stream(recs, pos, end, first_seq=self.applied + 1)
        self.book.n_events = 0  # nobody listens to the venue's own top-of-book
        self.applied = upto

    def _max_ref(self, pos: int, end: int) -> int:
        return int(_max_add_ref(self.store.records, pos, end))

    def records(self, upto: int) -> tuple[bytes, int]:
        """The snapshot of messages 1..upto as [uint16 length][message] records, End of Snapshot last, and
        how many messages it holds (End of Snapshot included)."""
        with self._lock:
            self._advance(upto)
            recs = self.store.records
            where = [self.system[self.system >= 0]] + [row[row >= 0] for row in self.last]
            parts = [_records_at(recs, w) for w in where]
            adds, n_adds = self._adds(self._timestamp(upto))
            parts.append(adds)
        g = encode_end_of_snapshot(upto)
        parts.append(len(g).to_bytes(2, "big") + g)
        return b"".join(parts), sum(w.size for w in where) + n_adds + 1

    def _timestamp(self, upto: int) -> int:
        if upto < 1:
            return 0
        p = int(self.store.offsets[upto - 1]) + 2
        return int.from_bytes(self.store.records[p + 5 : p + 11].tobytes(), "big")

    def _adds(self, ts: int) -> bytes:
        live = self.book.live_orders_table()
        live = live[np.argsort(live["ref"], kind="stable")]
        refs = live["ref"].astype(np.int64)
        known = refs < self.mpid.size
        mpid = np.zeros(live.size, dtype=np.uint32)
        mpid[known] = self.mpid[refs[known]]
        stock = self.book.stocks["symbol"][live["locate"]]
        attributed = mpid != 0
        out = np.zeros(live.size, dtype=ADD_F)  # A rows use the first 38 bytes of theirs
        out["len"] = np.where(attributed, ADD_F.itemsize - 2, ADD_A.itemsize - 2)
        out["type"] = np.where(attributed, ord("F"), ord("A"))
        out["locate"], out["ts_hi"], out["ts_lo"] = live["locate"], ts >> 32, ts & 0xFFFFFFFF
        out["ref"], out["shares"], out["price"], out["stock"] = live["ref"], live["shares"], live["price"], stock
        out["side"] = np.where(live["side"] == 0, ord("B"), ord("S"))
        out["mpid"] = mpid
        raw = out.view(np.uint8).reshape(-1, ADD_F.itemsize)
        if attributed.all():
            return raw.tobytes(), live.size
        lengths = np.where(attributed, ADD_F.itemsize, ADD_A.itemsize)
        keep = np.arange(ADD_F.itemsize)[None, :] < lengths[:, None]
        return raw[keep].tobytes(), live.size


@njit(cache=True)
def _max_add_ref(b, pos, end):
    top = np.int64(0)
    p = np.int64(pos)
    while p < end:
        n = np.int64(be16(b, p))
        t = b[p + 2]
        if t == 70 or t == 65:
            r = np.int64(be64(b, p + 2 + _F_REF))
            if r > top:
                top = r
        elif t == 85:
            r = np.int64(be64(b, p + 2 + _U_NEW))
            if r > top:
                top = r
        p += 2 + n
    return top


@njit(cache=True)
def _soup(rec, out):
    """[uint16 length][message] records → SoupBinTCP Sequenced Data packets ([uint16 length + 1]['S'][message]);
    returns the bytes written (out holds len(rec) + one byte per record)."""
    p = np.int64(0)
    q = np.int64(0)
    while p + 2 <= rec.size:
        n = np.int64(be16(rec, p))
        out[q] = ((n + 1) >> 8) & 0xFF
        out[q + 1] = (n + 1) & 0xFF
        out[q + 2] = 83
        out[q + 3 : q + 3 + n] = rec[p + 2 : p + 2 + n]
        p += 2 + n
        q += 3 + n
    return q


def to_soup(records: bytes) -> np.ndarray:
    rec = np.frombuffer(records, dtype=np.uint8)
    out = np.empty(rec.size + rec.size // 2 + 1, dtype=np.uint8)
    return out[: _soup(rec, out)]
