"""AF_PACKET TPACKET_V3 as a packet source (`packet:IFACE`): the kernel-bypass-less fallback that still
needs no copy and no system call per packet.

A SOCK_RAW packet socket bound to the interface gets a PACKET_RX_RING of `blocks` blocks of
`block_size` bytes, mapped once and seen as one numpy uint8 array. The kernel fills a block with
packets and hands it to user space (block_status |= TP_STATUS_USER) when it is full or `retire_ms`
after its first packet. `recv()` walks the handed-over blocks in compiled code and fills the
FrameBatch with offsets INTO THE RING (frames start at Ethernet); `release()` gives every block that
was completely handed out back to the kernel (TP_STATUS_KERNEL). A batch may end inside a block: the
walk resumes there, and that block goes back once its last packet has been handed out. One batch is
in flight at a time: release() returns everything handed out so far.

The kernel strips 802.1Q tags into packet metadata before AF_PACKET sees a frame; the walk puts the
tag back in place (the 12 MAC bytes move 4 bytes towards the header, into the gap the kernel leaves),
so frames read as they were on the wire, as libpcap does.

With `groups`, a classic BPF socket filter (see `udp_filter`) drops everything but IPv4 UDP to those
group:port pairs in the kernel, before the ring; the source also joins each multicast group on the
interface (a UDP socket with IP_ADD_MEMBERSHIP, kept open) so IGMP reports go out and switches
forward the feed. Outgoing packets are ignored (PACKET_IGNORE_OUTGOING). Optional PACKET_FANOUT
spreads one interface over several sockets (processes) by flow hash, round robin, CPU, ...

Ring headers are read in host byte order; Linux on x86-64 and arm64 is little-endian, checked at open.
"""

import errno
import ipaddress
import mmap
import socket
import struct
import sys

import numpy as np

from xdpfeed.capture import mcast
from xdpfeed.capture.batch import LINKTYPE_ETHERNET, FrameBatch
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.jit import njit
from xdpfeed.capture.source import SourceBase

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23
PACKET_TIMESTAMP = 17  # which time the ring carries: SOF_TIMESTAMPING_RAW_HARDWARE asks for the NIC's
TP_STATUS_TS_RAW_HARDWARE = 1 << 31
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
TP_STATUS_KERNEL = 0  # block belongs to the kernel
TP_STATUS_USER = 1 << 0  # block (or packet) handed to user space
TP_STATUS_VLAN_VALID = 1 << 4  # tp_vlan_tci holds the stripped 802.1Q tag
TP_STATUS_VLAN_TPID_VALID = 1 << 6  # tp_vlan_tpid holds its TPID (else 0x8100)

FANOUT_MODES = {"hash": 0, "lb": 1, "cpu": 2, "rollover": 3, "rnd": 4, "random": 4, "qm": 5}

# The ring's C structs (linux/if_packet.h), mirrored so the offsets below are not typed by hand twice;
# tests/test_packet_source.py compiles the header and checks them.
TPACKET_BLOCK_DESC = np.dtype([
    ("version", "u4"), ("offset_to_priv", "u4"), ("block_status", "u4"), ("num_pkts", "u4"),
    ("offset_to_first_pkt", "u4"), ("blk_len", "u4"), ("seq_num", "u8"),
    ("ts_first_sec", "u4"), ("ts_first_nsec", "u4"), ("ts_last_sec", "u4"), ("ts_last_nsec", "u4"),
], align=True)
TPACKET3_HDR = np.dtype([
    ("tp_next_offset", "u4"), ("tp_sec", "u4"), ("tp_nsec", "u4"), ("tp_snaplen", "u4"), ("tp_len", "u4"),
    ("tp_status", "u4"), ("tp_mac", "u2"), ("tp_net", "u2"), ("tp_rxhash", "u4"), ("tp_vlan_tci", "u4"),
    ("tp_vlan_tpid", "u2"), ("hv1_padding", "u2"), ("tp_padding", "u1", (8,)),
], align=True)
TPACKET_REQ3 = struct.Struct("=7I")  # block_size, block_nr, frame_size, frame_nr, retire_blk_tov, priv, features
TPACKET_STATS_V3 = struct.Struct("=3I")  # tp_packets, tp_drops, tp_freeze_q_cnt


