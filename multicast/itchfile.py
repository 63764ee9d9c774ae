"""NASDAQ binary ITCH 5.0 files (`[uint16 BE length][message]`…, optionally gzip-compressed) as input.

Plain files are mapped once and decoded in place; `.gz` files (as NASDAQ publishes them) are
decompressed in chunks, carrying the cut record at the end of each chunk into the next. A record cut
short by the end of the file is counted (truncated_records) and reported with its byte offset.
"""

import gzip
import mmap
import os

import numpy as np
from xdpfeed.capture.errors import CorruptInput, SourceError
from xdpfeed.multicast import counters as C
from xdpfeed.multicast.itch import ItchTables, decode_stream
from xdpfeed.multicast.itch_schema import LENGTHS
from xdpfeed.multicast.moldudp64 import NO_SESSION

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 16 << 20


def looks_like_itch(head: bytes) -> bool:
    """True when the first records are known ITCH types with their exact lengths."""
    pos = seen = 0
    while pos + 3 <= len(head) and seen < 4:
        n = int.from_bytes(head[pos : pos + 2], "big")
        if n == 0 or LENGTHS[head[pos + 2]] != n:
            return False
        seen += 1
        pos += 2 + n
    return seen > 0


def _fill(buf, pos, end, out: ItchTables, cnt):
    pos, n, cut = decode_stream(
        buf, pos, end, np.uint16(NO_SESSION), out.tables, out.rows, out.order_type, out.order_row, out.count, cnt,
    )
    out.count = n
    return pos, cut


def decode_file(path: str, out: ItchTables, cnt, gz: bool):
    """Yield `(buffer, out)` once per filled batch of `out`; clears `out` before each refill.

    Raises CorruptInput after the last full batch if the file ends inside a record."""
    if gz:
        yield from _decode_gzip(path, out, cnt)
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None
    try:
        mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    buf = np.frombuffer(mm, dtype=np.uint8)
    pos, end = 0, buf.size
    while True:
        out.clear()
        pos, cut = _fill(buf, pos, end, out, cnt)
        if out.count:
            yield buf, out
        if out.count < out.capacity:
            break
    if cut:
        cnt[C.TRUNCATED_RECORDS] += 1
        raise CorruptInput(f"{path}: truncated ITCH record at byte offset {pos} (file size {end})", pos)


def _decode_gzip(path: str, out: ItchTables, cnt):
    try:
        f = gzip.open(path, "rb")
        f.peek(1)
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror or e}") from None
    carry = b""
    consumed = 0  # uncompressed bytes before `carry`
    with f:
        while True:
            try:
                chunk = f.read(CHUNK)
            except (OSError, EOFError) as e:
                raise CorruptInput(
                    f"{path}: gzip stream damaged after {consumed + len(carry)} uncompressed bytes ({e})",
                    consumed + len(carry),
                ) from None
            data = carry + chunk
            buf = np.frombuffer(data, dtype=np.uint8)
            pos = 0
            while True:
                out.clear()
                pos, cut = _fill(buf, pos, buf.size, out, cnt)
                if out.count:
                    yield buf, out
                if out.count < out.capacity:
                    break
            consumed += pos
            carry = data[pos:]
            if not chunk:
                break
    if carry:
        cnt[C.TRUNCATED_RECORDS] += 1
        raise CorruptInput(
            f"{path}: truncated ITCH record at uncompressed byte offset {consumed} "
            f"({len(carry)} bytes left over)",
            consumed,
        )
