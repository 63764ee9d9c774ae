"""Decoding an input end to end: capture file or ITCH file → ITCH record tables, batch by batch.

`Decode(path).batches()` detects the input by its magic, runs the compiled stages (pcap walk →
frames + MoldUDP64 → ITCH) and yields the filled `ItchTables` each time a batch is complete. The
counters, session table and timing stay on the object for summaries. A damaged input raises
CorruptInput after everything before the damage was yielded. With a second core, a capture file is read and
indexed a batch ahead on a thread (multicast.itch.index_ahead) while this thread decodes.

The input may also be a packet source URI (`dpdk:net_pcap0,rx_pcap=X.pcap`, `packet:eth1?group=G:P`,
...; capture/uri.py): its frames go through the same stages. A source's `group=` options filter as
--group does. It ends when the source does (a capture file's end) or at SIGINT/SIGTERM, after what
was received so far has been processed.
"""

import ipaddress
import select
import time

import numpy as np

from xdpfeed.capture import uri
from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.pcapfile import PcapSource
from xdpfeed.capture.source import waitable
from xdpfeed.multicast.feed.stop import StopOnSignal
from xdpfeed.multicast.itch.decoder import ItchTables, decode_batch
from xdpfeed.multicast.itch.file import decode_file, gzip_chunks
from xdpfeed.multicast.itch.index_ahead import index_ahead, worth_a_thread
from xdpfeed.multicast.itch.input_format import detect, input_size, is_source_uri
from xdpfeed.multicast.itch.mapped_file import consume_mapped
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import MAX_BLOCKS_PER_PACKET, NO_SESSION, PacketIndex, Sessions, extract_batch

DEFAULT_CAPACITY = 1 << 16


