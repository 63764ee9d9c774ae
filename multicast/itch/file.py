"""NASDAQ binary ITCH 5.0 files (`[uint16 BE length][message]`…, optionally gzip-compressed) as input.

A plain file is mapped once and read in one pass by a consumer that stops at the session's end or a cut
record itself (multicast.itch.mapped_file: `consume_mapped` for the order book; `decode_file` here for the
decoder), while a thread maps its pages in ahead of it. A `.gz` file (as NASDAQ
publishes them) is decompressed in pieces by `gzip_chunks()`, which hands out buffers of whole records only,
the record cut at the end of each piece carried into the next. A record cut short by the end of the file raises
CorruptInput with its byte offset after everything before it was handed out. A zero-length record is
the session's end (NASDAQ's BinaryFILE format): reading stops there, the END_OF_SESSION counter says
so, and bytes after it are counted (AFTER_END_OF_SESSION) and named in a warning, never read as
messages.
"""

import gzip

import numpy as np

from xdpfeed.capture.errors import CorruptInput, SourceError
from xdpfeed.multicast.itch.decoder import ItchTables, decode_file_records, file_records_end
from xdpfeed.multicast.itch.mapped_file import end_of_session, mapped, mapped_end, populate_ahead
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import NO_SESSION

CHUNK = 16 << 20


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
                end_of_session(path, consumed + good, rest, counters)
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
    mapped_end(path, buf.size, pos, cut == 2, cnt)


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
