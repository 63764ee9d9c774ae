"""NASDAQ GLIMPSE 5.0: the snapshot's own message and what a snapshot may hold (docs/snapshot.md).

GLIMPSE 5.0 is a SoupBinTCP session (log in for sequence 1) whose Sequenced Data are TotalView-ITCH 5.0
messages describing the venue's state at login — System Event, Stock Directory, Stock Trading Action,
Reg SHO Restriction, Operational Halt, Retail Price Improvement Indicator and an Add Order (A or F) per
live order, with its remaining shares — followed by the Snapshot message ('G'): the TotalView-ITCH
sequence number the snapshot corresponds to, as 20 ASCII digits (an Alpha field: left-justified,
space-padded). A receiver continues on the ITCH feed from that sequence number plus one.
"""

import numpy as np

from xdpfeed.capture.byteorder import be16
from xdpfeed.capture.jit import njit

END_OF_SNAPSHOT = ord("G")
SEQUENCE_LEN = 20
END_OF_SNAPSHOT_LEN = 1 + SEQUENCE_LEN
SNAPSHOT_TYPES = b"SRHYhNAF"  # the ITCH 5.0 types a GLIMPSE 5.0 snapshot carries before 'G'


def encode_end_of_snapshot(seq: int) -> bytes:
    """The 'G' message for ITCH sequence number `seq`."""
    text = str(int(seq))
    if int(seq) < 0 or len(text) > SEQUENCE_LEN:
        raise ValueError(f"end of snapshot: sequence number {seq} does not fit {SEQUENCE_LEN} digits")
    return b"G" + text.encode("ascii").ljust(SEQUENCE_LEN, b" ")


def parse_end_of_snapshot(msg: bytes) -> int:
    """The ITCH sequence number of a 'G' message; ValueError for anything else."""
    if len(msg) != END_OF_SNAPSHOT_LEN or msg[:1] != b"G":
        raise ValueError(f"not an End of Snapshot message ({len(msg)} bytes, type {msg[:1]!r})")
    text = msg[1:].decode("ascii", "replace").strip()
    if not text.isdigit():
        raise ValueError(f"End of Snapshot: sequence number {msg[1:]!r} is not a number")
    return int(text)


@njit(cache=True)
def find_type(b, pos, end, t):
    """Offset of the first [uint16 length][message] record of type `t` in b[pos:end], or -1."""
    p = np.int64(pos)
    while p + 2 < end:
        n = np.int64(be16(b, p))
        if n > 0 and b[p + 2] == t:
            return p
        p += 2 + n
    return np.int64(-1)


@njit(cache=True)
def count_records(b):
    """[uint16 length][message] records in b."""
    p = np.int64(0)
    k = np.int64(0)
    while p + 2 <= b.size:
        p += 2 + np.int64(be16(b, p))
        k += 1
    return k


@njit(cache=True)
def batch_ends(b, max_messages, max_bytes, ends, counts):
    """Cut b's records into batches of at most max_messages and max_bytes: the end offset and record count of
    each (ends / counts hold enough rows); returns how many batches."""
    p = np.int64(0)
    start = np.int64(0)
    k = np.int64(0)
    nb = np.int64(0)
    while p + 2 <= b.size:
        n = 2 + np.int64(be16(b, p))
        if k == max_messages or (k > 0 and p + n - start > max_bytes):
            ends[nb] = p
            counts[nb] = k
            nb += 1
            start = p
            k = 0
        p += n
        k += 1
    if k > 0:
        ends[nb] = p
        counts[nb] = k
        nb += 1
    return nb
