"""Counting what a delivered stream holds, in compiled code: messages by type, for metrics."""

import numpy as np

from xdpfeed.capture.jit import njit_no_rc


@njit_no_rc(cache=True)
def count_types(b, n, counts):
    """counts[type byte] += 1 for every [uint16 length][message] record in b[:n]."""
    p = 0
    while p + 3 <= n:
        ln = (np.int64(b[p]) << 8) | b[p + 1]
        if ln > 0:
            counts[b[p + 2]] += 1
        p += 2 + ln
