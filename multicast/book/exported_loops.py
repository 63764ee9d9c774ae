"""The book's exported loops as C functions, without numpy: where their shared object lives (one per build of the
code and processor), what each takes, and `Loops`, which calls them with raw addresses.

multicast.book.export_build writes the object; multicast.book.exported runs a book through it, and
multicast.book.early_start starts a file's loop before numpy has loaded.
"""

import ctypes
import hashlib
import os
import platform

from xdpfeed.capture import source_digest

# The dimensions of each array argument; a C caller passes its data pointer and then each dimension (int64).
DIMS = {"b": 1, "seqbox": 1, "ring": 2, "w": 1, "h": 1, "state": 1, "ladder": 1, "levels": 1, "lfree": 1, "sides": 2,
        "last": 2, "stocks": 1, "ev": 1, "stats": 1}
BOOK = ("w", "h", "state", "ladder", "levels", "lfree", "sides", "last", "stocks", "ev")  # BookView._args order
# Each exported loop: its arguments in multicast.book.apply's order (names not in DIMS are int64 scalars; eos is
# 0 or 1). The C function, xdpfeed_book_<name>, takes them and then an int64[3] the loop's result is written to
# (position, status, event count); it returns 1, or 0 when the loop raised.
LOOPS = {
    "apply_stream": ("b", "pos", "end", "seqbox", "eos", *BOOK, "ev_n", "stats"),
    "apply_stream_shard": ("b", "pos", "end", "seqbox", "eos", "mask", "shard", "ring", *BOOK, "ev_n", "stats"),
}
RING = 32  # a shard's ring rows: multicast.book.apply.RING (checked when the loops are exported)


def cpu_key() -> str:
    """The processor the exported object is compiled for, as a file-name key: numba compiles for the host's
    processor and its features, so a cache folder shared by different machines keeps one object for each."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            lines = [x for x in f.read().split(b"\n\n")[0].splitlines() if x.startswith((b"model name", b"flags"))]
    except OSError:
        lines = []
    return hashlib.sha1(b"\n".join([platform.machine().encode(), *lines])).hexdigest()[:12]


def object_path() -> str:
    """Where this build of the code keeps its exported loops on this processor."""
    return os.path.join(source_digest.compiled_dir(), "exported", f"book-{cpu_key()}.so")


def c_arguments(name: str) -> list:
    """The ctypes argument types of xdpfeed_book_<name>."""
    out = []
    for arg in LOOPS[name]:
        out += [ctypes.c_void_p, *[ctypes.c_int64] * DIMS[arg]] if arg in DIMS else [ctypes.c_int64]
    return [*out, ctypes.c_void_p]


class Loops:
    """The exported loops of one shared object. A call releases the GIL for the loop's whole run."""

    def __init__(self, path: str):
        self.path = path
        lib = ctypes.CDLL(path)
        self._fn = {}
        for name in LOOPS:
            fn = getattr(lib, f"xdpfeed_book_{name}")
            fn.restype, fn.argtypes = ctypes.c_int32, c_arguments(name)
            self._fn[name] = fn

    def call(self, name: str, values: dict) -> tuple[int, int, int]:
        """Run loop `name` and return its (position, status, event count). values: each argument by name, an
        array as (address, shape), a scalar as an int."""
        args = []
        for arg in LOOPS[name]:
            if arg in DIMS:
                address, shape = values[arg]
                args += [address, *shape]
            else:
                args.append(int(values[arg]))
        out = (ctypes.c_int64 * 3)()
        if self._fn[name](*args, ctypes.addressof(out)) != 1:
            raise RuntimeError(f"the book's exported loop {name} ({self.path}) raised: run with --loop numba to see "
                               f"the error")
        return out[0], out[1], out[2]


_loaded: dict[str, Loops] = {}


def load(path: str | None = None) -> Loops | None:
    """This build's exported loops (object_path()), loaded once; None when they have not been exported."""
    path = path or object_path()
    if path not in _loaded:
        if not os.path.isfile(path):
            return None
        _loaded[path] = Loops(path)
    return _loaded[path]
