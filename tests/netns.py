"""The veth-pair namespaces of capture/netns.py as a test helper: skips (with the reason) where the
machine cannot create them."""

import contextlib

import pytest

from xdpfeed.capture import netns as _netns
from xdpfeed.capture.netns import VethPair  # noqa: F401  (re-exported for tests)


@contextlib.contextmanager
def veth_pair():
    try:
        cm = _netns.veth_pair()
        pair = cm.__enter__()
    except _netns.Unavailable as e:
        pytest.skip(str(e))
    try:
        yield pair
    finally:
        cm.__exit__(None, None, None)
