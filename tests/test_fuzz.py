"""Random and mutated bytes through the frame, MoldUDP64 and ITCH parsers: no crash, no out-of-bounds
read (the suite runs with NUMBA_BOUNDSCHECK=1), and every frame and message accounted for (run_frames,
shared with the mutational fuzzer in tests/fuzz.py, checks that)."""

import os

from fuzz_targets import LINKTYPES, run_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdpfeed.capture.batch import (
    LINKTYPE_ETHERNET,
    FrameBatch,
)
from xdpfeed.capture.pcapfile import PcapSource
from xdpfeed.multicast.wire import counters as C

from conftest import PCAPS
from helpers import frame, mold

SEEDS = [bytes(x) for x in (
    frame(mold(b"S", 1, [b"D" + bytes(18), b"A" + bytes(35)])),
    frame(mold(b"S", 1, [b"U" + bytes(34)]), vlan=141),
    frame(mold(b"S", 9)),
)]
with PcapSource(os.path.join(PCAPS, "omi", "itch50", "Multiple.Packets.pcap")) as _src:
    _b = FrameBatch(8)
    _src.recv(_b)
    SEEDS += [_b.frame(i) for i in range(_b.count)]


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
