"""A plain ITCH file's book started before numpy has loaded: `xdpfeed book FILE`, one book, the exported loops.

Importing numpy is most of what the command does before its first message once numba is out of the way
(multicast.book.exported: about 60 ms of the 100 ms), and the exported loop (multicast.book.exported_loops) needs
only addresses. `EarlyRun` maps the file and makes the book's storage itself (capture.huge_region: the mappings
capture.huge_arrays.zeros makes, from 2 MiB boundaries, advised for huge pages), gives the side rows their empty
value, and runs the loop on a thread of its own, which holds no GIL while the loop runs. The command imports
numpy and the report's modules meanwhile on the other core, then views the same memory as the book's arrays
(`views()`) for an ExportedBook, and joins the run (`join()`). A loop that stopped for room is finished by that
ExportedBook from where it stopped (the storage grows through OrderBook's code). Meanwhile, two threads fault the
file's pages and the storage's in ahead of the loop (capture.populate).

The storage's shapes are storage.ONE_BOOK's, written here in bytes because storage's record layouts need numpy;
tests/test_early_start.py checks each against storage's.
"""

import ctypes
import mmap
import os
import threading
import time

from xdpfeed.capture.huge_region import huge_region
from xdpfeed.capture.populate import populate_range
from xdpfeed.multicast.book.exported_loops import BOOK, Loops

# (shape, bytes per item) of every array of one book at the default sizes, the loop's and the stats
SHAPES = {
    "w": ((1 << 22,), 16), "h": ((1 << 21,), 24), "state": ((8,), 8), "ladder": ((1 << 20,), 8),
    "levels": ((1 << 20,), 16), "lfree": ((1 << 20,), 8), "sides": ((1 << 17, 6), 8), "last": ((1 << 16, 4), 8),
    "stocks": ((1 << 16,), 24), "ev": ((1 << 16,), 48), "stats": ((20,), 8),
}
SD_BEST, NO_LEVEL = 3, -1  # a side row's best-level column, empty (storage.SD_BEST, storage.NO_LEVEL)
OK, NEED_EVENTS = 0, 3  # the loop's statuses (storage.OK, storage.NEED_EVENTS)


def _nbytes(name: str) -> int:
    shape, item = SHAPES[name]
    n = item
    for d in shape:
        n *= d
    return n


class _Region:
    """Zeroed memory for one array, on huge pages (capture.huge_region), and its address."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.map, self.offset = huge_region(nbytes)
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(self.map)) + self.offset


class EarlyRun:
    """The loop over `path` (a plain ITCH file, not empty), started on a thread as soon as it is made."""

    def __init__(self, loops: Loops, path: str):
        self.path, self.loops = path, loops
        fd = os.open(path, os.O_RDONLY)
        try:  # private and writable only so that ctypes gives its address: nothing writes it
            self.file = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.size = len(self.file)
        self._file_address = ctypes.addressof(ctypes.c_char.from_buffer(self.file))
        self.regions = {name: _Region(_nbytes(name)) for name in SHAPES}
        rows, cols = SHAPES["sides"][0]
        sides = (ctypes.c_int64 * (rows * cols)).from_address(self.regions["sides"].address)
        sides[SD_BEST::cols] = [NO_LEVEL] * rows
        self.seqbox = (ctypes.c_uint64 * 1)()
        self.started = time.perf_counter()  # the --stats clock starts with the loop
        self.finished = None  # and the run ends here (perf_counter), maybe before the command joins it
        self._result, self._error = None, None
        threading.Thread(target=self._populate, name="early-populate", daemon=True).start()
        self._thread = threading.Thread(target=self._run, args=(loops,), name="book-loop", daemon=True)
        self._thread.start()

    def _run(self, loops: Loops) -> None:
        values = {name: (self.regions[name].address, SHAPES[name][0]) for name in (*BOOK, "stats")}
        values.update(b=(self._file_address, (self.size,)), end=self.size, eos=1,
                      seqbox=(ctypes.addressof(self.seqbox), (1,)), ev_n=0, pos=0)
        try:
            while True:
                pos, status, n_events = loops.call("apply_stream", values)
                if status != NEED_EVENTS:
                    self._result = pos, status, n_events
                    return
                values.update(pos=pos, ev_n=0)  # no one takes the events: the batch starts again (flush_events)
        except BaseException as e:  # noqa: BLE001  (raised again by join)
            self._error = e
        finally:
            self.finished = time.perf_counter()

    def _populate(self) -> None:
        """The file's pages and the storage's, faulted in beside the loop, on two threads (each safe while the loop
        runs): memory this VM has not backed yet costs the storage up to 0.3 s, which the loop would otherwise
        wait for page by page. On the wide day, 9 alternating runs: 0.85 s whole with both at once, 0.99 s with
        the storage first and the file after it on one thread, 0.89 s with the storage alone."""
        threading.Thread(target=populate_range, args=(self._file_address, self.size, False), name="file-populate",
                         daemon=True).start()
        for r in self.regions.values():
            populate_range(r.address, r.nbytes)

    def join(self) -> tuple[int, int, int]:
        """Wait for the loop: (where it stopped, its status, pending events). OK: the file's records ended there;
        otherwise the book needs room before the message there."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def views(self):
        """(the file, storage.Arrays, (state, sides, stats)) as numpy arrays over the run's memory, for an
        ExportedBook: the loop may still be running, so nothing may be written to them before join()."""
        import numpy as np

        from xdpfeed.multicast.book import storage

        def view(name, dtype):
            r, (shape, item) = self.regions[name], SHAPES[name]
            a = np.frombuffer(r.map, np.dtype(dtype), count=r.nbytes // item, offset=r.offset).reshape(shape)
            if a.dtype.itemsize != item:
                raise RuntimeError(f"early_start.SHAPES[{name!r}] says {item} bytes an item; storage has "
                                   f"{a.dtype.itemsize}")
            return a

        arrays = storage.Arrays(view("w", storage.ORDER), view("h", storage.HASHED), view("ladder", np.uint64),
                                view("levels", storage.LEVEL), view("lfree", np.uint64), view("last", np.int64),
                                view("stocks", storage.STOCK), view("ev", storage.EVENT))
        state = (view("state", np.int64), view("sides", np.int64), view("stats", np.int64))
        return np.frombuffer(self.file, np.uint8), arrays, state
