"""The handler's counters: one int64 array written by compiled code, named here.

Every frame, packet and message that is not delivered lands in exactly one of these, so nothing is
dropped without a number saying so. `names()` gives the label for each index (metrics, summaries).
"""

import numpy as np

FRAMES = 0  # frames handed to the frame parser
FRAME_BYTES = 1  # their captured bytes
NON_IPV4 = 2  # link layer carried something other than IPv4 (ARP, IPv6, ...)
NON_UDP = 3  # IPv4 but not UDP
IP_FRAGMENTS = 4  # IPv4 fragments (a MoldUDP64 feed is never fragmented; counted and skipped)
TRUNCATED_FRAMES = 5  # headers or the UDP payload cut short by the capture length
BAD_HEADERS = 6  # IPv4 version/IHL/total length or UDP length inconsistent
UNSUPPORTED_LINKTYPE = 7
FILTERED = 8  # UDP to a group:port not asked for
PACKETS = 9  # MoldUDP64 packets accepted
MALFORMED_PACKETS = 10  # MoldUDP64 header short, a block overrunning the packet, or bytes after the blocks
HEARTBEATS = 11  # message count 0
END_OF_SESSION = 12  # message count 0xFFFF, or a binary ITCH file's zero-length record
SESSIONS_OVERFLOW = 13  # packets of sessions beyond the session table (skipped)
MESSAGES = 14  # message blocks extracted from MoldUDP64 packets or file records
UNKNOWN_TYPES = 15  # ITCH messages of a type this decoder does not know (skipped by length)
BAD_LENGTH_MESSAGES = 16  # ITCH messages whose length does not match their type (skipped)
DECODED = 17  # ITCH messages decoded into tables
TRUNCATED_RECORDS = 18  # ITCH binary file: a record cut short at the end of the input
AFTER_END_OF_SESSION = 19  # ITCH binary file: bytes after its End of Session (a zero-length record), not read

N_COUNTERS = 20

_NAMES = {v: k.lower() for k, v in globals().items() if k.isupper() and isinstance(v, int) and k != "N_COUNTERS"}


def names() -> list[str]:
    return [_NAMES[i] for i in range(N_COUNTERS)]


def new() -> np.ndarray:
    return np.zeros(N_COUNTERS, dtype=np.int64)


def as_dict(counters: np.ndarray) -> dict[str, int]:
    return {name: int(counters[i]) for i, name in enumerate(names())}
