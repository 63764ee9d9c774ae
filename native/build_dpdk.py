"""cffi build script (API, out-of-line mode) for xdpfeed.native._dpdk, the DPDK receive shim (dpdk.c on
libdpdk, found with pkg-config). setup.py lists it only when `pkg-config --exists libdpdk`, so a
machine without DPDK still builds the rest of xdpfeed; the `dpdk:` source then says what to install.

The cdef is dpdk.h itself (its #include lines stripped)."""

import os
import subprocess

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = "dpdk-dev pkg-config"


def _pkg_config(*args: str) -> list[str]:
    res = subprocess.run(["pkg-config", *args, "libdpdk"], capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"xdpfeed DPDK build: pkg-config cannot find libdpdk; on Debian/Ubuntu: apt-get install "
                         f"{PACKAGES}")
    return res.stdout.split()


ffibuilder = FFI()
with open(os.path.join(HERE, "dpdk.h")) as f:
    ffibuilder.cdef("".join(line for line in f if not line.startswith("#include")))
ffibuilder.set_source(
    "xdpfeed.native._dpdk",
    '#include "dpdk.h"',
    sources=[os.path.relpath(os.path.join(HERE, "dpdk.c"))],
    include_dirs=[os.path.relpath(HERE)],
    # libdpdk's cflags carry -include rte_config.h and the -march its libraries were built for
    extra_compile_args=["-O2", "-Wall", "-Wextra", *_pkg_config("--cflags")],
    extra_link_args=_pkg_config("--libs"),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
