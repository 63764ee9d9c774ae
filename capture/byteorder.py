"""Compiled helpers that read fixed-width integers out of a uint8 buffer in either byte order.

Values up to 48 bits come back as int64; 64-bit values as uint64 (bit-exact). The offset is made
unsigned before indexing: numba then emits no negative-index wraparound (a compare and select per
byte), and LLVM folds the byte loads into one load plus a byte swap (MOVBE), so these cost what a C
`be64toh(*(uint64_t*)p)` costs. With a signed offset the fold does not happen (8 byte loads per be64).
"""

import numpy as np

from xdpfeed.capture.jit import njit

_U32 = np.uint64(32)
_1, _2, _3 = np.uint64(1), np.uint64(2), np.uint64(3)


@njit(cache=True, inline="always")
def u8(b, o):
    return b[np.uint64(o)]


@njit(cache=True, inline="always")
def be16(b, o):
    u = np.uint64(o)
    return (np.int64(b[u]) << 8) | np.int64(b[u + _1])


@njit(cache=True, inline="always")
def be32(b, o):
    u = np.uint64(o)
    return ((np.int64(b[u]) << 24) | (np.int64(b[u + _1]) << 16) | (np.int64(b[u + _2]) << 8)
            | np.int64(b[u + _3]))


@njit(cache=True, inline="always")
def be48(b, o):
    return (be16(b, o) << 32) | be32(b, o + 2)


@njit(cache=True, inline="always")
def be64(b, o):
    return (np.uint64(be32(b, o)) << _U32) | np.uint64(be32(b, o + 4))


@njit(cache=True, inline="always")
def le16(b, o):
    u = np.uint64(o)
    return np.int64(b[u]) | (np.int64(b[u + _1]) << 8)


@njit(cache=True, inline="always")
def le32(b, o):
    u = np.uint64(o)
    return (np.int64(b[u]) | (np.int64(b[u + _1]) << 8) | (np.int64(b[u + _2]) << 16)
            | (np.int64(b[u + _3]) << 24))


@njit(cache=True, inline="always")
def rd16(b, o, swapped):
    """16-bit read in file byte order: little-endian unless `swapped`."""
    return be16(b, o) if swapped else le16(b, o)


@njit(cache=True, inline="always")
def rd32(b, o, swapped):
    return be32(b, o) if swapped else le32(b, o)
