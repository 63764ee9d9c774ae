"""Full-depth ITCH 5.0 order books for every stock, with top-of-book events: the Python face.

`OrderBook` owns the preallocated storage (multicast.book.store), feeds messages to the compiled
loop (multicast.book.apply), grows storage when the loop asks for it (counted in stats), hands
top-of-book event batches to a callback, and answers queries: best bid/offer, depth, symbols,
trading state, staleness (multicast.book.view: those numpy reads alone), and each level's queue.
"""

import numpy as np

from xdpfeed.capture import huge_arrays as H
from xdpfeed.multicast.book import apply as A
from xdpfeed.multicast.book import storage
from xdpfeed.multicast.book import store as S
from xdpfeed.multicast.book.view import ASK, BID, STATE_NAMES, BookView, book_checksum  # noqa: F401  (OrderBook's names)

QUEUED = np.dtype([("ref", np.uint64), ("shares", np.uint32)])  # an order in its level's queue


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    """a's values, then zeros up to size."""
    new = H.zeros(size, a.dtype)
    new[: a.size] = a
    return new


def grow(book, status) -> None:
    """What a book's compiled loop stopped for (status): its hash, its ladder or its level slab grown (counted in
    its stats), or its event batch handed out. book: an OrderBook or an ExportedBook (multicast.book.exported)."""
    if status == S.NEED_HASH:
        new = H.zeros(book.hash.size * 2, storage.HASHED)
        S.rehash(book.hash, new)
        book.hash = new
        book.stats[A.HASH_GROWS] += 1
    elif status == S.NEED_POOL:
        need = S.pool_needed(book.sides)
        new = H.zeros(max(book.ladder.size * 2, 2 * need, 1024), np.uint64)
        book.state[S.ST_POOL] = S.compact_pool(book.ladder, new, book.sides)
        book.ladder = new
        book.stats[A.POOL_GROWS] += 1
    elif status == S.NEED_LEVELS:
        size = max(book.levels.size * 2, 1024)
        book.levels = _grown(book.levels, size)
        book.lfree = _grown(book.lfree, size)
        book.stats[A.POOL_GROWS] += 1
    elif status == A.NEED_EVENTS:
        book.flush_events()


