"""Zeroed numpy arrays on transparent huge pages, for storage that compiled loops read at random: the order
book's order window, order hash and price levels (multicast.book).

With 4 KiB pages, a random access into a hundred megabytes of orders misses the TLB almost every time, and the
page walk (two-dimensional in a virtual machine) adds to the cache miss; a 2 MiB page covers 512 of them and is
one page fault instead of 512. Linux backs anonymous memory with huge pages when
/sys/kernel/mm/transparent_hugepage/enabled is `always`, or `madvise` and the memory was advised MADV_HUGEPAGE.
numpy's own allocator advises arrays of 4 MiB or more, but from the first 4 KiB boundary on: the partial 2 MiB
at each end of an array stays on small pages, and smaller arrays are not advised. `zeros` makes a mapping that
starts on a 2 MiB boundary (private, anonymous, advised) and views it as the array asked for, so every page of
it can be huge. Where the kernel has no huge page to give (`never`, or memory too fragmented) the same array is
on ordinary pages: the values and the code that reads them are the same either way. `huge_bytes` says how much
of an array huge pages back (from /proc/self/smaps).

`populate` makes an array's pages the process's ahead of use (page faults taken now, not in a burst) without
reading or writing a value: madvise(MADV_POPULATE_WRITE), Linux 5.14 and later (MADV_POPULATE_READ for a
read-only file mapping: multicast.itch.file maps an input's pages ahead of the loop reading it). It is safe while
other threads use the array, and it releases the GIL, so a long-lived book can be populated in the background
while the process starts. But the kernel holds the process's memory map lock through it, and a thread that maps
memory meanwhile waits: importing numba (which maps its libraries) took 0.55 s instead of 0.2 s beside it. A page
fault takes only its own mapping's lock (Linux 6.4 and later), so `Prefaulting` instead writes a byte of each page
onto itself from a thread while a process starts, and hands what is left to `populate` before the arrays are used.
"""

import mmap
import threading

import numpy as np

from xdpfeed.capture.huge_region import HUGE_PAGE, huge_region
from xdpfeed.capture.populate import POPULATE_STEP, populate_range

THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def zeros(shape, dtype) -> np.ndarray:
    """np.zeros(shape, dtype), on memory advised for huge pages when it spans at least one (smaller arrays, or a
    Python without mmap.MADV_HUGEPAGE: np.zeros itself). The array owns its mapping: freed with it."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.zeros(shape, dtype)
    region, offset = huge_region(nbytes)
    return np.frombuffer(region, dtype, count=nbytes // dtype.itemsize, offset=offset).reshape(shape)


def populate(arr: np.ndarray, write: bool = True) -> bool:
    """Fault every page under arr in for writing (or, not write, for reading: a read-only file mapping's pages
    mapped from the page cache, read from the file where they are not in it), in the kernel, changing no value
    (MADV_POPULATE_WRITE or _READ; the GIL is released meanwhile). False where the kernel has no such advice
    (before 5.14: EINVAL) or cannot populate the range (memory short, a page poisoned, an I/O error); those pages
    then fault in on first use, as they would have."""
    return populate_range(arr.__array_interface__["data"][0], arr.nbytes, write)


def write_pages(arr: np.ndarray) -> None:
    """Fault every page under arr in by writing the first byte of each page onto itself, and arr's last byte for
    the page it ends in (arr need not start on a page): no value changes, but a byte written back would undo
    another thread's write between the read and the write, so nothing else may write arr meanwhile."""
    flat = arr.reshape(-1).view(np.uint8)
    if flat.size:
        flat[:: mmap.PAGESIZE] |= 0
        flat[-1] |= 0


class Prefaulting:
    """Every page of `arrays` faulted in from a thread (write_pages), while nothing else uses them (the process
    loading its code). Call `handover()` before anything reads or writes the arrays."""

    def __init__(self, arrays):
        self._left = [a.reshape(-1).view(np.uint8) for a in arrays if a.nbytes]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._touch, name="prefault", daemon=True)
        self._thread.start()

    def _touch(self) -> None:
        # a step at a time, each over enough pages that numpy lets the GIL go for it, until handover() asks to stop
        while self._left and not self._stop.is_set():
            flat = self._left[0]
            write_pages(flat[:POPULATE_STEP])
            if flat.size > POPULATE_STEP:
                self._left[0] = flat[POPULATE_STEP:]
            else:
                self._left.pop(0)

    def handover(self) -> threading.Thread | None:
        """Stop writing (the current step ends first: a few ms) and populate the pages not reached yet from another
        thread (returned; None when every page was reached) with `populate`, which is safe while the arrays are in
        use. Call it once."""
        self._stop.set()
        self._thread.join()
        if not self._left:
            return None
        left = self._left
        t = threading.Thread(target=lambda: all(populate(a) for a in left), name="populate", daemon=True)
        t.start()
        return t


def huge_bytes(arr: np.ndarray) -> int:
    """Bytes of the mappings under arr that huge pages back now (AnonHugePages in /proc/self/smaps, summed over
    every mapping arr overlaps): 0 for memory not touched yet or on ordinary pages. Counts whole mappings, so a
    small array inside a larger mapping may be credited with its neighbours' pages."""
    lo = arr.__array_interface__["data"][0]
    hi = lo + arr.nbytes
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(maxsplit=1)[0]
            if not head.endswith(":"):  # a mapping's first line: start-end perms ...
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start < hi and lo < end
            elif inside and head == "AnonHugePages:":
                total += int(line.split()[1]) * 1024
    return total


def thp_mode() -> str:
    """The kernel's transparent huge page mode for anonymous memory: always, madvise or never ('' if unknown)."""
    try:
        with open(THP_ENABLED) as f:
            text = f.read()
    except OSError:
        return ""
    return text[text.find("[") + 1: text.find("]")] if "[" in text else ""
