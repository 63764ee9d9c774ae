"""What the `dpdk:` source does around particular poll-mode drivers (those of DPDK 22.11, Debian 12's).

- net_pcap hands a capture's frames over as they are: their link type is read from the file here.
- net_af_xdp loads the XDP program named by `xdp_prog=`: ours (xdp_filter_dpdk.bpf.o), whose feeds
  map `steer` fills with the source's groups once the PMD has attached it (through the AF_XDP
  module's afxdp_prog__adopt, which also detaches it again at close: the PMD leaves it behind).
  The PMD also leaves its AF_XDP socket open when it closes, so its queue stays bound: `close_xsks`
  closes it.
- net_af_packet does not count what its ring drops: `packet_drops` reads PACKET_STATISTICS on its
  sockets.
Both find the PMD's sockets among the descriptors a port open created (`sockets`). Both PMDs name
their interface by index, which means something only in the network namespace the port was opened
in: `netns` runs its close there.
"""

import contextlib
import ctypes
import ipaddress
import os
import socket
import struct

from xdpfeed.capture.batch import LINKTYPE_ETHERNET, FrameBatch
from xdpfeed.capture.dpdk_eal import errname
from xdpfeed.capture.errors import CorruptInput, SourceError

CLONE_NEWNET = 0x40000000
SOL_PACKET, PACKET_STATISTICS = 263, 6
AF_PACKET, AF_XDP = 17, 44
SO_DOMAIN = 39


def capture_linktype(path: str) -> int:
    """The link type of a capture file's frames."""
    from xdpfeed.capture.pcapfile import PcapSource

    try:
        with PcapSource(path) as src:
            if src.format == "pcap":
                return src.linktype
            b = FrameBatch(1)
            return int(b.linktype[0]) if src.recv(b) else LINKTYPE_ETHERNET
    except CorruptInput:
        return LINKTYPE_ETHERNET


def sockets() -> list[tuple[int, int, int]]:
    """(fd, address family, inode) of this process's sockets."""
    out = []
    for fd in sorted(map(int, os.listdir("/proc/self/fd"))):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            ino = os.fstat(fd).st_ino
            with socket.socket(socket.AF_UNIX, socket.SOCK_RAW, 0, os.dup(fd)) as s:  # Python cannot
                out.append((fd, s.getsockopt(socket.SOL_SOCKET, SO_DOMAIN), ino))  # name AF_XDP itself
        except OSError:
            continue  # closed since (the listing's own descriptor)
    return out


def close_xsks(socks) -> None:
    """Close the AF_XDP sockets among `socks` (from sockets()) that are still open."""
    for fd, fam, ino in socks:
        with contextlib.suppress(OSError):
            if fam == AF_XDP and os.fstat(fd).st_ino == ino:  # still that socket, not a number used again
                os.close(fd)


def packet_sockets(socks) -> list[socket.socket]:
    """Duplicates of the AF_PACKET sockets among `socks` (from sockets())."""
    return [socket.socket(fileno=os.dup(fd)) for fd, fam, _ in socks if fam == AF_PACKET]


def packet_drops(socks: list[socket.socket]) -> int:
    """Frames the rings of these AF_PACKET sockets dropped since the last call (reading resets them)."""
    return sum(struct.unpack("=II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1] for s in socks)


@contextlib.contextmanager
def netns(fd: int):
    """Run the block in the network namespace `fd` refers to (this thread only)."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.fstat(here).st_ino == os.fstat(fd).st_ino:
            yield
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            libc.setns(here, CLONE_NEWNET)
    finally:
        os.close(here)


def bpf_object() -> str:
    import xdpfeed.native

    return os.path.join(os.path.dirname(xdpfeed.native.__file__), "xdp_filter_dpdk.bpf.o")


def steer(where: str, ifindex: int, queue: int, groups) -> tuple:
    """Point the XDP filter the af_xdp PMD attached to `ifindex` at `groups` [(group, port)] on rx
    `queue`. Returns (afxdp lib, the adopted program); afxdp_prog__close lets go of it."""
    try:
        from xdpfeed.native._afxdp import ffi as xffi
        from xdpfeed.native._afxdp import lib as xlib
    except ImportError:
        raise SourceError(f"{where}: net_af_xdp needs xdpfeed's AF_XDP module (libxdp-dev libbpf-dev clang): "
                          "reinstall xdpfeed with them") from None
    out = xffi.new("struct afxdp_prog **")
    err = xlib.afxdp_prog__adopt(out, ifindex)
    if err:
        raise SourceError(f"{where}: finding the XDP filter the af_xdp PMD attached: {errname(err)}")
    prog = (xlib, out[0])
    try:
        for group, port in groups:
            try:
                daddr = struct.unpack("@I", ipaddress.IPv4Address(group).packed)[0]
            except ValueError:
                raise SourceError(f"{where}: group {group!r} is not an IPv4 address") from None
            dport = struct.unpack("@H", struct.pack("!H", port))[0]
            err = xlib.afxdp_prog__set_feed(out[0], daddr, dport, queue, 1)
            if err:
                raise SourceError(f"{where}: updating the XDP filter's feeds: {errname(err)}")
    except BaseException:
        xlib.afxdp_prog__close(out[0])
        raise
    return prog
