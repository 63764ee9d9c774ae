"""A plain NASDAQ binary ITCH 5.0 file, mapped (`mapped`) and read in one pass by a consumer that stops at the
session's end or a cut record itself (`consume_mapped`), while a thread maps its pages in ahead of it
(`populate_ahead`); how the records ended is then accounted for: an End of Session (a zero-length record,
counted, with the bytes after it counted and named in a warning) or a record cut short (counted, CorruptInput
with its byte offset). Imports no numba: the book's exported loop reads files through it
(multicast.book.exported)."""

import logging
import mmap
import os
import threading

import numpy as np

from xdpfeed.capture import huge_arrays
from xdpfeed.capture.errors import CorruptInput, SourceError
from xdpfeed.multicast.wire import counters as C

log = logging.getLogger("xdpfeed.itch")


def consume_mapped(path: str, consume, counters=None) -> None:
    """Map a plain file and hand it whole to consume(buf), which applies records until a record cut short or a
    zero-length one (the End of Session) and returns where it stopped; then account for how the records ended
    (counted, CorruptInput for a cut record)."""
    buf = mapped(path)
    populate_ahead(buf)
    records_ended(path, buf, consume(buf), counters)


def records_ended(path: str, buf: np.ndarray, pos: int, counters=None) -> None:
    """How a mapped file's records ended where the consumer stopped (pos): mapped_end, the End of Session being a
    zero-length record there."""
    mapped_end(path, buf.size, pos, pos + 2 <= buf.size and buf[pos] == 0 and buf[pos + 1] == 0, counters)


def mapped_end(path: str, size: int, pos: int, eos: bool, counters) -> None:
    """Where a mapped file's whole records ended, at pos: its End of Session (counted), the file's end, or a
    record cut short (counted, CorruptInput)."""
    if eos:
        end_of_session(path, pos, size - pos - 2, counters)
    elif pos < size:
        if counters is not None:
            counters[C.TRUNCATED_RECORDS] += 1
        raise CorruptInput(f"{path}: truncated ITCH record at byte offset {pos} (file size {size})", pos)


def mapped(path: str, populate: bool = False) -> np.ndarray:
    """The whole file, mapped read-only, as a uint8 array; with populate, every page is mapped in now (the
    benchmarks read their input so, before their clocks start)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None
    try:
        mm = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0), prot=mmap.PROT_READ)
    except (OSError, ValueError) as e:
        raise SourceError(f"{path}: cannot map the file: {e}") from None
    finally:
        os.close(fd)
    return np.frombuffer(mm, dtype=np.uint8)


def populate_ahead(buf: np.ndarray) -> threading.Thread:
    """Map a mapped file's pages in from a thread (returned), from the start on (huge_arrays.populate goes a step
    at a time, in order), while a compiled loop reads it from the start: the loop then takes no page fault where the
    thread has been (a 300 MB file in the page cache: 7 ms of the thread's time instead of 40-70 ms of faults in
    the loop, fault-around mapping 16 pages at a time), and a file not in the page cache is read ahead of it. Where
    the kernel cannot populate (huge_arrays.populate), the thread stops and the pages fault in as they are read."""
    t = threading.Thread(target=huge_arrays.populate, args=(buf,), kwargs={"write": False}, name="file-populate",
                         daemon=True)
    t.start()
    return t


def end_of_session(path: str, at: int, rest: int, counters) -> None:
    if counters is not None:
        counters[C.END_OF_SESSION] += 1
        counters[C.AFTER_END_OF_SESSION] += rest
    if rest:
        log.warning("%s: end of session (a zero-length record) at byte %d: the %d bytes after it are not read",
                    path, at, rest)
