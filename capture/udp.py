"""Kernel UDP socket as a packet source (`udp:GROUP:PORT@IFACE_OR_ADDR[?source=S]`): the fallback when no
kernel bypass is available, and the receive path of tests and the demo on loopback.

The socket joins the group on the named interface (any-source, or source-specific with `source=`),
asks for receive timestamps with SO_TIMESTAMPING (the NIC's when it stamps received packets: the source
turns that on with SIOCSHWTSTAMP where allowed, capture.hwtstamp; the kernel's otherwise; `timestamp_source`
says which and why), and a cffi call (xdpfeed.native._udp, recvmmsg) drops a whole
batch of datagrams into a preallocated slab that becomes the FrameBatch's `data`. Frames are UDP
payloads (LINKTYPE_UDP_PAYLOAD). Datagrams longer than a slot are cut and counted in `truncated`.
"""

import ipaddress
import os
import socket
import struct

import numpy as np

from xdpfeed.capture.batch import LINKTYPE_UDP_PAYLOAD, FrameBatch
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.hwtstamp import SO_TIMESTAMPING, TIMESTAMPING_FLAGS, timestamp_source
from xdpfeed.capture.source import SourceBase
from xdpfeed.native._udp import ffi, lib

SLOT_SIZE = 2048  # one Ethernet-MTU datagram per slot
IP_ADD_SOURCE_MEMBERSHIP = getattr(socket, "IP_ADD_SOURCE_MEMBERSHIP", 39)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
MAX_BATCH = lib.XDPFEED_UDP_MAX_BATCH


def _iface_index(iface: str) -> int:
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise SourceError(f"udp source: no such interface {iface!r}") from None


class _BatchSocket(SourceBase):
    """A UDP socket read with recvmmsg into a preallocated slab (the FrameBatch's `data`)."""

    sock: socket.socket

    def _slab(self, slot_size: int):
        self.slot_size = slot_size
        self.truncated = ffi.new("uint64_t *")
        self.kernel_drops = ffi.new("uint32_t *")
        self.hw_stamps = ffi.new("uint64_t *")
        self.unstamped = ffi.new("uint64_t *")  # datagrams that came without a receive time (timestamp 0)
        self.hw_reason = "the socket asks for software time stamps only"
        self.packets = 0
        self.bytes = 0
        self._slab = np.zeros(MAX_BATCH * slot_size, dtype=np.uint8)
        self._c_slab = ffi.from_buffer("uint8_t[]", self._slab)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, batch: FrameBatch) -> int:
        """Whatever datagrams are waiting (up to the batch capacity and 256); 0 when none."""
        n = min(batch.capacity, MAX_BATCH)
        got = lib.xdpfeed_udp_recv_batch(
            self.sock.fileno(), self._c_slab, self.slot_size, n,
            ffi.from_buffer("int64_t[]", batch.offset), ffi.from_buffer("uint32_t[]", batch.length),
            ffi.from_buffer("int64_t[]", batch.timestamp_ns), self.truncated, self.kernel_drops, self.hw_stamps,
            self.unstamped,
        )
        if got < 0:
            raise OSError(-got, f"recvmmsg: {os.strerror(-got)}")
        batch.data = self._slab
        batch.linktype[:got] = LINKTYPE_UDP_PAYLOAD
        batch.count = got
        if got:
            self.packets += got
            self.bytes += int(batch.length[:got].sum())
        return got

    def _options(self, rcvbuf: int) -> None:
        """Receive buffer (SO_RCVBUFFORCE when permitted, past net.core.rmem_max), kernel timestamps,
        and the kernel's drop counter on every datagram."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:  # the NIC's time when it stamps packets, the kernel's otherwise
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TIMESTAMPING_FLAGS)
        except OSError as e:
            self.hw_reason = f"SO_TIMESTAMPING: {e.strerror}"
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)

    @property
    def timestamp_source(self) -> dict:
        """Where receive timestamps come from (multicast.latency): hardware once packets carry the NIC's."""
        return timestamp_source(int(self.hw_stamps[0]), "the NIC's receive time",
                                f"the kernel's receive time ({self.hw_reason})")

    mode = "socket recvmmsg"

    def stats(self) -> dict:
        """Packets and bytes received; "unstamped": datagrams without a receive time (their timestamp is 0, and
        the latency stages count them as unknown); drops: "kernel" (socket buffer full, SO_RXQ_OVFL) and
        "truncated" (datagrams longer than a slot, cut)."""
        return {"packets": self.packets, "bytes": self.bytes, "mode": self.mode,
                "hardware_timestamps": int(self.hw_stamps[0]), "unstamped": int(self.unstamped[0]),
                "drops": {"kernel": int(self.kernel_drops[0]), "truncated": int(self.truncated[0])}}

    @property
    def exhausted(self) -> bool:
        return False  # a live source

    def close(self) -> None:
        self.sock.close()


