"""cffi build script (API, out-of-line mode) for xdpfeed.native._udp: batch UDP receive."""

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

ffibuilder = FFI()
with open(os.path.join(HERE, "udp_recv.h")) as f:
    ffibuilder.cdef("\n".join(line for line in f if not line.startswith("#include")))
ffibuilder.set_source(
    "xdpfeed.native._udp",
    '#include "udp_recv.h"',
    sources=[os.path.relpath(os.path.join(HERE, "udp_recv.c"))],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
