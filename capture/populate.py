"""Faulting a range of the process's memory in ahead of use, in the kernel, without reading or writing a value
(madvise MADV_POPULATE_WRITE, or MADV_POPULATE_READ for a read-only file mapping; Linux 5.14 and later), on raw
addresses and without numpy: capture.huge_arrays.populate does it for an array, multicast.book.early_start for a
file mapped before numpy loads. ctypes releases the GIL through each call."""

import ctypes
import mmap

MADV_POPULATE_READ = 22  # linux/mman.h (5.14)
MADV_POPULATE_WRITE = 23
# asked for this much at a time: the kernel holds the process's memory map lock through each call, and a thread
# that maps memory meanwhile (numba loading its code, a thread's stack) waits for it; in one call for a whole book,
# loading the book's compiled loop took 200-240 ms instead of 30 ms
POPULATE_STEP = 4 << 20
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def populate_range(lo: int, nbytes: int, write: bool = True) -> bool:
    """Fault the pages of [lo, lo + nbytes) in, for writing or for reading (see capture.huge_arrays.populate).
    False where the kernel has no such advice or cannot populate the range: a hint, those pages then fault in on
    first use."""
    start = lo - lo % mmap.PAGESIZE
    advice = MADV_POPULATE_WRITE if write else MADV_POPULATE_READ
    end = lo + nbytes
    for at in range(start, end, POPULATE_STEP):
        if _libc.madvise(at, min(POPULATE_STEP, end - at), advice) != 0:
            return False
    return True
