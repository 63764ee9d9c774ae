"""Anonymous memory that starts on a 2 MiB boundary and is advised for transparent huge pages, made without numpy:
capture.huge_arrays.zeros views it as an array, and multicast.book.early_start hands its address to the book's
exported loop before numpy has loaded."""

import ctypes
import mmap

HUGE_PAGE = 2 << 20


def huge_region(nbytes: int) -> tuple[mmap.mmap, int]:
    """(mapping, offset): nbytes of zeros at mapping[offset:], offset putting them on a 2 MiB boundary. The mapping
    holds whole huge pages, plus one to slide the start onto the boundary (the kernel maps 4 KiB-aligned), and is
    advised MADV_HUGEPAGE where Python has the advice. It is freed with the mapping."""
    size = -(-nbytes // HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        region.madvise(mmap.MADV_HUGEPAGE)
    start = ctypes.addressof(ctypes.c_char.from_buffer(region))
    return region, -start % HUGE_PAGE
