"""Warm-up of the live path's compiled code before the first packet arrives.

numba compiles (or loads from its cache) each function on its first call. For a live feed that
first call must not happen while packets queue in the socket: the first run on a machine would
compile for seconds and overflow the receive buffers. `warm_up()` runs a few hand-made MoldUDP64
packets through every compiled step of the live path (frame walk with control rows, sequencer with
a gap, the hold queue and a drain, re-request answer extraction, SoupBinTCP conversion, the book).

Loading a compiled function from numba's cache costs 1-30 ms, so a Feed warms only what its configuration will
run (`warm_up(afxdp=..., replay=..., consumers=..., latency=..., snapshot=...)`): a feed without
consumers never decodes a batch in Python, one without latency never records a stage. `warm_up()` warms
everything. Every built-in source gives writable frames (numba compiles a read-only array as another type).
"""

import struct

import numpy as np

from xdpfeed.capture.batch import LINKTYPE_UDP_PAYLOAD, FrameBatch
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.feed.sequencer import LINE_A, LINE_REPLAY, LINE_REREQUEST, Sequencer
from xdpfeed.multicast.feed.stream_stats import count_types
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import PacketIndex, Sessions, extract_batch
from xdpfeed.multicast.wire.soupbintcp import encode_sequenced, sequenced_to_blocks

NO_GROUPS = np.zeros((0, 2), dtype=np.int64)


def _system_event(seq: int) -> bytes:
    return b"S" + struct.pack(">HH", 0, 0) + (seq * 1000).to_bytes(6, "big") + b"O"


def _packet(first: int, n: int, count: int | None = None) -> bytes:
    blocks = b"".join(struct.pack(">H", 12) + _system_event(s) for s in range(first, first + n))
    return b"WARMUP0001" + struct.pack(">QH", first, n if count is None else count) + blocks


def _batch(payloads) -> FrameBatch:
    fb = FrameBatch(len(payloads))
    fb.data = np.frombuffer(b"".join(payloads), dtype=np.uint8).copy()
    o = 0
    for i, p in enumerate(payloads):
        fb.offset[i], fb.length[i], fb.linktype[i] = o, len(p), LINKTYPE_UDP_PAYLOAD
        o += len(p)
    fb.count = len(payloads)
    return fb


def warm_up(*, afxdp: bool = True, replay: bool = True, consumers: bool = True, latency: bool = True,
            snapshot: bool = True) -> None:
    """Load the compiled code a feed runs: its lines' (with an AF_XDP line's own code when asked), SoupBinTCP
    replay, consumers (their batches decoded in Python), per-stage latency and a late join's snapshot as asked."""
    _warm_lines(replay or snapshot)  # a GLIMPSE snapshot comes over SoupBinTCP as replay does
    if consumers:
        _warm_consumers()
    if snapshot:
        _warm_snapshot()
    if latency:
        _warm_latency(stream_of_one())
    if afxdp:
        _warm_afxdp()


def _warm_lines(soupbintcp: bool) -> None:
    """Frame walk, sequencer (a gap, the hold queue, a drain) and the book; the gap is filled by a re-request's
    answer, then by SoupBinTCP (replay or a snapshot) when asked."""
    sessions = Sessions()
    book = OrderBook(window=1 << 10, hash_orders=1 << 6, levels=1 << 6, events=1 << 6)
    seq = Sequencer(sessions, hold_messages=64, hold_arena_bytes=64, out_bytes=1 << 17)

    def sink(out, first, count, timestamp_ns):
        book.apply_stream(out, first_seq=first)

    index, cnt = PacketIndex(8), C.new()
    fb = _batch([_packet(1, 2), _packet(5, 2), _packet(7, 0, count=0)])  # gap [3, 5), heartbeat
    extract_batch(fb, 0, NO_GROUPS, sessions, index, cnt, True)
    seq.feed(fb.data, index, LINE_A, sink)
    seq.missing()
    fb = _batch([_packet(3, 1)])
    extract_batch(fb, 0, NO_GROUPS, sessions, index, cnt)  # the re-request client's walk
    seq.feed(fb.data, index, LINE_REREQUEST, sink)
    if soupbintcp:
        soup = np.frombuffer(encode_sequenced(_system_event(4)), dtype=np.uint8).copy()
        blocks = np.zeros(64, dtype=np.uint8)
        _, end, n = sequenced_to_blocks(soup, 0, soup.size, blocks, 0)
        seq.feed_blocks(blocks, 0, n, 4, LINE_REPLAY, sink)
    seq.feed_end_of_session(7, LINE_REPLAY, sink)
    book.checksum()
    one = stream_of_one()
    count_types(one, one.size, np.zeros(256, dtype=np.int64))  # the metrics' type counts


def _warm_afxdp() -> None:
    """Reading the driver's RX time out of AF_XDP frames (compiled on first use otherwise)."""
    from xdpfeed.capture import afxdp

    if afxdp.lib is not None:
        one = np.zeros(1, dtype=np.int64)
        afxdp._rx_times(np.zeros(16, dtype=np.uint8), one, 1, one.copy())


def stream_of_one() -> np.ndarray:
    return np.frombuffer(struct.pack(">H", 12) + _system_event(1), dtype=np.uint8).copy()


def _warm_latency(stream: np.ndarray) -> None:
    """Each stage's recording and the histogram export (multicast.latency)."""
    from xdpfeed.multicast.latency.hdr import cumulative_at
    from xdpfeed.multicast.latency.stages import FeedLatency

    lat = FeedLatency(["c"], ["o"], venue_time=True)
    ts = np.ones(1, dtype=np.int64)
    lat.read(ts, 1)
    index = PacketIndex(1)
    index.rows, index.blocks[0] = 1, 1
    lat.packets(stream, index)
    lat.delivered(ts, 1, stream)
    lat.book(ts, 1)
    lat.consumer_done(0, ts, 1)
    cumulative_at(lat.counts[0], np.ones(1, dtype=np.int64))


def _warm_snapshot() -> None:
    """A late join's first snapshot: finding End of Snapshot, cutting batches, the sequencer's jump."""
    from xdpfeed.multicast.wire.glimpse import batch_ends, count_records, encode_end_of_snapshot, find_type

    stream = np.frombuffer(struct.pack(">H", 12) + _system_event(1) + struct.pack(">H", 21)
                           + encode_end_of_snapshot(1), dtype=np.uint8).copy()
    find_type(stream, 0, stream.size, ord("G"))
    count_records(stream)
    ends = np.zeros(4, dtype=np.int64)
    batch_ends(stream, 1, 1 << 16, ends, ends.copy())
    seq = Sequencer(Sessions(), hold_messages=64, hold_arena_bytes=64, out_bytes=1 << 17, await_snapshot=True)
    seq.resume_at(1, lambda *a: None)


def _warm_consumers() -> None:
    """What a consumer's batch does the first time it is decoded."""
    from xdpfeed.multicast.feed.consumers import MessageBatch

    MessageBatch(1).set(stream_of_one(), 1, 1, np.zeros(1, dtype=np.int64)).decoded()
