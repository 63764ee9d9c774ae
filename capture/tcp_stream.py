"""TCP stream reassembly from a capture: the byte streams of every TCP connection in a pcap/pcapng,
one per direction, as the receiving application read them (for `xdpfeed orders`, which decodes the
SoupBinTCP/OUCH sessions inside).

A compiled walk finds each frame's IPv4/TCP header (multicast.wire.frames) and records the 4-tuple,
sequence number, flags and payload position. Per direction, segments are then placed by sequence
number relative to the initial one (SYN + 1, or the earliest segment seen when the capture starts
mid-connection): retransmissions and overlaps keep the bytes already placed (a retransmission that
disagrees with them is counted), out-of-order segments wait until the hole before them is filled, and
a hole never filled ends the contiguous stream there (its size is reported, nothing is invented).
"""

from dataclasses import dataclass, field

import numpy as np

from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.byteorder import be16, be32
from xdpfeed.capture.errors import CorruptInput
from xdpfeed.capture.jit import njit
from xdpfeed.capture.pcapfile import PcapSource
from xdpfeed.multicast.wire.frames import OK, ipv4_payload

FIN, SYN, RST = 0x01, 0x02, 0x04
SEQ_MOD = 1 << 32
REBASE_BYTES = 1 << 20  # without a SYN, a segment this close before the first one seen moves the start back
EARLY_BYTES = 1 << 16  # without a SYN, holes this close to the start are segments in flight at capture start


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
    mid_connection: bool = False  # no SYN seen: the stream starts at the earliest byte captured
    skipped_at_start: int = 0  # set by assemble(): bytes before the readable start (mid-connection only)
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
            self.mid_connection = True
        rel = (seq - self.isn) % SEQ_MOD
        if self.mid_connection and SEQ_MOD - rel <= REBASE_BYTES:  # earlier bytes than the first seen: start there
            self._rebase(SEQ_MOD - rel)
            rel = 0
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

    def _rebase(self, shift: int) -> None:
        self.isn = (self.isn - shift) % SEQ_MOD
        self.pieces = {rel + shift: data for rel, data in self.pieces.items()}
        self.times = {rel + shift: t for rel, t in self.times.items()}
        self._high += shift

    def _start(self) -> int:
        """Where the stream is read from: 0, or for a capture begun mid-connection the end of the last
        hole within its first EARLY_BYTES (segments in flight when the capture started are missing)."""
        if not self.mid_connection:
            return 0
        start, pos = 0, 0
        for rel in sorted(self.pieces):
            if rel >= EARLY_BYTES:
                break
            if rel > pos:
                start = rel
            pos = max(pos, rel + len(self.pieces[rel]))
        return start

    def arrival(self) -> list[tuple[int, int]]:
        """[(end offset in the assembled bytes, capture time ns)] of the placed pieces in stream order: a
        message ending at byte e arrived with the first piece whose end offset is >= e."""
        start = self._start()
        return [(rel + len(self.pieces[rel]) - start, self.times.get(rel, 0)) for rel in sorted(self.pieces)
                if rel + len(self.pieces[rel]) > start]

    def assemble(self) -> tuple[bytes, int]:
        """(the contiguous bytes from the start, bytes missing after them — 0 when complete). The start is
        byte 0, except after early holes in a capture begun mid-connection (`skipped_at_start` bytes)."""
        out = bytearray()
        pos = self.skipped_at_start = self._start()
        for rel in sorted(self.pieces):
            data = self.pieces[rel]
            if rel > pos:
                break
            if rel + len(data) <= pos:  # wholly inside what is placed (counted when it was added)
                continue
            keep = data[pos - rel:]
            lo = max(rel, self.skipped_at_start)  # the overlap with what is already in `out`
            if lo < pos and data[lo - rel : pos - rel] != bytes(out[lo - self.skipped_at_start : pos -
                                                                    self.skipped_at_start]):
                self.conflicting_bytes += pos - lo
            out += keep
            pos += len(keep)
        return bytes(out), max(0, self._high - pos)


def _columns(cap: int) -> tuple:
    return (np.zeros(cap, np.uint32), np.zeros(cap, np.uint32), np.zeros(cap, np.uint16), np.zeros(cap, np.uint16),
            np.zeros(cap, np.uint32), np.zeros(cap, np.uint8), np.zeros(cap, np.int64), np.zeros(cap, np.int64),
            np.zeros(cap, np.int64))


def count_tcp(frames: FrameBatch) -> int:
    """TCP segments among the batch's frames."""
    return _segments(frames.data, frames.offset, frames.length, frames.linktype, frames.count,
                     *_columns(frames.capacity))


def reassemble(path: str) -> list[Direction]:
    """Every TCP direction in a capture, in the order each was first seen (CorruptInput if damaged)."""
    dirs, damage = reassemble_until_damage(path)
    if damage is not None:
        raise damage
    return dirs


def reassemble_until_damage(path: str) -> tuple[list[Direction], CorruptInput | None]:
    """Like reassemble, but a capture damaged part-way gives what came before the damage and the error."""
    frames = FrameBatch(4096)
    dirs: dict[tuple, Direction] = {}
    with PcapSource(path) as source:
        try:
            _walk(source, frames, dirs)
        except CorruptInput as e:
            return list(dirs.values()), e
    return list(dirs.values()), None


def _walk(source, frames, dirs) -> None:
    src, dst, sport, dport, seq, flags, p_off, p_len, tcp_frame = _columns(frames.capacity)
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


def _ip(v: int) -> str:
    return ".".join(str((v >> s) & 0xFF) for s in (24, 16, 8, 0))