def _off(dt, name):
    return dt.fields[name][1]


BLK_STATUS = _off(TPACKET_BLOCK_DESC, "block_status")
BLK_NUM_PKTS = _off(TPACKET_BLOCK_DESC, "num_pkts")
BLK_FIRST = _off(TPACKET_BLOCK_DESC, "offset_to_first_pkt")
PKT_NEXT = _off(TPACKET3_HDR, "tp_next_offset")
PKT_SEC = _off(TPACKET3_HDR, "tp_sec")
PKT_NSEC = _off(TPACKET3_HDR, "tp_nsec")
PKT_SNAPLEN = _off(TPACKET3_HDR, "tp_snaplen")
PKT_LEN = _off(TPACKET3_HDR, "tp_len")
PKT_STATUS = _off(TPACKET3_HDR, "tp_status")
PKT_MAC = _off(TPACKET3_HDR, "tp_mac")
PKT_VLAN_TCI = _off(TPACKET3_HDR, "tp_vlan_tci")
PKT_VLAN_TPID = _off(TPACKET3_HDR, "tp_vlan_tpid")

# Classic BPF opcodes (linux/filter.h) used by udp_filter.
LD_W_ABS, LD_H_ABS, LD_W_IND, LD_H_IND, LD_B_IND, LD_MEM = 0x20, 0x28, 0x40, 0x48, 0x50, 0x60
LDX_IMM, ST, TAX = 0x01, 0x02, 0x07
ALU_AND_K, ALU_LSH_K, ALU_ADD_X = 0x54, 0x64, 0x0C
JEQ_K, JSET_K, RET_K = 0x15, 0x45, 0x06
ACCEPT = 0xFFFFFFFF  # ret: keep the whole frame
MAX_BPF_INSNS = 4096  # BPF_MAXINSNS


def udp_filter(groups) -> list[tuple[int, int, int, int]]:
    """Classic BPF program (code, jt, jf, k) that keeps IPv4 UDP frames to the (ip, port) pairs (port 0:
    any port of that address) and drops everything else, non-first IP fragments included (they carry
    no UDP header). On receive the kernel has already moved the outer 802.1Q/802.1ad tag into metadata;
    one more tag left in the frame (the inner tag of QinQ) is stepped over (X = 4).

         0  ldx #0;  ldh [12];  jeq #0x8100 else 5        X = VLAN offset
         3  ldx #4;  ldh [16]
         5  jeq #0x800 else 10                            IPv4
         6  ldh [x+20];  jset #0x1fff then 10             fragment offset != 0
         8  ldb [x+23];  jeq #17 then 11                  UDP
        10  ret #0
        11  ld [x+30];  st M[1]                           destination address
        13  ldb [x+14]; and #0xf; lsh #2; add x; tax      X = VLAN offset + IP header length
        18  ld M[1]
        per pair:  jeq #ip else next;  ldh [x+16];  jeq #port else reload;  ret #-1;  reload: ld M[1]
        ret #0                                            no pair matched
    Every jump is short, so the only limit is BPF_MAXINSNS: about 800 pairs.
    """
    pairs = list(dict.fromkeys((int(ipaddress.IPv4Address(ip)), int(port)) for ip, port in groups))
    prog = [
        (LDX_IMM, 0, 0, 0), (LD_H_ABS, 0, 0, 12), (JEQ_K, 0, 2, 0x8100),
        (LDX_IMM, 0, 0, 4), (LD_H_ABS, 0, 0, 16),
        (JEQ_K, 0, 4, 0x0800),
        (LD_H_IND, 0, 0, 20), (JSET_K, 2, 0, 0x1FFF),
        (LD_B_IND, 0, 0, 23), (JEQ_K, 1, 0, 17),
        (RET_K, 0, 0, 0),
        (LD_W_IND, 0, 0, 30), (ST, 0, 0, 1),
        (LD_B_IND, 0, 0, 14), (ALU_AND_K, 0, 0, 0xF), (ALU_LSH_K, 0, 0, 2), (ALU_ADD_X, 0, 0, 0), (TAX, 0, 0, 0),
        (LD_MEM, 0, 0, 1),
    ]
    for ip, port in pairs:
        if port == 0:
            prog += [(JEQ_K, 0, 1, ip), (RET_K, 0, 0, ACCEPT)]
        else:
            prog += [(JEQ_K, 0, 4, ip), (LD_H_IND, 0, 0, 16), (JEQ_K, 0, 1, port), (RET_K, 0, 0, ACCEPT),
                     (LD_MEM, 0, 0, 1)]
    prog.append((RET_K, 0, 0, 0))
    if len(prog) > MAX_BPF_INSNS:
        raise SourceError(f"packet source: too many groups for one socket filter ({len(pairs)})")
    return prog