def parse_group(text: str) -> tuple[int, int]:
    """'233.54.12.111:26477' → (ip as int, port). Raises ValueError with a one-line reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad group {text!r}: expected IPV4:PORT, e.g. 233.54.12.111:26477")
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"bad group {text!r}: {host!r} is not an IPv4 address") from None
    return int(ip), int(port)


def group_array(path: str, fmt: str, groups) -> np.ndarray:
    """(ipv4, port) pairs as the int64[k, 2] the compiled frame filter takes; captures only."""
    arr = np.array(list(groups), dtype=np.int64).reshape(-1, 2)
    if arr.size and fmt != "pcap":
        raise SourceError(f"{path}: --group applies to captures; an ITCH file has no UDP groups")
    return arr


class Decode:
    """One decoding run over one input."""

    def __init__(self, path: str, groups=(), capacity: int = DEFAULT_CAPACITY, ahead: bool | None = None):
        """ahead: a capture file's next batch is read and indexed on a thread meanwhile (None: when there is a
        second core; index_batches)."""
        self.path = path
        self.ahead = ahead
        self.format = detect(path)
        self.groups = group_array(path, self.format, groups)
        capacity = max(capacity, MAX_BLOCKS_PER_PACKET)
        self.counters = C.new()
        self.sessions = Sessions()
        self.tables = ItchTables(capacity)
        self.seconds = 0.0
        self.input_bytes = input_size(path)
        self.live = is_source_uri(path) and not self.input_bytes  # input_bytes follows what arrives

    def batches(self):
        warm_decoder(self.format, self.tables, self.counters)  # compiled code is loaded before the clock starts
        t0 = time.perf_counter()
        try:
            if self.format == "pcap":
                yield from self._pcap()
            else:
                yield from decode_file(self.path, self.tables, self.counters, gz=self.format == "itch.gz")
        finally:
            self.seconds = time.perf_counter() - t0

    def _pcap(self):
        for buf, index in index_batches(self.path, self.groups, self.sessions, self.counters, self.ahead):
            row = 0
            if self.live:
                self.input_bytes = int(self.counters[C.FRAME_BYTES])
            while row < index.rows:
                self.tables.clear()
                row = decode_batch(buf, index, row, self.tables, self.counters)
                yield buf, self.tables


def _empty_input(fmt: str) -> np.ndarray:
    """Two zero bytes of the kind of array the input's code will get: numba compiles a read-only array as another
    type. An ITCH file is decoded from its read-only mapping (or a .gz file's decompressed bytes), a capture from
    its frames' writable buffer."""
    empty = np.zeros(2, dtype=np.uint8)
    empty.flags.writeable = fmt == "pcap"
    return empty


def warm_decoder(fmt: str, tables, counters) -> None:
    """Load (or compile) the decoder's code for this input format with an empty input; the tables and counters
    stay as they were."""
    from xdpfeed.multicast.itch.decoder import decode_file_records, file_records_end

    empty = _empty_input(fmt)
    saved = counters.copy()
    if fmt == "pcap":
        decode_batch(empty, PacketIndex(1), 0, tables, counters)
    else:
        decode_file_records(empty, 0, 0, np.uint16(NO_SESSION), tables.tables, tables.rows, tables.order_type,
                            tables.order_row, 0, counters)
        if fmt == "itch.gz":
            file_records_end(empty, 0, 0)
    counters[:] = saved
    tables.clear()


FRAMES_PER_BATCH = 1024  # frames per recv() from a live source
FILE_FRAMES_PER_BATCH = 16384  # from a capture file: fewer compiled calls per frame (+5-8 % on a 10M day)


def index_batches(path: str, groups, sessions: Sessions, counters, ahead: bool | None = None):
    """Yield (buffer, PacketIndex) for a capture or a source URI: every sound MoldUDP64 data packet, in
    arrival order. The index is reused; each yield is valid until the next. A capture file is read and indexed a
    batch ahead on a thread of its own (multicast.itch.index_ahead) when `ahead` (None: when there is a second
    core)."""
    per_batch = FRAMES_PER_BATCH if is_source_uri(path) else FILE_FRAMES_PER_BATCH
    if not is_source_uri(path) and (worth_a_thread() if ahead is None else ahead):
        yield from index_ahead(path, groups, sessions, counters, per_batch)
        return
    frames = FrameBatch(per_batch)
    index = PacketIndex(per_batch)
    if not is_source_uri(path):
        with PcapSource(path) as src:
            while src.recv(frames):
                yield from _index(frames, groups, sessions, index, counters)
                src.release(frames)
        return
    with uri.open_source(path) as src, StopOnSignal() as stop:
        if not len(groups) and getattr(src, "groups", None):
            groups = np.array([(int(ipaddress.IPv4Address(g)), p) for g, p in src.groups], dtype=np.int64)
        while not stop.flag:
            if src.recv(frames):
                yield from _index(frames, groups, sessions, index, counters)
                src.release(frames)
            elif src.exhausted:
                break
            elif waitable(src):
                select.select([src], [], [], 0.1)  # a DPDK port has nothing to wait on: it is polled


def _index(frames: FrameBatch, groups, sessions: Sessions, index: PacketIndex, counters):
    start = 0
    while start < frames.count:
        start = extract_batch(frames, start, groups, sessions, index, counters)
        if index.rows:
            yield frames.data, index


def warm_book(fmt: str, book) -> None:
    """Load (or compile) the book's code for this input format with an empty input; the book stays as it was."""
    empty = _empty_input(fmt)
    if fmt == "pcap":
        book.apply_index(empty, PacketIndex(1))
    else:
        book.apply_stream(empty, 0, 0)


def replay_into_book(path: str, book, groups=(), counters=None, sessions=None, fmt: str | None = None) -> str:
    """Apply every ITCH message of a capture or ITCH file to `book`, in order; returns the format
    (`fmt`, when the caller already ran detect())."""
    fmt = fmt or detect(path)
    groups = group_array(path, fmt, groups)
    counters = C.new() if counters is None else counters
    if fmt == "pcap":
        sessions = Sessions() if sessions is None else sessions
        for buf, index in index_batches(path, groups, sessions, counters):
            book.apply_index(buf, index)
    elif fmt == "itch.gz":
        for buf in gzip_chunks(path, counters):
            book.apply_stream(buf)
    else:
        consume_mapped(path, lambda buf: book.apply_stream(buf, end_of_session=True), counters)
    book.flush_events()
    return fmt
