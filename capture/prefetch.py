"""`prefetch(arr, i)`: from compiled code, ask the CPU to start bringing arr[i]'s cache line in, for writing, so
that a load a few messages later finds it there (LLVM's llvm.prefetch; `prefetchw` on x86-64). `prefetch_read`:
the same for reading (`prefetcht0`), for input read ahead of a loop: the CPU's own stream prefetcher stops at
each 4 KiB page, so a loop walking a mapped file meets a cache miss at every page it enters without it.

A hint only: it never faults (an index past the array's end is harmless, nothing is read into the program) and
changes no result. It pays where a loop knows its next random accesses ahead of time and would otherwise wait
for memory on each in turn: the order book looks up the order each message names, and the messages are already
in the buffer (multicast.book.apply).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# llvm.prefetch's rw (0 reading, 1 writing), locality (3: keep in every level), cache (1: data)
_READ, _WRITE, _KEEP, _DATA = 0, 1, 3, 1


def _prefetch(rw, typingctx, arr, i):
    """prefetch(arr, i) -> None: i an integer index of a 1-d array, or a tuple of one integer per dimension (not
    wrapped: -1 is not the last)."""
    if not isinstance(arr, types.Array):
        return None
    if isinstance(i, types.Integer) and arr.ndim == 1:
        n = 1
    elif isinstance(i, types.UniTuple) and isinstance(i.dtype, types.Integer) and i.count == arr.ndim:
        n = arr.ndim
    else:
        return None

    def codegen(context, builder, signature, args):
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        one = n == 1 and not isinstance(idxty, types.UniTuple)
        idx = [args[1]] if one else cgutils.unpack_tuple(builder, args[1], n)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(rw), i32(_KEEP), i32(_DATA)])
        return context.get_dummy_value()

    return types.void(arr, i), codegen


@intrinsic
def prefetch(typingctx, arr, i):
    return _prefetch(_WRITE, typingctx, arr, i)


@intrinsic
def prefetch_read(typingctx, arr, i):
    """prefetch(arr, i), for reading."""
    return _prefetch(_READ, typingctx, arr, i)