@njit(cache=True)
def _walk(ring, r16, r32, block_size, nblocks, st, off, length, ts, lt, cap, counts):
    """Hand out packets of user-owned blocks, from block st[0], packet st[1] (at ring offset st[2]).
    st[3] counts blocks completely handed out and not yet released. counts = [packets, bytes, packets whose
    time is the NIC's (TP_STATUS_TS_RAW_HARDWARE)]."""
    n = 0
    while n < cap and st[3] < nblocks:  # every block handed out and none released yet: the ring is ours
        blk = st[0] * block_size
        if (r32[(blk + BLK_STATUS) >> 2] & TP_STATUS_USER) == 0:
            break
        npkts = r32[(blk + BLK_NUM_PKTS) >> 2]
        i = st[1]
        p = st[2] if i > 0 else blk + r32[(blk + BLK_FIRST) >> 2]
        while i < npkts and n < cap:
            status = r32[(p + PKT_STATUS) >> 2]
            snap = r32[(p + PKT_SNAPLEN) >> 2]
            wire = r32[(p + PKT_LEN) >> 2]
            f = p + r16[(p + PKT_MAC) >> 1]
            if status & TP_STATUS_VLAN_VALID and snap >= 12:  # put the stripped tag back before the ethertype
                tci = r32[(p + PKT_VLAN_TCI) >> 2] & 0xFFFF
                tpid = r16[(p + PKT_VLAN_TPID) >> 1] if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                for k in range(12):
                    ring[f - 4 + k] = ring[f + k]
                ring[f + 8] = tpid >> 8
                ring[f + 9] = tpid & 0xFF
                ring[f + 10] = tci >> 8
                ring[f + 11] = tci & 0xFF
                f -= 4
                snap += 4
                wire += 4
            off[n] = f
            length[n] = snap
            ts[n] = np.int64(r32[(p + PKT_SEC) >> 2]) * 1_000_000_000 + r32[(p + PKT_NSEC) >> 2]
            lt[n] = LINKTYPE_ETHERNET
            if status & TP_STATUS_TS_RAW_HARDWARE:
                counts[2] += 1
            counts[0] += 1
            counts[1] += wire
            n += 1
            i += 1
            p += r32[(p + PKT_NEXT) >> 2]
        if i >= npkts:
            st[0] = (st[0] + 1) % nblocks
            st[1] = 0
            st[2] = 0
            st[3] += 1
        else:
            st[1] = i
            st[2] = p
    return n


@njit(cache=True)
def _release(r32, block_size, nblocks, st):
    """Give the st[3] blocks before block st[0] back to the kernel."""
    for k in range(st[3]):
        b = (st[0] - st[3] + k) % nblocks
        r32[(b * block_size + BLK_STATUS) >> 2] = TP_STATUS_KERNEL
    st[3] = 0


