"""The deterministic random numbers of generated data (synthetic days, the venue's faults):
splitmix64 in compiled code, state in a one-element uint64 array, so a seed gives the same bytes on
every machine."""

import numpy as np

from xdpfeed.capture.jit import njit


@njit(cache=True)
def next64(st):
    """splitmix64: next 64 random bits (state in st[0])."""
    z = st[0] + np.uint64(0x9E3779B97F4A7C15)
    st[0] = z
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def uniform(st):
    """A float in [0, 1) with 53 random bits."""
    return np.float64(next64(st) >> np.uint64(11)) * (1.0 / 9007199254740992.0)
