"""Exports the book's compiled loops (multicast.book.apply's apply_stream and apply_stream_shard) into a shared
object that multicast.book.exported_loops loads without numba.

numba compiles each loop behind a C-callable wrapper (a cfunc) whose arguments are the arrays' data pointers and
dimensions (exported_loops.LOOPS, DTYPES): the wrapper makes arrays of them (numba.carray, without owners) and
calls the loop, which numba compiles anew for those arrays (an input file's are read-only under OrderBook). The
wrappers' LLVM
modules are linked into one, each renamed xdpfeed_book_<loop>, compiled into position-independent machine code for
the host's processor, and linked with the C compiler into a shared object, together with the few symbols the
wrappers' error path names from numba's own modules (native/book_export_shim.c). The object is written to
exported_loops.object_path() (a temporary name, then renamed into place): one per build of the code and processor.

Run by `make setup` (python -m xdpfeed.multicast.book.export_build) and by `xdpfeed book` when this build has
not been exported yet: about a minute on this 2-core VM, once per build of the code (numba compiles both loops
with everything they inline).
"""

import os
import shutil
import subprocess
import sys
import tempfile

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import carray, cfunc, types

from xdpfeed import native
from xdpfeed.multicast.book import apply as A
from xdpfeed.multicast.book import exported_loops as L
from xdpfeed.multicast.book import storage

SHIM = os.path.join(os.path.dirname(os.path.abspath(native.__file__)), "book_export_shim.c")


# Each array argument's dtype (its dimensions: exported_loops.DIMS)
DTYPES = {"b": np.uint8, "seqbox": np.uint64, "ring": np.int64, "w": storage.ORDER, "h": storage.HASHED,
          "state": np.int64, "ladder": np.uint64, "levels": storage.LEVEL, "lfree": np.uint64, "sides": np.int64,
          "last": np.int64, "stocks": storage.STOCK, "ev": storage.EVENT, "stats": np.int64}


class ExportError(Exception):
    """The loops could not be exported (no C compiler, a failed link): the message says why."""


def _wrapper(name: str):
    """The cfunc of loop `name` and its source."""
    params, body = [], []
    for arg in L.LOOPS[name]:
        if arg in L.DIMS:
            dims = [f"{arg}_{d}" for d in range(L.DIMS[arg])]
            params += [f"{arg}_p", *dims]
            body.append(f"    {arg} = carray({arg}_p, ({', '.join(dims)},))")
        else:
            params.append(arg)
    call = ", ".join("eos != 0" if a == "eos" else a for a in L.LOOPS[name])
    src = (f"def {name}({', '.join(params)}, out_p):\n" + "\n".join(body) +
           f"\n    out = carray(out_p, (3,))\n    r = A.{name}({call})\n"
           "    out[0] = r[0]\n    out[1] = r[1]\n    out[2] = r[2]\n    return 1\n")
    scope = {"A": A, "carray": carray}
    exec(compile(src, f"<exported {name}>", "exec"), scope)
    sig = []
    for arg in L.LOOPS[name]:
        if arg in L.DIMS:
            sig += [types.CPointer(numba.from_dtype(np.dtype(DTYPES[arg]))), *[types.int64] * L.DIMS[arg]]
        else:
            sig.append(types.int64)
    sig.append(types.CPointer(types.int64))
    return cfunc(types.int32(*sig), nopython=True)(scope[name])


def machine_code() -> bytes:
    """Every exported loop, compiled and linked into one module, as an ELF object."""
    if A.RING != L.RING:
        raise ExportError(f"L.RING is {L.RING}, multicast.book.apply.RING {A.RING}")
    module = None
    for name in L.LOOPS:
        cf = _wrapper(name)
        mod = llvm.parse_assembly(cf._library.get_llvm_str())
        mod.get_function(cf.native_name).name = f"xdpfeed_book_{name}"
        if module is None:
            module = mod
        else:
            module.link_in(mod)
    target = llvm.Target.from_triple(llvm.get_process_triple())
    machine = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                           features=llvm.get_host_cpu_features().flatten(), opt=3, reloc="pic",
                                           codemodel="default")
    return machine.emit_object(module)


def build(path: str | None = None) -> str:
    """Export the loops to `path` (L.object_path()); returns it. Raises ExportError."""
    path = path or L.object_path()
    cc = (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc").split()
    if shutil.which(cc[0]) is None:
        raise ExportError(f"no C compiler ({cc[0]}) to link the book's exported loops")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
            obj = os.path.join(tmp, "loops.o")
            with open(obj, "wb") as f:
                f.write(machine_code())
            out = os.path.join(tmp, "loops.so")
            try:
                p = subprocess.run([*cc, "-shared", "-fPIC", "-O2", "-o", out, SHIM, obj], capture_output=True,
                                   text=True)
            except OSError as e:
                raise ExportError(f"{cc[0]} could not be run to link the book's exported loops: {e}") from None
            if p.returncode:
                raise ExportError(f"{cc[0]} could not link the book's exported loops: {p.stderr.strip()[-300:]}")
            os.replace(out, path)
    except OSError as e:  # the cache folder: read-only, full, not a folder
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def main() -> int:
    try:
        path = build()
    except ExportError as e:
        print(f"xdpfeed: error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