def _ifindex(iface: str) -> int:
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise SourceError(f"packet source: no such interface {iface!r}") from None


def _fail(what: str, e: OSError) -> SourceError:
    if e.errno in (errno.EPERM, errno.EACCES):
        return SourceError(f"packet source: {what}: not permitted (needs root or CAP_NET_RAW)")
    return SourceError(f"packet source: {what}: {e.strerror}")


class PacketSource(SourceBase):
    """Frames received on `iface` through a TPACKET_V3 ring, in batches, zero copy."""

    def __init__(self, iface: str, groups=(), block_size: int = 1 << 20, blocks: int = 64, frame_size: int = 2048,
                 retire_ms: int = 10, fanout: int | None = None, fanout_mode: str = "hash"):
        if sys.byteorder != "little":
            raise SourceError("packet source: big-endian hosts are not supported")
        page = mmap.PAGESIZE
        if block_size <= 0 or block_size % page or block_size & (block_size - 1):
            raise SourceError(f"packet source: block_size {block_size} must be a power of two multiple of {page}")
        if frame_size < 128 or frame_size % 16 or block_size % frame_size:
            raise SourceError(f"packet source: frame_size {frame_size} must be a multiple of 16, >= 128, "
                              f"dividing block_size")
        if blocks <= 0 or retire_ms < 0:
            raise SourceError("packet source: blocks must be positive and retire_ms not negative")
        if fanout is not None and (fanout_mode not in FANOUT_MODES or not 0 <= fanout <= 0xFFFF):
            raise SourceError(f"packet source: fanout id must be 0..65535 and mode one of {', '.join(FANOUT_MODES)}")
        self.iface, self.block_size, self.blocks = iface, block_size, blocks
        self.groups = [(str(ipaddress.IPv4Address(ip)), int(port)) for ip, port in groups]
        prog = udp_filter(self.groups) if self.groups else None
        self.ifindex = _ifindex(iface)
        self._sock = None
        self._joins: list[socket.socket] = []
        self._mm = None
        self._ring = None
        try:
            self._open(prog, frame_size, retire_ms, fanout, fanout_mode)
        except BaseException:
            self.close()
            raise
        self._state = np.zeros(4, dtype=np.int64)
        self._counts = np.zeros(3, dtype=np.int64)
        self._drops = {"kernel": 0, "freeze": 0}
        self.kernel_packets = 0  # tp_packets accumulated: what passed the filter, dropped or not

    def _open(self, prog, frame_size, retire_ms, fanout, fanout_mode):
        try:  # protocol 0: receives nothing until bound, so no unfiltered packet lands in the ring
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as e:
            raise _fail("cannot open an AF_PACKET socket", e) from None
        s = self._sock
        if prog is not None:
            import ctypes

            code = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
            buf = ctypes.create_string_buffer(code, len(code))
            fprog = struct.pack("@HP", len(prog), ctypes.addressof(buf))
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            except OSError as e:
                raise _fail("cannot attach the UDP socket filter", e) from None
        try:
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        except OSError as e:
            raise _fail("TPACKET_V3 not available", e) from None
        frames = self.block_size // frame_size * self.blocks
        req = TPACKET_REQ3.pack(self.block_size, self.blocks, frame_size, frames, retire_ms, 0, 0)
        try:
            s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        except OSError as e:
            raise _fail(f"cannot set up a ring of {self.blocks} blocks of {self.block_size} bytes", e) from None
        try:
            self._mm = mmap.mmap(s.fileno(), self.block_size * self.blocks, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise _fail("cannot map the ring", e) from None
        self._ring = np.frombuffer(self._mm, dtype=np.uint8)
        self._r16 = self._ring.view(np.uint16)
        self._r32 = self._ring.view(np.uint32)
        try:
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass  # kernels before 4.20: outgoing frames are captured too
        try:
            s.bind((self.iface, ETH_P_ALL))
        except OSError as e:
            raise _fail(f"cannot bind to {self.iface!r}", e) from None
        if fanout is not None:
            try:
                s.setsockopt(SOL_PACKET, PACKET_FANOUT, fanout | FANOUT_MODES[fanout_mode] << 16)
            except OSError as e:
                raise _fail(f"cannot join fanout group {fanout} ({fanout_mode}); members must agree on the mode",
                            e) from None
        self._hardware_stamps(s)
        s.setblocking(False)
        for ip in dict.fromkeys(ip for ip, _ in self.groups):
            if ipaddress.IPv4Address(ip).is_multicast:
                self._join(ip)

    def _join(self, group: str) -> None:
        try:
            self._joins.append(mcast.join(group, self.ifindex))
        except OSError as e:
            raise _fail(f"cannot join {group} on {self.iface}", e) from None

    def fileno(self) -> int:
        """Readable (poll/select) when the kernel has handed a block to user space."""
        return self._sock.fileno()

    def _hardware_stamps(self, s: socket.socket) -> None:
        """The ring carries the NIC's receive time when it stamps packets (asked for with SIOCSHWTSTAMP where
        allowed), the kernel's otherwise; the reason is kept for `timestamp_source`."""
        from xdpfeed.capture.hwtstamp import SOF_TIMESTAMPING_RAW_HARDWARE, enable_rx

        ok, why = enable_rx(self.iface)
        self._hw_reason = why
        if ok:
            try:
                s.setsockopt(SOL_PACKET, PACKET_TIMESTAMP, SOF_TIMESTAMPING_RAW_HARDWARE)
            except OSError as e:
                self._hw_reason = f"PACKET_TIMESTAMP: {e.strerror}"

    @property
    def timestamp_source(self) -> dict:
        """Where receive timestamps come from (multicast.latency)."""
        from xdpfeed.capture.hwtstamp import timestamp_source

        return timestamp_source(int(self._counts[2]), "the NIC's receive time",
                                f"the kernel's receive time in the ring ({self._hw_reason})")

    def recv(self, batch: FrameBatch) -> int:
        """Fill `batch` with frames from the blocks the kernel handed over (0 when none: never blocks)."""
        if self._ring is None:
            raise SourceError(f"packet source {self.iface}: source is closed")
        n = _walk(self._ring, self._r16, self._r32, self.block_size, self.blocks, self._state, batch.offset,
                  batch.length, batch.timestamp_ns, batch.linktype, batch.capacity, self._counts)
        batch.data = self._ring
        batch.count = n
        return n

    def release(self, batch: FrameBatch) -> None:
        """Give every block handed out completely so far back to the kernel; batch frames go invalid."""
        if self._ring is not None and self._state[3]:
            _release(self._r32, self.block_size, self.blocks, self._state)

    def stats(self) -> dict:
        """Packets and bytes (wire length) handed out; kernel drops (ring full) and freeze counts."""
        if self._sock is not None and self._sock.fileno() >= 0:
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, TPACKET_STATS_V3.size)
            packets, drops, freeze = TPACKET_STATS_V3.unpack(raw)  # reading resets the kernel's counters
            self.kernel_packets += packets
            self._drops["kernel"] += drops
            self._drops["freeze"] += freeze
        return {"packets": int(self._counts[0]), "bytes": int(self._counts[1]), "drops": dict(self._drops),
                "mode": "tpacket_v3", "hardware_timestamps": int(self._counts[2])}

    def close(self) -> None:
        for j in self._joins:
            j.close()
        self._joins = []
        if self._sock is not None:
            self._sock.close()
        self._ring = self._r16 = self._r32 = None
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass  # a batch still views the ring: it is unmapped when the last view goes

    @property
    def exhausted(self) -> bool:
        return False  # a live source
