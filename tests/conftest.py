"""Test session set-up: compiled code runs with bounds checking, in a cache of its own.

NUMBA_BOUNDSCHECK=1 turns any out-of-bounds access in a compiled walk into an IndexError, so the
tests that feed damaged and random input prove the parsers never read outside their buffers. The
checked build gets its own cache directory so it never mixes with the production build's cache.
"""

import os
import shutil

import pytest

os.environ["NUMBA_BOUNDSCHECK"] = "1"
os.environ["NUMBA_CACHE_DIR"] = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "xdpfeed", "numba-boundscheck",
)

if os.environ.get("XDPFEED_SANITIZED"):  # tests/sanitize.py: load the ASan/UBSan builds of native/ first
    import xdpfeed.native

    xdpfeed.native.__path__.insert(0, os.environ["XDPFEED_SANITIZED"])

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PCAPS = os.path.join(REPO, "pcaps")
GOLDEN = os.path.join(REPO, "tests", "golden")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(m.name in ("root", "slow") for m in item.iter_markers()):
            item.add_marker(pytest.mark.unit)


@pytest.fixture
def tshark():
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed (make test installs it): the independent oracle is missing")
    return path
