"""The book's compiled loops, exported ahead of time into a shared object, and a book applied through them.

`xdpfeed book` on a file spent about 0.3 s before its first message, most of it loading numba and the book's
compiled code from numba's cache. multicast.book.export_build has numba compile the same loops
(multicast.book.apply's apply_stream and apply_stream_shard) once for each build of the code, behind C-callable
wrappers, and writes them as one shared object into the code's compiled folder (capture.source_digest: a change to
any source file names a new folder, so the object is never run for code other than its own).
multicast.book.exported_loops loads that object with ctypes, and this module imports no numba.

`ExportedBook` is a BookView (multicast.book.view) whose messages go through the exported loops: the same code,
the same arrays, the same results as OrderBook's. What the loops cannot do alone, growing the storage past its
sizes, is OrderBook's own code (order_book.grow): it loads numba then, once, for a book that outgrows the defaults.
"""

import numpy as np

from xdpfeed.multicast.book import storage
from xdpfeed.multicast.book.exported_loops import BOOK, RING, Loops
from xdpfeed.multicast.book.view import BookView


class ExportedBook(BookView):
    """An order book whose messages go through the exported loops (`loops`, from load()): OrderBook's
    apply_stream, for a stream of length-prefixed messages (a NASDAQ binary file), with its storage, queries and
    events. shards, shard: as OrderBook's (multicast.book.sharded runs one per core). arrays: the storage, made
    beforehand (storage.allocate); by default at OrderBook's default sizes (storage.shard_sizes for a shard)."""

    def __init__(self, loops: Loops, arrays: storage.Arrays | None = None, on_events=None, shards: int = 1,
                 shard: int = 0, state=None):
        if arrays is None:
            arrays = storage.allocate(storage.ONE_BOOK if shards == 1 else storage.shard_sizes(shards))
        super().__init__(arrays, on_events, state)
        self.loops, self.shards, self.shard = loops, shards, shard
        self._seqbox = np.zeros(1, dtype=np.uint64)
        self._ring = np.zeros((RING, 4), dtype=np.int64)

    def apply_stream(self, buf: np.ndarray, pos: int = 0, end: int | None = None, first_seq: int = 0,
                     end_of_session: bool = False) -> int:
        """OrderBook.apply_stream."""
        end = buf.size if end is None else end
        self._seqbox[0] = first_seq
        values = {"b": _raw(buf), "end": end, "seqbox": _raw(self._seqbox), "eos": end_of_session,
                  "mask": self.shards - 1, "shard": self.shard, "ring": _raw(self._ring)}
        name = "apply_stream" if self.shards == 1 else "apply_stream_shard"
        while True:
            values.update(zip(BOOK, map(_raw, self._args()), strict=True), pos=pos, ev_n=self.n_events,
                          stats=_raw(self.stats))
            pos, status, self.n_events = self.loops.call(name, values)
            if status == storage.OK:
                return pos
            if status == storage.NEED_EVENTS:
                self.flush_events()
            else:  # the storage is full: OrderBook's code grows it (this loads numba, once)
                from xdpfeed.multicast.book.order_book import grow

                grow(self, status)


def _raw(a: np.ndarray) -> tuple:
    """An array as a loop takes it: (address, shape). Every array the loops take is C-contiguous."""
    if not a.flags.c_contiguous:
        raise ValueError("the book's exported loops take C-contiguous arrays")
    return a.ctypes.data, a.shape