class UnicastSocket(_BatchSocket):
    """A unicast UDP socket bound to host:port (0 = any free port) that sends single datagrams and
    receives in batches: the MoldUDP64 re-request client's socket (answers come back to it)."""

    def __init__(self, host: str = "0.0.0.0", port: int = 0, slot_size: int = SLOT_SIZE, rcvbuf: int = 4 << 20):
        self._slab(slot_size)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._options(rcvbuf)
            self.sock.bind((host, port))
            self.sock.setblocking(False)
        except OSError as e:
            self.sock.close()
            raise SourceError(f"udp socket {host}:{port}: {e.strerror}") from None

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def send(self, data: bytes, address: tuple[str, int]) -> bool:
        """Send one datagram; False when the socket buffer is full or the network refuses it now."""
        try:
            self.sock.sendto(data, address)
            return True
        except (BlockingIOError, ConnectionRefusedError, OSError):
            return False


class UdpSource(_BatchSocket):
    """Datagrams sent to group:port, received on `iface`, in batches of up to 256 per system call."""

    def __init__(self, group: str, port: int, iface: str = "lo", source: str | None = None,
                 slot_size: int = SLOT_SIZE, rcvbuf: int = 8 << 20):
        try:
            grp = ipaddress.IPv4Address(group)
            src = ipaddress.IPv4Address(source) if source else None
        except ValueError as e:
            raise SourceError(f"udp source: {e}") from None
        if not grp.is_multicast:
            raise SourceError(f"udp source: {group} is not a multicast group")
        self.group, self.port, self.iface, self.source = str(grp), port, iface, src
        self._slab(slot_size)
        local = _as_address(iface)  # the join may name the interface by its IPv4 address instead
        ifindex = 0 if local else _iface_index(iface)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._options(rcvbuf)
            self.sock.bind((self.group, port))
            if src is None:  # struct ip_mreqn: group, local address (or any), interface index (or 0)
                mreq = grp.packed + (local or bytes(4)) + struct.pack("@i", ifindex)
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            else:  # struct ip_mreq_source: group, interface address, source
                addr = local or _iface_address(iface)
                mreq = grp.packed + addr + src.packed
                self.sock.setsockopt(socket.IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, mreq)
            self.sock.setblocking(False)
        except OSError as e:
            self.sock.close()
            raise SourceError(f"udp source {group}:{port}@{iface}: {e.strerror}") from None
        if not self.hw_reason.startswith("SO_TIMESTAMPING"):
            self._hardware_stamps(iface, local)

    def _hardware_stamps(self, iface: str, local: bytes | None) -> None:
        """Ask the interface to time-stamp received packets (where allowed); the reason when it will not."""
        from xdpfeed.capture.hwtstamp import enable_rx, iface_of_address

        name = iface_of_address(iface) if local else iface
        if name is None:
            self.hw_reason = f"no interface holds {iface}"
            return
        ok, why = enable_rx(name)
        self.hw_reason = why if not ok else f"{why}; no packet has carried one yet"


def _as_address(text: str) -> bytes | None:
    """The packed address when `text` is an IPv4 address rather than an interface name."""
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        return None


def _iface_address(iface: str) -> bytes:
    """IPv4 address of an interface (SIOCGIFADDR), needed by source-specific joins."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", iface.encode()[:15]))
        except OSError:
            raise SourceError(f"udp source: interface {iface!r} has no IPv4 address") from None
    return res[20:24]