class OrderBook(BookView):
    """Books for every stock locate of one ITCH feed.

    window: direct-indexed order slots (rounded up to a power of two); orders whose reference falls
    behind the window move to the hash, which starts at `hash_orders` slots and doubles as needed.
    The defaults hold a real NASDAQ day (about 2M live orders at peak) without growing. All of the storage is
    on transparent huge pages where the kernel gives them (capture.huge_arrays): a 10M-message day runs 3-5 %
    faster here than on numpy's own allocations, and a fresh book prefaults in 14-20 ms instead of 25-28 ms.
    shards, shard: this book applies only the messages of the stocks whose locate % shards is shard and steps over
    the others (multicast.book.sharded runs one such book per core over the same input).
    arrays: the storage, made beforehand at these sizes (multicast.book.storage.allocate) and not used since; by
    default the book makes its own."""

    def __init__(self, window: int = storage.WINDOW, hash_orders: int = storage.HASH_ORDERS,
                 levels: int = storage.LEVELS, events: int = storage.EVENTS, on_events=None, shards: int = 1,
                 shard: int = 0, arrays: storage.Arrays | None = None):
        if shards < 1 or shards & (shards - 1) or not 0 <= shard < shards:
            raise ValueError(f"shard {shard} of {shards}: shards must be a power of two and shard one of them")
        sizes = storage.Sizes(window, hash_orders, levels, events)
        if arrays is None:
            arrays = storage.allocate(sizes)
        elif storage.sizes_of(arrays) != sizes.rounded():
            raise ValueError(f"storage made at {storage.sizes_of(arrays)} for a book of {sizes}")
        self._sizes = sizes
        self.shards, self.shard = shards, shard  # this book keeps the stocks whose locate % shards is shard
        super().__init__(arrays, on_events)
        self._seqbox = np.zeros(1, dtype=np.uint64)
        self._ring = np.zeros((A.RING, 4), dtype=np.int64)  # a shard's next messages (multicast.book.apply)

    def clear(self) -> None:
        """Forget every order and stock (a new session is a new day), keeping the sizes asked for."""
        self.__init__(*self._sizes, on_events=self.on_events, shards=self.shards, shard=self.shard)

    # -- feeding ------------------------------------------------------------------------------
    def apply_stream(self, buf: np.ndarray, pos: int = 0, end: int | None = None, first_seq: int = 0,
                     end_of_session: bool = False) -> int:
        """Apply the length-prefixed messages of buf[pos:end]; returns where a cut record starts (or end).
        first_seq: the sequence number of the first message (a delivered stream), stamped on the top-of-book
        events each message causes; 0 for an unnumbered stream (a file). end_of_session: stop at a zero-length
        record (a NASDAQ binary file's End of Session) and return where it is."""
        end = buf.size if end is None else end
        self._seqbox[0] = first_seq
        while True:
            if self.shards == 1:
                pos, status, self.n_events = A.apply_stream(buf, pos, end, self._seqbox, end_of_session,
                                                            *self._args(), self.n_events, self.stats)
            else:
                pos, status, self.n_events = A.apply_stream_shard(buf, pos, end, self._seqbox, end_of_session,
                                                                  self.shards - 1, self.shard, self._ring,
                                                                  *self._args(), self.n_events, self.stats)
            if status == S.OK:
                return pos
            grow(self, status)

    def apply_index(self, buf: np.ndarray, index, start: int = 0, stop: int | None = None) -> None:
        """Apply every message block of PacketIndex rows [start, stop), in order."""
        cur = np.array([start, 0, 0, 0], dtype=np.int64)
        stop = index.rows if stop is None else stop
        while True:
            if self.shards == 1:
                status, self.n_events = A.apply_index(buf, index.offset, index.blocks, index.seq, cur, stop,
                                                      *self._args(), self.n_events, self.stats)
            else:
                status, self.n_events = A.apply_index_shard(buf, index.offset, index.blocks, index.seq, cur, stop,
                                                            self.shards - 1, self.shard, self._ring, *self._args(),
                                                            self.n_events, self.stats)
            if status == S.OK:
                return
            grow(self, status)

    # -- queries ------------------------------------------------------------------------------
    def queue(self, locate: int, side: int, price: int) -> np.ndarray:
        """The live orders at one price level in time priority, first in line first: QUEUED records (ref,
        shares); none when the level does not exist. A level's queue is its orders' references in order
        (multicast.book.store.level_queue says why), read by a scan of every stored order: tens of
        milliseconds for a day's book, for checks and reports rather than for every message. Raises ValueError
        when that side's references did not rise with arrival (the book counts that as it goes)."""
        sidx = locate * 2 + side
        self._check_queue_order(sidx)
        start, n = int(self.sides[sidx, S.SD_START]), int(self.sides[sidx, S.SD_SIZE])
        j = S.level_search(self.ladder, start, n, side, price)
        if j < start or int(self.ladder[j] >> S.PRICE_SHIFT) != price:
            return np.zeros(0, dtype=QUEUED)
        return self._queue(int(self.ladder[j] & S.HANDLE_MASK))

    def _check_queue_order(self, sidx: int) -> None:
        back = int(self.sides[sidx, S.SD_REFS_BACK])
        if back:
            raise ValueError(f"{back} add(s) to stock locate {sidx >> 1}'s {('bid', 'ask')[sidx & 1]} side came "
                             f"with a reference below an earlier add's: its references do not follow arrival, so "
                             f"its levels' queues cannot be read from them")

    def _queue(self, lh: int) -> np.ndarray:
        """Level lh's live orders (QUEUED records) in reference order."""
        count = int(self.levels[lh]["orders"])
        refs, shares = np.zeros(count, dtype=np.uint64), np.zeros(count, dtype=np.uint32)
        got = S.level_queue(self.window, self.hash, self.state, lh, refs, shares)
        if got != count:
            raise RuntimeError(f"level {lh} counts {count} orders but the store holds {got}")
        order = np.argsort(refs, kind="stable")
        out = np.zeros(count, dtype=QUEUED)
        out["ref"], out["shares"] = refs[order], shares[order]
        return out

    def queue_position(self, ref: int) -> tuple[int, int] | None:
        """(orders ahead, shares ahead) of live order `ref` in its level's queue; None when it is not live."""
        store, slot = S.order_find(self.window, self.hash, self.state, ref)
        if store < 0:
            return None
        o = self.window[slot] if store == 0 else self.hash[slot]["order"]
        self._check_queue_order(int(o["locate"]) * 2 + int(o["side"]))
        q = self._queue(int(o["level"]))
        ahead = q["ref"] < np.uint64(ref)
        return int(ahead.sum()), int(q["shares"][ahead].sum(dtype=np.int64))
