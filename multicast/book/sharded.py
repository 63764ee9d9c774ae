"""Full-depth books for every stock built on several cores: the stocks are split by locate among OrderBooks (or
ExportedBooks, multicast.book.exported) that each read the whole input, apply their own stocks' messages and step
over the others (multicast.book.apply's *_shard loops, run without the GIL), and the books answer queries as one.

A stock's messages all name its locate, so each shard sees every message of its stocks in order and ends the input
with the books one OrderBook would have built (tests/test_sharded_book.py compares them): the same depth, counters
and checksum. Top-of-book events are counted but not handed out: the shards make them at the same time, and their
order across stocks would be lost. This is for replaying files (`xdpfeed book --threads N`); a live feed applies
its messages on one core, in their order, with its events.

On the wide synthetic day here (2 cores), a shard of two takes 0.42-0.45 s alone where one book takes 0.63-0.65 s,
and 0.34 s on a stream of its own messages only: each shard still walks every record of the input, one length
after the next, so the gain grows less than the shards. bench/bench_book.py measures it.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from xdpfeed.multicast.book import storage
from xdpfeed.multicast.book.view import book_checksum


class ShardedBook:
    """`shards` books (a power of two, at least 2): stock locate L is kept by books[L % shards]. Applying runs
    shard 0 on the calling thread and the others on a pool of their own; queries go to the book that keeps the
    stock. The sizes are each shard's (see OrderBook); the hash and the level slab default to OrderBook's divided
    among the shards (storage.shard_sizes). arrays: each shard's storage, made beforehand at its sizes.
    loops: apply through the book's exported loops (multicast.book.exported.load()): ExportedBooks, whose
    apply_stream releases the GIL as OrderBook's does; by default OrderBooks."""

    def __init__(self, shards: int = 2, window: int = storage.WINDOW, hash_orders: int | None = None,
                 levels: int | None = None, events: int = storage.EVENTS, arrays: list[storage.Arrays] | None = None,
                 loops=None):
        if shards < 2 or shards & (shards - 1):
            raise ValueError(f"{shards} shards: a sharded book has a power of two of them, at least 2")
        if arrays is not None and len(arrays) != shards:
            raise ValueError(f"storage for {len(arrays)} shards given to a book of {shards}")
        self.shards = shards
        share = storage.shard_sizes(shards)
        hash_orders = share.hash_orders if hash_orders is None else hash_orders
        levels = share.levels if levels is None else levels
        sizes = storage.Sizes(window, hash_orders, levels, events)
        arrays = arrays or [storage.allocate(sizes) for _ in range(shards)]
        if loops is not None:
            from xdpfeed.multicast.book.exported import ExportedBook

            self.books = [ExportedBook(loops, arrays[k], shards=shards, shard=k) for k in range(shards)]
        else:
            from xdpfeed.multicast.book.order_book import OrderBook

            self.books = [OrderBook(*sizes, shards=shards, shard=k, arrays=arrays[k]) for k in range(shards)]
        self._pool = ThreadPoolExecutor(shards - 1, thread_name_prefix="book-shard")

    def close(self) -> None:
        self._pool.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- feeding ------------------------------------------------------------------------------
    def _each(self, fn):
        """fn(book) for every shard at once; their results, in shard order (a shard's exception is raised)."""
        others = [self._pool.submit(fn, b) for b in self.books[1:]]
        try:
            first = fn(self.books[0])
        finally:
            rest = [f.result() for f in others]
        return [first, *rest]

    @property
    def storage_bytes(self) -> int:
        return sum(b.storage_bytes for b in self.books)

    def prefault(self, background: bool = False) -> list[threading.Thread] | None:
        threads = [b.prefault(background) for b in self.books]
        return threads if background else None

    def apply_stream(self, buf: np.ndarray, pos: int = 0, end: int | None = None, first_seq: int = 0,
                     end_of_session: bool = False) -> int:
        """OrderBook.apply_stream, every shard over the same messages."""
        ends = set(self._each(lambda b: b.apply_stream(buf, pos, end, first_seq, end_of_session)))
        if len(ends) != 1:
            raise RuntimeError(f"the shards stopped at different positions: {sorted(ends)}")
        return ends.pop()

    def apply_index(self, buf: np.ndarray, index, start: int = 0, stop: int | None = None) -> None:
        """OrderBook.apply_index, every shard over the same rows."""
        self._each(lambda b: b.apply_index(buf, index, start, stop))

    def flush_events(self) -> None:
        for b in self.books:
            b.flush_events()

    # -- queries ------------------------------------------------------------------------------
    def _book(self, locate: int):
        return self.books[int(locate) & (self.shards - 1)]

    def _gather(self, method: str, locates, *args) -> list:
        """books[...].method(their locates, *args), each result back at its locate's place."""
        locates = np.asarray(locates, dtype=np.int64)
        out = [None] * locates.size
        for k, b in enumerate(self.books):
            at = np.flatnonzero((locates & (self.shards - 1)) == k)
            if at.size:
                for i, r in zip(at.tolist(), getattr(b, method)(locates[at], *args), strict=True):
                    out[i] = r
        return out

    @property
    def live_orders(self) -> int:
        return sum(b.live_orders for b in self.books)

    def live_orders_table(self) -> np.ndarray:
        return np.concatenate([b.live_orders_table() for b in self.books])

    def stat(self) -> dict:
        """OrderBook.stat() summed over the shards: the counts of the whole input. The store's own (hash_orders,
        hash_grows, pool_grows) are the shards' stores' sums: the same orders sit in a shard's window or hash as a
        shard's references ran, and each store grows when it fills."""
        total = {}
        for b in self.books:
            for k, v in b.stat().items():
                total[k] = total.get(k, 0) + v
        return total

    def depth(self, locate: int, side: int, n: int | None = None) -> list[list[int]]:
        return self._book(locate).depth(locate, side, n)

    def depths(self, locates, n: int | None = None) -> list:
        return self._gather("depths", locates, n)

    def side_levels(self, sidx: int) -> np.ndarray:
        return self._book(sidx >> 1).side_levels(sidx)

    def queue(self, locate: int, side: int, price: int) -> np.ndarray:
        return self._book(locate).queue(locate, side, price)

    def queue_position(self, ref: int) -> tuple[int, int] | None:
        for b in self.books:
            p = b.queue_position(ref)
            if p is not None:
                return p
        return None

    def checksum(self) -> str:
        """OrderBook.checksum's digest: equal to one book's over the same input."""
        return book_checksum(self)

    def bbo(self, locate: int) -> tuple[int, int, int, int]:
        return self._book(locate).bbo(locate)

    def symbol(self, locate: int) -> str:
        return self._book(locate).symbol(locate)

    def symbols(self, locates) -> list[str]:
        return self._gather("symbols", locates)

    def trading_state(self, locate: int) -> str:
        return self._book(locate).trading_state(locate)

    def trading_states(self, locates) -> list[str]:
        return self._gather("trading_states", locates)

    def locate_of(self, symbol: str) -> int | None:
        for b in self.books:
            loc = b.locate_of(symbol)
            if loc is not None:
                return loc
        return None

    def locates(self) -> list[int]:
        return sorted(loc for b in self.books for loc in b.locates())

    @property
    def system_event(self) -> str:
        return self.books[0].system_event  # the system's messages name locate 0

    def mark_stale(self, locate: int | None = None, stale: bool = True) -> None:
        for b in self.books if locate is None else [self._book(locate)]:
            b.mark_stale(locate, stale)

    def is_stale(self, locate: int) -> bool:
        return self._book(locate).is_stale(locate)

    def stale_flags(self, locates) -> list[bool]:
        return self._gather("stale_flags", locates)
