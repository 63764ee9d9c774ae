"""Test session set-up: compiled code runs with bounds checking, in a cache of its own.

NUMBA_BOUNDSCHECK=1 turns any out-of-bounds access in a compiled walk into an IndexError, so the
tests that feed damaged and random input prove the parsers never read outside their buffers. The
checked build gets its own cache directory so it never mixes with the production build's cache.
"""

import os
import shutil
import sys

import pytest

# Nothing may depend on the environment of the machine the tests happen to run on. Python's unbuffered
# mode in particular hides output lost when a child process dies before flushing (this development VM
# sets PYTHONUNBUFFERED=1; a fresh machine does not), so the children run as they would anywhere.
for _name in ("PYTHONUNBUFFERED",):
    os.environ.pop(_name, None)

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


def tool(name: str) -> str | None:
    """A command from the virtualenv the tests run in (make setup puts promtool there), else from PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else shutil.which(name)


def tool_or_skip(name: str, why: str) -> str:
    path = tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed: {why}")
    return path


@pytest.fixture
def tshark():
    return tool_or_skip("tshark", "the independent oracle is missing (make test installs it)")


@pytest.fixture
def promtool():
    return tool_or_skip("promtool", "make setup puts it in .venv/bin (scripts/ensure-promtool.sh)")
