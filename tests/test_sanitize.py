"""native/ under AddressSanitizer and UndefinedBehaviorSanitizer (tests/sanitize.py): the tests that drive
the C run against sanitized builds, and a deliberate overflow shows the sanitizer is really watching."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import sanitize

HERE = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc and its libasan to build with ASan")

PROBE = """
import socket, numpy as np
import xdpfeed.native as n
from xdpfeed.native import _udp
print("module", _udp.__file__, flush=True)  # before the overflow aborts the process
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); rx.bind(("127.0.0.1", 0))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(4):
    tx.sendto(b"x" * 100, rx.getsockname())
slab = np.zeros(4 * 2048, np.uint8)
offset = np.zeros(1, np.int64)  # room for one datagram's offset: four are waiting
length, ts = np.zeros(4, np.uint32), np.zeros(4, np.int64)
trunc, drops, hw, un = np.zeros(1, np.uint64), np.zeros(1, np.uint32), np.zeros(1, np.uint64), np.zeros(1, np.uint64)
ffi = _udp.ffi
p = lambda a, t: ffi.cast(t, a.ctypes.data)
got = _udp.lib.xdpfeed_udp_recv_batch(rx.fileno(), p(slab, "uint8_t *"), 2048, 4, p(offset, "int64_t *"),
                                       p(length, "uint32_t *"), p(ts, "int64_t *"), p(trunc, "uint64_t *"),
                                       p(drops, "uint32_t *"), p(hw, "uint64_t *"), p(un, "uint64_t *"))
print("received", got)
"""


@pytest.fixture(scope="module")
def sanitized():
    out = tempfile.mkdtemp(prefix="xdpfeed-sanitized-")
    built = sanitize.build(out)
    assert "xdpfeed.native._udp" in built
    env = dict(os.environ, XDPFEED_SANITIZED=os.path.join(out, "xdpfeed", "native"), LD_PRELOAD=sanitize.runtime(),
               ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0", UBSAN_OPTIONS="halt_on_error=1")
    yield out, env
    shutil.rmtree(out, ignore_errors=True)


def test_the_sanitizer_catches_an_overflow_in_our_c(sanitized):
    out, env = sanitized
    code = f"import xdpfeed.native as n; n.__path__.insert(0, {env['XDPFEED_SANITIZED']!r})\n" + PROBE
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert f"module {out}" in r.stdout  # the sanitized build was the one loaded
    assert r.returncode != 0 and "AddressSanitizer: stack-buffer-overflow" not in r.stderr
    assert "AddressSanitizer: heap-buffer-overflow" in r.stderr and "xdpfeed_udp_recv_batch" in r.stderr


def test_native_tests_pass_under_asan_and_ubsan(sanitized):
    out, env = sanitized
    tests = ["tests/test_udp_source.py"]
    if os.geteuid() == 0:  # AF_XDP needs namespaces (root); DPDK's tests too (in `make test-sanitize`: 70 s)
        tests += ["tests/test_afxdp.py"]
    tests = [t for t in tests if os.path.exists(os.path.join(sanitize.REPO, t))]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "--tb=short", "-p", "no:cacheprovider",
                        "-m", "not slow", *tests], capture_output=True, text=True, env=env, cwd=sanitize.REPO,
                       timeout=900)
    if r.returncode != 0 or "Sanitizer" in r.stderr:
        failed = [ln for ln in r.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
        report = [ln for ln in r.stderr.splitlines() if "Sanitizer" in ln or ln.startswith(("SUMMARY", "    #"))]
        failed = "\n".join(failed) or "(no test failed: see below)"
        report = "\n".join(report[:200]) or r.stderr[-5000:]
        pytest.fail(f"the sanitized run failed (exit {r.returncode}):\n{failed}\n--- its output ---\n"
                    f"{r.stdout[-20000:]}\n--- sanitizer ---\n{report}", pytrace=False)
    assert " passed" in r.stdout
