"""The book's compiled loops, exported ahead of time into a shared object, and a book applied through them.

`xdpfeed book` on a file spent about 0.3 s before its first message, most of it loading numba and the book's
compiled code from numba's cache. multicast.book.export_build has numba compile the same loops
(multicast.book.apply's apply_stream and apply_stream_shard) once for each build of the code, behind C-callable
wrappers, and writes them as one shared object into the code's compiled folder (capture.source_digest: a change to
any source file names a new folder, so the object is never run for code other than its own). This module loads
that object with ctypes and imports no numba: a book applied through it starts in about 0.06 s.

`ExportedBook` is a BookView (multicast.book.view) whose messages go through the exported loops: the same code,
the same arrays, the same results as OrderBook's. What the loops cannot do alone, growing the storage past its
sizes, is OrderBook's own code (order_book.grow): it loads numba then, once, for a book that outgrows the defaults.
"""

import ctypes
import hashlib
import os
import platform

import numpy as np

from xdpfeed.capture import source_digest
from xdpfeed.multicast.book import storage
from xdpfeed.multicast.book.view import BookView

# Every array argument of the exported loops: its dtype and dimensions. A C caller passes its data pointer and
# then each dimension (int64).
ARRAYS = {
    "b": (np.dtype(np.uint8), 1), "seqbox": (np.dtype(np.uint64), 1), "ring": (np.dtype(np.int64), 2),
    "w": (storage.ORDER, 1), "h": (storage.HASHED, 1), "state": (np.dtype(np.int64), 1),
    "ladder": (np.dtype(np.uint64), 1), "levels": (storage.LEVEL, 1), "lfree": (np.dtype(np.uint64), 1),
    "sides": (np.dtype(np.int64), 2), "last": (np.dtype(np.int64), 2), "stocks": (storage.STOCK, 1),
    "ev": (storage.EVENT, 1), "stats": (np.dtype(np.int64), 1),
}
_BOOK = ("w", "h", "state", "ladder", "levels", "lfree", "sides", "last", "stocks", "ev", "ev_n", "stats")
# Each exported loop: its arguments in multicast.book.apply's order (names not in ARRAYS are int64 scalars; eos is
# 0 or 1). The C function, xdpfeed_book_<name>, takes them and then an int64[3] the loop's result is written to
# (position, status, event count); it returns 1, or 0 when the loop raised.
LOOPS = {
    "apply_stream": ("b", "pos", "end", "seqbox", "eos", *_BOOK),
    "apply_stream_shard": ("b", "pos", "end", "seqbox", "eos", "mask", "shard", "ring", *_BOOK),
}
RING = 32  # a shard's ring rows: multicast.book.apply.RING (checked when the loops are exported)


def cpu_key() -> str:
    """The processor the exported object is compiled for, as a file-name key: numba compiles for the host's
    processor and its features, so a cache folder shared by different machines keeps one object for each."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            lines = [x for x in f.read().split(b"\n\n")[0].splitlines() if x.startswith((b"model name", b"flags"))]
    except OSError:
        lines = []
    return hashlib.sha1(b"\n".join([platform.machine().encode(), *lines])).hexdigest()[:12]


def object_path() -> str:
    """Where this build of the code keeps its exported loops on this processor."""
    return os.path.join(source_digest.compiled_dir(), "exported", f"book-{cpu_key()}.so")


def c_arguments(name: str) -> list:
    """The ctypes argument types of xdpfeed_book_<name>."""
    out = []
    for arg in LOOPS[name]:
        out += [ctypes.c_void_p, *[ctypes.c_int64] * ARRAYS[arg][1]] if arg in ARRAYS else [ctypes.c_int64]
    return [*out, ctypes.c_void_p]


class Loops:
    """The exported loops of one shared object, called with a book's arrays."""

    def __init__(self, path: str):
        self.path = path
        lib = ctypes.CDLL(path)
        self._fn = {}
        for name in LOOPS:
            fn = getattr(lib, f"xdpfeed_book_{name}")
            fn.restype, fn.argtypes = ctypes.c_int32, c_arguments(name)
            self._fn[name] = fn

    def call(self, name: str, values: dict, out: np.ndarray) -> tuple[int, int, int]:
        """Run loop `name` on values (each argument by name) and return its (position, status, event count)."""
        args = []
        for arg in LOOPS[name]:
            v = values[arg]
            if arg in ARRAYS:
                args.append(v.ctypes.data)
                args += v.shape
            else:
                args.append(int(v))
        if self._fn[name](*args, out.ctypes.data) != 1:
            raise RuntimeError(f"the book's exported loop {name} ({self.path}) raised: run with --loop numba to see "
                               f"the error")
        return int(out[0]), int(out[1]), int(out[2])


_loops: dict[str, Loops] = {}


def load(path: str | None = None) -> Loops | None:
    """This build's exported loops (object_path()), loaded once; None when they have not been exported."""
    path = path or object_path()
    if path not in _loops:
        if not os.path.isfile(path):
            return None
        _loops[path] = Loops(path)
    return _loops[path]


class ExportedBook(BookView):
    """An order book whose messages go through the exported loops (`loops`, from load()): OrderBook's
    apply_stream, for a stream of length-prefixed messages (a NASDAQ binary file), with its storage, queries and
    events. shards, shard: as OrderBook's (multicast.book.sharded runs one per core). arrays: the storage, made
    beforehand (storage.allocate); by default at OrderBook's default sizes (storage.shard_sizes for a shard)."""

    def __init__(self, loops: Loops, arrays: storage.Arrays | None = None, on_events=None, shards: int = 1,
                 shard: int = 0):
        if arrays is None:
            arrays = storage.allocate(storage.ONE_BOOK if shards == 1 else storage.shard_sizes(shards))
        super().__init__(arrays, on_events)
        self.loops, self.shards, self.shard = loops, shards, shard
        self._seqbox = np.zeros(1, dtype=np.uint64)
        self._ring = np.zeros((RING, 4), dtype=np.int64)
        self._out = np.zeros(3, dtype=np.int64)

    def apply_stream(self, buf: np.ndarray, pos: int = 0, end: int | None = None, first_seq: int = 0,
                     end_of_session: bool = False) -> int:
        """OrderBook.apply_stream."""
        end = buf.size if end is None else end
        self._seqbox[0] = first_seq
        values = {"b": buf, "end": end, "seqbox": self._seqbox, "eos": end_of_session, "mask": self.shards - 1,
                  "shard": self.shard, "ring": self._ring}
        name = "apply_stream" if self.shards == 1 else "apply_stream_shard"
        while True:
            values.update(zip(_BOOK[:-2], self._args(), strict=True), pos=pos, ev_n=self.n_events, stats=self.stats)
            pos, status, self.n_events = self.loops.call(name, values, self._out)
            if status == storage.OK:
                return pos
            if status == storage.NEED_EVENTS:
                self.flush_events()
            else:  # the storage is full: OrderBook's code grows it (this loads numba, once)
                from xdpfeed.multicast.book.order_book import grow

                grow(self, status)
