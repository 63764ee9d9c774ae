"""Writing FrameBatches to a pcapng file (or stream) with nanosecond timestamps.

The file is one section: a Section Header Block, an Interface Description Block per link type seen
(the constructor's first; if_tsresol = 9, so timestamps are nanoseconds since the epoch), then one
Enhanced Packet Block per frame. `write_batch` lays out a whole batch's EPBs in compiled code into
one reused buffer and writes it with a single call. Frames longer than `snaplen` are cut to it (the
EPB keeps the original length). pcapng blocks are written in host byte order, as the format allows.
"""

import os
import struct
import sys

import numpy as np

from xdpfeed.capture.batch import LINKTYPE_UDP_PAYLOAD, FrameBatch
from xdpfeed.capture.jit import njit

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_ENDOFOPT, OPT_SHB_USERAPPL, OPT_IF_NAME, OPT_IF_TSRESOL = 0, 4, 2, 9
EPB_OVERHEAD = 32  # type, length, interface, ts high, ts low, captured, original, trailing length
USERAPPL = b"xdpfeed"


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("=HH", code, len(value)) + value + bytes(-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("=II", btype, n) + body + struct.pack("=I", n)


def section_header() -> bytes:
    """SHB, version 1.0, section length unknown (-1)."""
    opts = _option(OPT_SHB_USERAPPL, USERAPPL) + _option(OPT_ENDOFOPT, b"")
    return _block(SHB, struct.pack("=IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + opts)


def interface_description(linktype: int, snaplen: int, if_name: str | None = None) -> bytes:
    """IDB with if_tsresol = 9 (nanoseconds) and, when given, if_name."""
    opts = _option(OPT_IF_NAME, if_name.encode()) if if_name else b""
    opts += _option(OPT_IF_TSRESOL, bytes([9])) + _option(OPT_ENDOFOPT, b"")
    return _block(IDB, struct.pack("=HHI", linktype, 0, snaplen) + opts)


@njit(cache=True, inline="always")
def _w32(out, o, v):
    out[o] = v & 0xFF
    out[o + 1] = (v >> 8) & 0xFF
    out[o + 2] = (v >> 16) & 0xFF
    out[o + 3] = (v >> 24) & 0xFF


@njit(cache=True)
def _fill_epbs(data, off, length, ts, ifid, n, snaplen, out):
    """EPBs for frames 0..n-1 into `out` (little-endian host layout); returns bytes written."""
    o = 0
    for i in range(n):
        orig = np.int64(length[i])
        cap = min(orig, snaplen)
        padded = (cap + 3) & ~3
        blen = EPB_OVERHEAD + padded
        t = ts[i]
        _w32(out, o, EPB)
        _w32(out, o + 4, blen)
        _w32(out, o + 8, ifid[i])
        _w32(out, o + 12, (t >> 32) & 0xFFFFFFFF)
        _w32(out, o + 16, t & 0xFFFFFFFF)
        _w32(out, o + 20, cap)
        _w32(out, o + 24, orig)
        src = off[i]
        out[o + 28 : o + 28 + cap] = data[src : src + cap]
        for k in range(cap, padded):
            out[o + 28 + k] = 0
        _w32(out, o + 28 + padded, blen)
        o += blen
    return o


class PcapngWriter:
    """pcapng output: `file_or_path` is a path, '-' (standard output) or a binary stream."""

    def __init__(self, file_or_path, linktype: int = 1, snaplen: int = 65535, if_name: str | None = None):
        if sys.byteorder != "little":
            raise OSError("pcapng writer: big-endian hosts are not supported")
        if file_or_path == "-":
            self._f, self._own = sys.stdout.buffer, False
        elif isinstance(file_or_path, (str, os.PathLike)):
            self._f, self._own = open(file_or_path, "wb"), True  # noqa: SIM115 — closed by close()
        else:
            self._f, self._own = file_or_path, False
        self.snaplen, self.if_name = snaplen, if_name
        self._ifid = np.full(1 << 16, -1, dtype=np.int64)  # linktype → interface id
        self._interfaces = 0
        self._out = np.zeros(1 << 20, dtype=np.uint8)
        self._frame_ifid = np.zeros(0, dtype=np.int64)
        self.frames = 0
        self.bytes = 0  # captured bytes written (frame data, not block overhead)
        self._f.write(section_header())
        self._interface(linktype)

    def _interface(self, linktype: int) -> None:
        if linktype == LINKTYPE_UDP_PAYLOAD:
            raise ValueError("frames are bare UDP payloads (a socket source): pcapng needs link-layer frames")
        self._f.write(interface_description(linktype, self.snaplen, self.if_name))
        self._ifid[linktype] = self._interfaces
        self._interfaces += 1

    def write_batch(self, batch: FrameBatch) -> int:
        """Append the batch's frames; returns the number written."""
        n = batch.count
        if n == 0:
            return 0
        lt = batch.linktype[:n]
        if not (lt == lt[0]).all() or self._ifid[lt[0]] < 0:
            for t in np.unique(lt):
                if self._ifid[t] < 0:
                    self._interface(int(t))
        if self._frame_ifid.size < n:
            self._frame_ifid = np.zeros(batch.capacity, dtype=np.int64)
        ifid = self._frame_ifid
        ifid[:n] = self._ifid[lt]
        caps = np.minimum(batch.length[:n].astype(np.int64), self.snaplen)
        total = int(((caps + 3) & ~3).sum()) + EPB_OVERHEAD * n
        if self._out.size < total:
            self._out = np.zeros(max(total, 2 * self._out.size), dtype=np.uint8)
        o = _fill_epbs(batch.data, batch.offset, batch.length, batch.timestamp_ns, ifid, n, self.snaplen, self._out)
        self._f.write(memoryview(self._out)[:o])
        self.frames += n
        self.bytes += int(caps.sum())
        return n

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        """Flush; close the file when the writer opened it (a path), not a stream it was given."""
        if self._f is None:
            return
        try:
            self._f.flush()
        finally:
            if self._own:
                self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
