"""Random and mutated bytes through the frame, MoldUDP64 and ITCH parsers: no crash, no out-of-bounds
read (the suite runs with NUMBA_BOUNDSCHECK=1), and every frame and message accounted for."""

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdpfeed.capture.batch import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    FrameBatch,
)
from xdpfeed.capture.pcapfile import PcapSource
from xdpfeed.multicast import counters as C
from xdpfeed.multicast.itch import ItchTables, decode_batch
from xdpfeed.multicast.moldudp64 import PacketIndex, Sessions, extract_batch

from conftest import PCAPS
from helpers import frame, mold

FATES = (C.NON_IPV4, C.NON_UDP, C.IP_FRAGMENTS, C.TRUNCATED_FRAMES, C.BAD_HEADERS, C.UNSUPPORTED_LINKTYPE,
         C.FILTERED, C.PACKETS, C.MALFORMED_PACKETS, C.SESSIONS_OVERFLOW)
LINKTYPES = [LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, 0xBEEF]
NOGROUP = np.zeros((0, 2), dtype=np.int64)
SEEDS = [bytes(x) for x in (
    frame(mold(b"S", 1, [b"D" + bytes(18), b"A" + bytes(35)])),
    frame(mold(b"S", 1, [b"U" + bytes(34)]), vlan=141),
    frame(mold(b"S", 9)),
)]
with PcapSource(os.path.join(PCAPS, "omi", "itch50", "Multiple.Packets.pcap")) as _src:
    _b = FrameBatch(8)
    _src.recv(_b)
    SEEDS += [_b.frame(i) for i in range(_b.count)]


def run_frames(frames, linktypes):
    """Lay the frames in one buffer and push them through extract + decode; return the counters."""
    batch = FrameBatch(max(1, len(frames)))
    data = b"".join(frames)
    batch.data = np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, np.uint8)
    pos = 0
    for i, (f, lt) in enumerate(zip(frames, linktypes, strict=True)):
        batch.offset[i], batch.length[i], batch.linktype[i] = pos, len(f), lt
        pos += len(f)
    batch.count = len(frames)
    cnt, sessions, index, tables = C.new(), Sessions(), PacketIndex(), ItchTables(1 << 16)
    start = 0
    while start < batch.count:
        start = extract_batch(batch, start, NOGROUP, sessions, index, cnt)
        tables.clear()
        decode_batch(batch.data, index, 0, tables, cnt)
    assert cnt[C.FRAMES] == len(frames) == sum(int(cnt[i]) for i in FATES)
    assert cnt[C.MESSAGES] == cnt[C.DECODED] + cnt[C.UNKNOWN_TYPES] + cnt[C.BAD_LENGTH_MESSAGES]
    return cnt


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.binary(max_size=200), st.sampled_from(LINKTYPES)), max_size=20))
def test_random_frames(frames):
    run_frames([f for f, _ in frames], [lt for _, lt in frames])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
       st.integers(0, 2000))
def test_mutated_real_frames(seed, flips, cut):
    f = bytearray(seed)
    for pos, val in flips:
        if f:
            f[pos % len(f)] = val
    run_frames([bytes(f[: max(cut, 14)])], [LINKTYPE_ETHERNET])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.integers(0, 0xFFFF), st.integers(0, 2**64 - 1))
def test_random_moldudp64_payloads(blocks, count, seq):
    payload = b"SESSION001" + seq.to_bytes(8, "big") + count.to_bytes(2, "big") + blocks
    cnt = run_frames([frame(payload)], [LINKTYPE_ETHERNET])
    assert cnt[C.PACKETS] + cnt[C.MALFORMED_PACKETS] == 1
