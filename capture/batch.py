"""FrameBatch: the one contract between packet sources and the handler.

A source fills a preallocated batch: `data` is the buffer the frames live in (a pcap file's read buffer, an
AF_XDP UMEM, a recvmmsg slab) and is never copied; `offset`/`length` say where each frame is,
`timestamp_ns` when it arrived (0 when unknown) and `linktype` how it starts (pcap LINKTYPE_* numbers,
plus LINKTYPE_UDP_PAYLOAD for socket sources that hand out UDP payloads).
"""

import numpy as np

# pcap LINKTYPE_* values understood by multicast.wire.frames (https://www.tcpdump.org/linktypes.html).
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IPv4/IPv6, no link header
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_UDP_PAYLOAD = 0xFFFF  # private: the frame is already a UDP payload (kernel socket sources)

SUPPORTED_LINKTYPES = (
    LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL2, LINKTYPE_UDP_PAYLOAD,
)

EMPTY = np.zeros(0, dtype=np.uint8)


class FrameBatch:
    """Up to `capacity` frames; the arrays are allocated once and reused for every recv()."""

    __slots__ = ("capacity", "data", "offset", "length", "timestamp_ns", "linktype", "count")

    def __init__(self, capacity: int = 8192):
        if capacity <= 0:
            raise ValueError("FrameBatch capacity must be positive")
        self.capacity = capacity
        self.data = EMPTY
        self.offset = np.zeros(capacity, dtype=np.int64)
        self.length = np.zeros(capacity, dtype=np.uint32)
        self.timestamp_ns = np.zeros(capacity, dtype=np.int64)
        self.linktype = np.zeros(capacity, dtype=np.uint16)
        self.count = 0

    @property
    def layer(self) -> str:
        """'L4' when the frames are UDP payloads, else 'L2' (they start with a link or IP header)."""
        if self.count and self.linktype[0] == LINKTYPE_UDP_PAYLOAD:
            return "L4"
        return "L2"

    def frame(self, i: int) -> bytes:
        """Bytes of frame i (a copy; for tests and tools, not the hot path)."""
        if not 0 <= i < self.count:
            raise IndexError(i)
        o = int(self.offset[i])
        return bytes(self.data[o : o + int(self.length[i])])
