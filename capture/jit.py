"""numba set-up for every compiled hot path: where the on-disk cache lives.

`cache=True` normally writes next to the source file; in a read-only site-packages that fails, so the
cache goes to $NUMBA_CACHE_DIR, defaulting to $XDG_CACHE_HOME/xdpfeed/numba (~/.cache/...). Hot-path
modules import `njit` from here so this runs before any function is compiled.
"""

import os

_DEFAULT_CACHE = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "xdpfeed", "numba"
)
os.environ.setdefault("NUMBA_CACHE_DIR", _DEFAULT_CACHE)

import numba  # noqa: E402  (must come after the environment is set)

if not numba.config.CACHE_DIR:  # numba was imported before us: point its config at the same place
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

njit = numba.njit


def njit_no_rc(*args, **kw):
    """numba.njit for compiled code that allocates nothing: no NRT reference counting. Otherwise numba
    wraps uses of array arguments in atomic NRT_incref/NRT_decref calls (dozens per ITCH message in the
    order book, which its refcount pruning does not remove) that cost more than the work itself."""
    return numba.njit(*args, _nrt=False, **kw)


__all__ = ["njit", "njit_no_rc"]
