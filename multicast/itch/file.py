"""NASDAQ binary ITCH 5.0 files (`[uint16 BE length][message]`…, optionally gzip-compressed) as input.

A plain file is mapped once and read in one pass by a consumer that stops at the session's end or a cut
record itself (`consume_mapped`: the order book; `decode_file`: the decoder), while a thread maps its pages in
ahead of it (`populate_ahead`). A `.gz` file (as NASDAQ
publishes them) is decompressed in pieces by `gzip_chunks()`, which hands out buffers of whole records only,
the record cut at the end of each piece carried into the next. A record cut short by the end of the file raises
CorruptInput with its byte offset after everything before it was handed out. A zero-length record is
the session's end (NASDAQ's BinaryFILE format): reading stops there, the END_OF_SESSION counter says
so, and bytes after it are counted (AFTER_END_OF_SESSION) and named in a warning, never read as
messages.
"""

import gzip
import logging
import mmap
import os
import threading

import numpy as np

from xdpfeed.capture import huge_arrays
from xdpfeed.capture.errors import CorruptInput, SourceError
from xdpfeed.multicast.itch.decoder import ItchTables, decode_file_records, file_records_end
from xdpfeed.multicast.itch.schema import LENGTHS
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import NO_SESSION

log = logging.getLogger("xdpfeed.itch")

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 16 << 20


def looks_like_itch(head: bytes) -> bool:
    """True when the first records are known ITCH types with their exact lengths (up to an End of Session, a
    zero-length record)."""
    pos = seen = 0
    while pos + 2 <= len(head) and seen < 4:
        n = int.from_bytes(head[pos : pos + 2], "big")
        if n == 0:
            return seen > 0
        if pos + 3 > len(head) or LENGTHS[head[pos + 2]] != n:
            return False
        seen += 1
        pos += 2 + n
    return seen > 0


def consume_mapped(path: str, consume, counters=None) -> None:
    """Map a plain file and hand it whole to consume(buf), which applies records until a record cut short or a
    zero-length one (the End of Session) and returns where it stopped; then account for how the records ended
    (counted, CorruptInput for a cut record)."""
    buf = mapped(path)
    populate_ahead(buf)
    pos = consume(buf)
    _mapped_end(path, buf.size, pos, pos + 2 <= buf.size and buf[pos] == 0 and buf[pos + 1] == 0, counters)


def _mapped_end(path: str, size: int, pos: int, eos: bool, counters) -> None:
    """Where a mapped file's whole records ended, at pos: its End of Session (counted), the file's end, or a
    record cut short (counted, CorruptInput)."""
    if eos:
        _end_of_session(path, pos, size - pos - 2, counters)
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


def gzip_chunks(path: str, counters=None):
    """Yield uint8 arrays of a .gz file's whole records, in file order; see the module docstring."""
    try:
        f = gzip.open(path, "rb")
        f.peek(1)
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror or e}") from None
    carry = b""
    consumed = 0  # uncompressed bytes handed out before `carry`
    with f:
        while True:
            try:
                piece = f.read(CHUNK)
            except (OSError, EOFError) as e:
                raise CorruptInput(
                    f"{path}: gzip stream damaged after {consumed + len(carry)} uncompressed bytes ({e})",
                    consumed + len(carry),
                ) from None
            data = carry + piece
            buf = np.frombuffer(data, dtype=np.uint8)
            good, eos = file_records_end(buf, 0, buf.size)
            if good:
                yield buf[:good]
            if eos:
                rest = len(data) - good - 2
                while piece := f.read(CHUNK):  # what follows the session is counted, not read
                    rest += len(piece)
                _end_of_session(path, consumed + good, rest, counters)
                return
            consumed += good
            carry = data[good:]
            if not piece:
                break
    if carry:
        if counters is not None:
            counters[C.TRUNCATED_RECORDS] += 1
        raise CorruptInput(
            f"{path}: truncated ITCH record at uncompressed byte offset {consumed} ({len(carry)} bytes left over)",
            consumed,
        )


def _end_of_session(path: str, at: int, rest: int, counters) -> None:
    if counters is not None:
        counters[C.END_OF_SESSION] += 1
        counters[C.AFTER_END_OF_SESSION] += rest
    if rest:
        log.warning("%s: end of session (a zero-length record) at byte %d: the %d bytes after it are not read",
                    path, at, rest)


def decode_file(path: str, out: ItchTables, cnt, gz: bool):
    """Yield `(buffer, out)` once per filled batch of `out`; clears `out` before each refill. A plain file is
    decoded in one pass: the decoder itself stops at a cut record or an End of Session."""
    if gz:
        for buf in gzip_chunks(path, cnt):
            yield from _decode_buffer(buf, out, cnt)
        return
    buf = mapped(path)
    populate_ahead(buf)
    pos, cut = yield from _decode_buffer(buf, out, cnt)
    _mapped_end(path, buf.size, pos, cut == 2, cnt)


def _decode_buffer(buf, out: ItchTables, cnt):
    """Decode buf's records batch by batch (yielding each); returns (where it stopped, the decoder's cut)."""
    pos, cut = 0, 0
    while pos < buf.size:
        out.clear()
        pos, n, cut = decode_file_records(buf, pos, buf.size, np.uint16(NO_SESSION), out.tables, out.rows,
                                          out.order_type, out.order_row, 0, cnt)
        out.count = n
        if n:
            yield buf, out
        if cut:
            break
    return pos, cut
