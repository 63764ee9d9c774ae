"""TCP stream reassembly from a capture: the byte streams of every TCP connection in a pcap/pcapng,
one per direction, as the receiving application read them (for `xdpfeed orders`, which decodes the
SoupBinTCP/OUCH sessions inside).

A compiled walk finds each frame's IPv4/TCP header (multicast.frames) and records the 4-tuple,
sequence number, flags and payload position. Per direction, segments are then placed by sequence
number relative to the initial one (SYN + 1, or the first segment seen when the capture starts
mid-connection): retransmissions and overlaps keep the bytes already placed (a retransmission that
disagrees with them is counted), out-of-order segments wait until the hole before them is filled, and
a hole never filled ends the contiguous stream there (its size is reported, nothing is invented).
"""

from dataclasses import dataclass, field

import numpy as np

from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.byteorder import be16, be32
from xdpfeed.capture.jit import njit
from xdpfeed.capture.pcapfile import PcapSource
from xdpfeed.multicast.frames import OK, ipv4_payload

FIN, SYN, RST = 0x01, 0x02, 0x04
SEQ_MOD = 1 << 32


@njit(cache=True)
def _segments(b, f_off, f_len, f_lt, n, src, dst, sport, dport, seq, flags, p_off, p_len, frame):
    """Per frame: the TCP 4-tuple, sequence number, flags and payload; returns TCP frames found
    (written at the front of the output arrays in frame order; frame[k] is the frame's index)."""
    k = 0
    for i in range(n):
        st, ip, tcp, tlen = ipv4_payload(b, f_off[i], f_len[i], f_lt[i], 6)
        if st != OK or tlen < 20:
            continue
        hl = (b[tcp + 12] >> 4) * 4
        if hl < 20 or hl > tlen:
            continue
        src[k] = be32(b, ip + 12)
        dst[k] = be32(b, ip + 16)
        sport[k] = be16(b, tcp)
        dport[k] = be16(b, tcp + 2)
        seq[k] = be32(b, tcp + 4)
        flags[k] = b[tcp + 13]
        p_off[k] = tcp + hl
        p_len[k] = tlen - hl
        frame[k] = i
        k += 1
    return k


@dataclass
class Direction:
    """One direction of one connection: (src ip, src port) → (dst ip, dst port)."""

    src: tuple[str, int]
    dst: tuple[str, int]
    isn: int | None = None  # sequence number of the first payload byte
    pieces: dict = field(default_factory=dict)  # relative offset → bytes, as captured
    times: dict = field(default_factory=dict)  # relative offset → capture time (ns) of that piece
    segments: int = 0
    retransmitted_bytes: int = 0
    conflicting_bytes: int = 0  # retransmitted bytes that differ from the first copy
    out_of_order: int = 0
    fin: bool = False
    reset: bool = False
    _high: int = 0

    def add(self, seq: int, flags: int, payload: bytes, ts_ns: int = 0) -> None:
        if flags & SYN:
            self.isn = (seq + 1) % SEQ_MOD
            return
        if flags & RST:
            self.reset = True
        if flags & FIN:
            self.fin = True
        if not payload:
            return
        if self.isn is None:  # the capture began mid-connection: start at the first byte we see
            self.isn = seq
        rel = (seq - self.isn) % SEQ_MOD
        if rel >= SEQ_MOD // 2:  # before the start: a retransmission of bytes we never saw placed
            self.retransmitted_bytes += len(payload)
            return
        self.segments += 1
        if rel < self._high:
            self.out_of_order += 1
        self._high = max(self._high, rel + len(payload))
        old = self.pieces.get(rel)
        if old is None or len(payload) > len(old):
            if old is not None:
                self.retransmitted_bytes += len(old)
                if payload[: len(old)] != old:
                    self.conflicting_bytes += len(old)
            self.pieces[rel] = payload
            self.times.setdefault(rel, ts_ns)
        else:
            self.retransmitted_bytes += len(payload)
            if old[: len(payload)] != payload:
                self.conflicting_bytes += len(payload)

    def arrival(self) -> list[tuple[int, int]]:
        """[(end offset, capture time ns)] of the placed pieces in stream order: a message ending at
        byte e arrived with the first piece whose end offset is >= e."""
        return [(rel + len(self.pieces[rel]), self.times.get(rel, 0)) for rel in sorted(self.pieces)]

    def assemble(self) -> tuple[bytes, int]:
        """(the contiguous bytes from the start, bytes missing after them — 0 when complete)."""
        out = bytearray()
        pos = 0
        for rel in sorted(self.pieces):
            data = self.pieces[rel]
            if rel > pos:
                break
            if rel + len(data) <= pos:  # wholly inside what is placed (counted when it was added)
                continue
            keep = data[pos - rel:]
            if rel < pos and data[: pos - rel] != bytes(out[rel:pos]):
                self.conflicting_bytes += pos - rel
            out += keep
            pos += len(keep)
        return bytes(out), max(0, self._high - pos)


def reassemble(path: str) -> list[Direction]:
    """Every TCP direction in a capture, in the order each was first seen."""
    frames = FrameBatch(4096)
    cap = frames.capacity
    src, dst = np.zeros(cap, np.uint32), np.zeros(cap, np.uint32)
    sport, dport = np.zeros(cap, np.uint16), np.zeros(cap, np.uint16)
    seq, flags = np.zeros(cap, np.uint32), np.zeros(cap, np.uint8)
    p_off, p_len = np.zeros(cap, np.int64), np.zeros(cap, np.int64)
    tcp_frame = np.zeros(cap, np.int64)
    dirs: dict[tuple, Direction] = {}
    with PcapSource(path) as source:
        while source.recv(frames):
            k = _segments(frames.data, frames.offset, frames.length, frames.linktype, frames.count, src, dst, sport,
                          dport, seq, flags, p_off, p_len, tcp_frame)
            for i in range(k):  # per TCP segment: offline analysis of order-entry sessions, not a feed
                key = (int(src[i]), int(sport[i]), int(dst[i]), int(dport[i]))
                d = dirs.get(key)
                if d is None:
                    d = dirs[key] = Direction((_ip(key[0]), key[1]), (_ip(key[2]), key[3]))
                o = int(p_off[i])
                d.add(int(seq[i]), int(flags[i]), bytes(frames.data[o : o + int(p_len[i])]),
                      int(frames.timestamp_ns[tcp_frame[i]]))
            source.release(frames)
    return list(dirs.values())


def _ip(v: int) -> str:
    return ".".join(str((v >> s) & 0xFF) for s in (24, 16, 8, 0))
