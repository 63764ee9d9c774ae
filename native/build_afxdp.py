"""cffi build script (API, out-of-line mode) for xdpfeed.native._afxdp, the AF_XDP layer (afxdp.c and
afxdp_xsk.c on libxdp + libbpf, found with pkg-config), and the build of its XDP program: xdp_filter.bpf.c is compiled
with clang into native/xdp_filter.bpf.o (installed beside the module as package data) whenever this
script runs and the object is older than its sources; and once more into xdp_filter_dpdk.bpf.o, the
same program with its XSKMAP named xsks_map as DPDK's af_xdp PMD wants it (capture/dpdk.py).

The cdef is afxdp.h itself, plus `#define NAME ...` lines for the kernel's and xdp_filter.h's
constants, so their values come from the headers at build time and are never retyped."""

import os
import re
import shutil
import subprocess
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
BPF_SOURCE = os.path.join(HERE, "xdp_filter.bpf.c")
BPF_OBJECT = os.path.join(HERE, "xdp_filter.bpf.o")
# object -> extra clang flags: ours, and the one DPDK's af_xdp PMD loads (its XSKMAP must be xsks_map)
BPF_OBJECT_TS = os.path.join(HERE, "xdp_filter_ts.bpf.o")  # + the driver's RX timestamp (loaded device-bound)
BPF_OBJECTS = {BPF_OBJECT: [], os.path.join(HERE, "xdp_filter_dpdk.bpf.o"): ["-DXDPFEED_XSKS=xsks_map"],
               BPF_OBJECT_TS: ["-DXDPFEED_RX_TIMESTAMP"]}
PACKAGES = "libxdp-dev libbpf-dev clang llvm pkg-config linux-libc-dev"
# Constants the Python layer passes or reads, from linux/if_link.h, linux/if_xdp.h and linux/bpf.h.
KERNEL_CONSTANTS = ("XDP_FLAGS_DRV_MODE", "XDP_FLAGS_SKB_MODE", "XDP_ZEROCOPY", "XDP_COPY", "XDP_PACKET_HEADROOM")


def _fail(what: str) -> SystemExit:
    return SystemExit(f"xdpfeed AF_XDP build: {what}; on Debian/Ubuntu: apt-get install {PACKAGES}")


def _pkg_config(*args: str) -> list[str]:
    if shutil.which("pkg-config") is None:
        raise _fail("pkg-config is missing")
    res = subprocess.run(["pkg-config", *args, "libxdp", "libbpf"], capture_output=True, text=True)
    if res.returncode:
        lines = res.stderr.strip().splitlines() or ["no .pc file"]
        raise _fail(f"pkg-config cannot find libxdp/libbpf ({next((x for x in lines if 'not found' in x), lines[0])})")
    return res.stdout.split()


def _multiarch_include() -> list[str]:
    """clang -target bpf does not search the host's multiarch directory, where asm/types.h lives."""
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    path = os.path.join("/usr/include", arch)
    return [f"-I{path}"] if arch and os.path.isdir(path) else []


def build_bpf_object(obj: str = BPF_OBJECT) -> str:
    """Compile the XDP program into `obj` (one of BPF_OBJECTS) when it is missing or older than its sources."""
    sources = [BPF_SOURCE, os.path.join(HERE, "xdp_filter.h")]
    if os.path.exists(obj) and all(os.path.getmtime(obj) >= os.path.getmtime(s) for s in sources):
        return obj
    clang = shutil.which("clang")
    if clang is None:
        raise _fail("clang is missing (it compiles the XDP program xdp_filter.bpf.c)")
    cmd = [clang, "-O2", "-g", "-Wall", "-target", "bpf", *BPF_OBJECTS[obj], "-I", HERE, *_multiarch_include(),
           *_pkg_config("--cflags-only-I"), "-c", BPF_SOURCE, "-o", obj + ".tmp"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        first = next((line for line in res.stderr.splitlines() if "error" in line), res.stderr.strip())
        raise _fail(f"clang could not compile xdp_filter.bpf.c: {first}")
    os.replace(obj + ".tmp", obj)
    return obj


def _cdef() -> str:
    with open(os.path.join(HERE, "afxdp.h")) as f:
        header = "".join(line for line in f if not line.startswith("#include"))
    with open(os.path.join(HERE, "xdp_filter.h")) as f:
        shared = re.findall(r"^#define (XDPFEED_[A-Z_]+) \d+", f.read(), re.M)
    return header + "".join(f"#define {name} ...\n" for name in (*KERNEL_CONSTANTS, *shared))


for _obj in BPF_OBJECTS:
    build_bpf_object(_obj)
ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "xdpfeed.native._afxdp",
    "#include <linux/bpf.h>\n#include <linux/if_link.h>\n#include <linux/if_xdp.h>\n"
    '#include "xdp_filter.h"\n#include "afxdp.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, name)) for name in ("afxdp.c", "afxdp_xsk.c")],
    include_dirs=[os.path.relpath(HERE)] + [f[2:] for f in _pkg_config("--cflags-only-I")],
    library_dirs=[f[2:] for f in _pkg_config("--libs-only-L")],
    libraries=[f[2:] for f in _pkg_config("--libs-only-l")],
    extra_compile_args=["-O2", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
