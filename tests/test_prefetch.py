"""capture.prefetch: a hint that compiles to the CPU's prefetch and changes nothing."""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from xdpfeed.capture.prefetch import prefetch


@njit
def _sum_with_hints(a, rows):
    t = 0
    for i in range(a.size):
        prefetch(a, i + 8)  # past the end near the last ones: never faults
        prefetch(rows, (i % rows.shape[0], 0))
        t += a[i]
    return t


def test_prefetch_compiles_to_a_prefetch_and_changes_nothing():
    a = np.arange(1000, dtype=np.int64)
    rows = np.arange(60, dtype=np.int64).reshape(10, 6)
    before = a.copy(), rows.copy()
    assert _sum_with_hints(a, rows) == int(a.sum())
    assert np.array_equal(a, before[0]) and np.array_equal(rows, before[1])
    asm = next(iter(_sum_with_hints.inspect_asm().values()))
    # the 1-d and the 2-d hint (prefetchw where the CPU has it, as here; prefetcht0 elsewhere)
    assert sum("prefetch" in line for line in asm.splitlines()) >= 2


def test_prefetch_refuses_an_index_that_does_not_fit_the_array():
    @njit
    def wrong(rows):
        prefetch(rows, 3)  # a 2-d array needs one index per dimension

    with pytest.raises(TypingError):
        wrong(np.zeros((2, 2)))
