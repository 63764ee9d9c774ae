"""capture.pcapfile: the pcap/pcapng reader.

Files are built by hand (tests/pcapgen.py, struct only), written by scapy, or taken from the OMI
sample captures; tshark serves as an independent oracle. Run with NUMBA_BOUNDSCHECK=1: an
out-of-bounds read in the compiled walk then becomes an IndexError, which no test here tolerates
(only SourceError and its subclass CorruptInput may ever come out of the reader).
"""

import glob
import itertools
import logging
import os
import shutil
import struct
import subprocess
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdpfeed.capture import pcapfile
from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.errors import CorruptInput, SourceError
from xdpfeed.capture.pcapfile import MAX_FRAME, PcapSource, sniff

import pcapgen as g

T0 = 1692711000  # 2023-08-22 13:30:00 UTC, the day of the OMI ITCH captures
T0_NS = T0 * 10**9
TSHARK = shutil.which("tshark")
OMI_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pcaps", "omi")
OMI = sorted(glob.glob(os.path.join(OMI_DIR, "*", "*.pcap")))
assert len(OMI) == 23, f"the OMI captures are missing from {OMI_DIR}"
ENDIANS = ["<", ">"]
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed: no independent oracle")


# ------------------------------------------------------------------------------------------ helpers


class Frame(NamedTuple):
    data: bytes
    ts: int
    lt: int
    offset: int


class Piece(NamedTuple):
    """Part of a file: a header or a block/record, and the frame it carries, if any, as
    (data, timestamp_ns, linktype, where the data starts inside `raw`)."""

    raw: bytes
    frame: tuple | None = None


class Layout(NamedTuple):
    data: bytes
    starts: list[int]  # byte offset of every piece
    ends: list[int]
    frames: list[Frame]  # what the reader must deliver
    frame_ends: list[int]  # end offset of the piece each frame comes from


def layout(pieces: list[Piece]) -> Layout:
    starts, ends, frames, frame_ends, pos = [], [], [], [], 0
    for p in pieces:
        starts.append(pos)
        if p.frame is not None:
            data, ts, lt, at = p.frame
            frames.append(Frame(data, ts, lt, pos + at))
            frame_ends.append(pos + len(p.raw))
        pos += len(p.raw)
        ends.append(pos)
    return Layout(b"".join(p.raw for p in pieces), starts, ends, frames, frame_ends)


_seq = itertools.count()


def put(directory, data: bytes) -> str:
    path = os.path.join(str(directory), f"capture{next(_seq)}.pcap")
    with open(path, "wb") as f:
        f.write(data)
    return path


class Read(NamedTuple):
    frames: list[Frame]
    counts: list[int]  # what each recv() returned
    error: CorruptInput | None


def drain(src: PcapSource, capacity: int = 4096) -> Read:
    """recv() until 0 or CorruptInput. Checks on the way that every frame lies inside the file."""
    batch = FrameBatch(capacity)
    frames, counts = [], []
    for _ in range(1_000_000):
        try:
            n = src.recv(batch)
        except CorruptInput as e:
            return Read(frames, counts, e)
        counts.append(n)
        assert 0 <= n <= capacity and batch.count == n
        size, base = src.bytes_total, src.data_offset
        for i in range(n):
            off, ln = int(batch.offset[i]), int(batch.length[i])  # in batch.data, which starts at base in the file
            assert off + ln <= batch.data.size, f"frame {len(frames)} at {off}+{ln} outside its batch"
            off += base
            assert 0 <= off and off + ln <= size, f"frame {len(frames)} at {off}+{ln} outside {size} bytes"
            frames.append(Frame(batch.frame(i), int(batch.timestamp_ns[i]), int(batch.linktype[i]), off))
        if n == 0:
            return Read(frames, counts, None)
    raise AssertionError("recv() never reached the end of the file")


def assert_batches(counts: list[int], n: int, capacity: int, file_size: int) -> None:
    """recv() gave n frames in `counts`: full batches while the file fits in one chunk; with smaller chunks a
    batch also ends where a chunk does, so it is only never empty and never over capacity."""
    if pcapfile.CHUNK_BYTES >= file_size:
        full, rest = divmod(n, capacity)
        assert counts == [capacity] * full + ([rest] if rest else [])
    else:
        assert sum(counts) == n and all(1 <= c <= capacity for c in counts), counts


def read_all(path: str, capacity: int = 4096) -> Read:
    with PcapSource(path) as src:
        return drain(src, capacity)


def read_clean(path: str) -> list[Frame]:
    r = read_all(path)
    assert r.error is None, str(r.error)
    return r.frames


def assert_one_line(e: Exception) -> str:
    msg = str(e)
    assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
    return msg


def assert_corrupt_at(e: CorruptInput | None, offset: int, keyword: str = "") -> None:
    assert isinstance(e, CorruptInput), "expected CorruptInput"
    msg = assert_one_line(e)
    assert e.offset == offset, msg
    assert f"byte offset {offset}" in msg, msg
    assert keyword.lower() in msg.lower(), msg


def payload(i: int, n: int) -> bytes:
    return bytes((i * 37 + k * 11 + 5) & 0xFF for k in range(n))


# --------------------------------------------------------------------------------- file builders

LENGTHS = [60, 0, 1, 14, 1514, 3, 42, 9000, 87, 2, 65, 7]


def classic(nano: bool = False, endian: str = "<", linktype: int = 1, n: int = 10, field: int | None = None,
            lengths=LENGTHS) -> list[Piece]:
    """Global header then n records; the first has the largest fraction, one has sec 0, one sec 2^32-1."""
    unit, top = (1, 999_999_999) if nano else (1000, 999_999)
    pieces = [Piece(g.pcap_header(nano=nano, endian=endian, linktype=linktype if field is None else field))]
    for i in range(n):
        sec, frac = T0 + 13 * i, (i * 7_654_321 + 12_345) % (top + 1)
        if i == 0:
            frac = top
        elif i == 1:
            frac = 0
        elif i == 5:
            sec = 0
        elif i == 6:
            sec = 0xFFFFFFFF
        data = payload(i, lengths[i % len(lengths)])
        raw = g.pcap_record(data, sec, frac, endian=endian)
        pieces.append(Piece(raw, (data, sec * 10**9 + frac * unit, linktype, g.PCAP_RECORD_HEADER_LEN)))
    return pieces


class Iface(NamedTuple):
    lt: int
    tsresol: int | None = None  # None: no if_tsresol option (10^-6)
    tsoffset: int = 0
    snaplen: int = 0

    @property
    def res(self) -> int:
        return 6 if self.tsresol is None else self.tsresol


def ng_idb(iface: Iface, endian: str, **kw) -> Piece:
    return Piece(g.idb(iface.lt, snaplen=iface.snaplen, tsresol=iface.tsresol,
                       tsoffset=iface.tsoffset or None, endian=endian, **kw))


def ng_packet(ifid: int, iface: Iface, ns: int, data: bytes, endian: str, kind: str = "epb",
              opts: bytes = b"") -> Piece:
    """EPB or obsolete PB; the expected timestamp is `ns` rounded down to the interface's resolution."""
    raw = g.raw_ts(ns, iface.res, iface.tsoffset)
    assert 0 <= raw < 2**64
    expect = (data, g.epoch_ns(raw, iface.res, iface.tsoffset), iface.lt, 28)
    if kind == "pb":
        return Piece(g.pb(ifid, raw, data, endian=endian), expect)
    return Piece(g.epb(ifid, raw, data, endian=endian, opts=opts), expect)


def ng_spb(iface0: Iface, data: bytes, endian: str) -> Piece:
    """SPB as a writer makes it: the data cut to the snaplen, the original length kept; no timestamp."""
    stored = data[: iface0.snaplen] if iface0.snaplen else data
    return Piece(g.spb(stored, origlen=len(data), endian=endian), (stored, 0, iface0.lt, 12))


MULTI = [Iface(1), Iface(276, 9, 1000), Iface(101, 3), Iface(113, 0x94, -7)]


def multi_iface(endian: str = "<") -> list[Piece]:
    """One section, four interfaces (Ethernet µs, SLL2 ns + offset, raw IP ms, SLL 2^-20 - offset),
    NRB/ISB/unknown blocks in between, options with padding, EPBs and PBs: 10 frames."""
    e = endian
    pieces = [
        Piece(g.shb(endian=e, opts=g.options((g.OPT_COMMENT, b"xdpfeed: odd length"), endian=e))),
        ng_idb(MULTI[0], e, name=b"eth0"),
        Piece(g.nrb(endian=e)),
        ng_idb(MULTI[1], e, name=b"any"),
        ng_idb(MULTI[2], e, extra=((g.OPT_COMMENT, b"raw ip"),)),
        Piece(g.isb(0, g.raw_ts(T0_NS), endian=e)),
        ng_idb(MULTI[3], e),
    ]
    for i in range(10):
        ifid = (i * 3) % 4
        ns = T0_NS + i * 1_234_567_891 + 987_654_321 * (i % 3)
        data = payload(i, LENGTHS[i])
        opts = b""
        if i % 3 == 1:
            opts = g.options((g.OPT_COMMENT, b"c" * i), (g.EPB_FLAGS, struct.pack(e + "I", 1)), endian=e)
        kind = "pb" if i in (4, 8) else "epb"
        pieces.append(ng_packet(ifid, MULTI[ifid], ns, data, e, kind=kind, opts=opts))
        if i == 2:
            pieces.append(Piece(g.block(0x12345678, b"unknown block", endian=e)))
        if i == 6:
            pieces.append(Piece(g.block(0x80000001, b"local use", endian=e)))
            pieces.append(Piece(g.isb(2, g.raw_ts(T0_NS, 3), endian=e)))
    return pieces


def two_sections(e1: str = "<", e2: str = ">") -> list[Piece]:
    """Section 1 (byte order e1): Ethernet µs and raw IP ns. Section 2 (e2) redefines interface 0 as
    SLL2 with ms resolution and snaplen 21, and uses EPB, SPB and PB."""
    s1 = [Iface(1), Iface(101, 9, 5)]
    s2 = [Iface(276, 3, 0, 21)]
    return [
        Piece(g.shb(endian=e1)),
        ng_idb(s1[0], e1),
        ng_idb(s1[1], e1),
        ng_packet(0, s1[0], T0_NS + 999_999_999, payload(1, 60), e1),
        ng_packet(1, s1[1], T0_NS + 123_456_789, payload(2, 61), e1),
        ng_spb(s1[0], payload(3, 62), e1),
        Piece(g.shb(endian=e2)),
        ng_idb(s2[0], e2),
        ng_packet(0, s2[0], T0_NS + 555_555_555, payload(4, 63), e2),
        ng_spb(s2[0], payload(5, 60), e2),  # cut to the snaplen: 21 bytes stored, 3 of padding
        ng_spb(s2[0], payload(6, 7), e2),  # shorter than the snaplen: 7 of the 8 stored bytes
        ng_spb(s2[0], payload(7, 21), e2),
        ng_packet(0, s2[0], T0_NS + 1, payload(8, 20), e2, kind="pb"),
    ]


def skipped_blocks(endian: str = "<") -> list[Piece]:
    """Every block the reader does not use, around two packets (custom blocks too: tshark shows those
    as records, so this file is checked against the hand-made expectation only)."""
    e = endian
    eth = Iface(1)
    return [
        Piece(g.shb(endian=e)),
        Piece(g.custom(endian=e)),
        Piece(g.custom(b"x" * 9, endian=e)),
        ng_idb(eth, e),
        Piece(g.nrb(endian=e)),
        Piece(g.isb(0, 0, endian=e)),
        Piece(g.block(0x40000BAD, struct.pack(e + "I", 32473) + b"no copy", endian=e)),
        ng_packet(0, eth, T0_NS + 1000, payload(0, 33), e),
        Piece(g.block(0x0000000A, b"decryption secrets", endian=e)),
        Piece(g.block(0x00000009, b"systemd journal", endian=e)),
        Piece(g.block(0x7FFFFFFF, b"", endian=e)),
        Piece(g.custom(endian=e)),
        ng_packet(0, eth, T0_NS + 2000, payload(1, 34), e),
        Piece(g.block(0x00000BAD, struct.pack(e + "I", 1) + bytes(100), endian=e)),
    ]


TSRESOLS = [0, 1, 3, 6, 9, 10, 12, 0x80, 0x8A, 0x94, 0x9E, 0xA0]


def tsresol_file(tsresol: int, tsoffset: int = 0, endian: str = "<") -> list[Piece]:
    """Three EPBs on an interface with this if_tsresol; timestamps near T0 unless that does not fit in
    the 64-bit field (picoseconds), then the largest that does."""
    iface = Iface(1, tsresol, tsoffset)
    wanted = [T0_NS + 123_456_789, T0_NS + 999_999_999, T0_NS]
    limit = (2**64 - 1) * 10**9 // g.ts_units(tsresol) + tsoffset * 10**9
    stamps = [ns if ns < limit else limit - k * 987_654_321 for k, ns in enumerate(wanted)]
    return [Piece(g.shb(endian=endian)), ng_idb(iface, endian)] + [
        ng_packet(0, iface, ns, payload(i, 40 + i), endian) for i, ns in enumerate(stamps)
    ]


# Valid hand-built files, by name: also the corpus for the tshark and robustness tests.
HAND = {
    **{f"pcap-{('us', 'ns')[nano]}-{'le' if e == '<' else 'be'}": (lambda nano=nano, e=e: classic(nano, e))
       for nano in (False, True) for e in ENDIANS},
    "pcap-sll": lambda: classic(linktype=113),
    "pcap-sll2-be": lambda: classic(True, ">", linktype=276),
    "pcap-raw": lambda: classic(linktype=101),
    "pcap-fcs-bits": lambda: classic(linktype=1, field=0x50000001),
    "pcap-max-record": lambda: classic(n=3, lengths=[MAX_FRAME, 0, 5]),
    "pcapng-multi-le": lambda: multi_iface("<"),
    "pcapng-multi-be": lambda: multi_iface(">"),
    **{f"pcapng-2sections-{a}{b}": (lambda a=a, b=b: two_sections(a, b))
       for a, b in itertools.product(ENDIANS, ENDIANS)},
    **{f"pcapng-tsresol-{r:#x}": (lambda r=r: tsresol_file(r)) for r in TSRESOLS},
    "pcapng-tsoffset-neg-be": lambda: tsresol_file(9, -86400, ">"),
    "pcapng-tsoffset-t0": lambda: tsresol_file(6, T0),
}


# --------------------------------------------------------------------------------------- scapy


def scapy_files(directory) -> dict[str, tuple[str, list[tuple[bytes, int, int]]]]:
    """Files written by scapy: name → (path, expected [(data, ts_ns, linktype)])."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
    from scapy.packet import Raw
    from scapy.utils import EDecimal, PcapNgWriter, PcapWriter, wrpcap

    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # "inconsistent linktypes": on purpose

    def udp(i, n=20):
        return IP(src="10.0.0.1", dst="233.54.12.111") / UDP(sport=1000 + i, dport=26477) / Raw(payload(i, n))

    def stamp(pkts, times):
        for p, t in zip(pkts, times, strict=True):
            p.time = t
        return pkts

    us_times = [EDecimal(f"{T0}.999999"), EDecimal(f"{T0 + 1}.000000"), EDecimal(f"{T0 + 2}.123456")]
    # scapy takes int(float(time)) as the seconds: a fraction that rounds up to 1.0 in a float breaks it
    ns_times = [EDecimal(f"{T0}.999999001"), EDecimal(f"{T0 + 1}.000000001"), EDecimal(f"{T0 + 2}.123456789")]
    bin_times = [T0 + 0.5, T0 + 1.25, T0 + 2.0625]  # exact in a float: scapy's pcapng path goes through one

    def ns_of(t, unit):
        return int(Fraction(Decimal(str(t))) * 10**9) // unit * unit

    out = {}

    def classic_file(name, pkts, times, lt, unit, **kw):
        path = os.path.join(str(directory), name + ".pcap")
        pkts = stamp(pkts, times)
        if kw:
            with PcapWriter(path, **kw) as w:
                w.write(pkts)
        else:
            wrpcap(path, pkts)
        out[name] = (path, [(bytes(p), ns_of(t, unit), lt) for p, t in zip(pkts, times, strict=True)])

    classic_file("scapy-wrpcap-ether", [Ether(dst="01:00:5e:36:0c:6f") / udp(i) for i in range(3)],
                 us_times, 1, 1000)
    classic_file("scapy-nano", [Ether() / udp(i, 100 + i) for i in range(3)], ns_times, 1, 1, nano=True)
    classic_file("scapy-be", [Ether() / udp(i) for i in range(3)], us_times, 1, 1000, endianness=">")
    classic_file("scapy-be-nano", [Ether() / udp(i) for i in range(3)], ns_times, 1, 1,
                 endianness=">", nano=True)
    classic_file("scapy-sll", [CookedLinux() / udp(i) for i in range(3)], us_times, 113, 1000)
    classic_file("scapy-sll2", [CookedLinuxV2() / udp(i) for i in range(3)], us_times, 276, 1000)
    classic_file("scapy-raw", [udp(i) for i in range(3)], us_times, 101, 1000, linktype=101)

    # pcapng: interface 0 from the first packet, then one IDB per sniffed_on name with its linktype
    pkts = stamp([Ether() / udp(0), CookedLinux() / udp(1), Ether() / udp(2, 3), CookedLinuxV2() / udp(3)],
                 bin_times + [T0 + 3.75])
    pkts[1].sniffed_on, pkts[2].sniffed_on, pkts[3].sniffed_on = "any", "eth1", "any2"
    path = os.path.join(str(directory), "scapy-pcapng.pcapng")
    with PcapNgWriter(path) as w:
        for p in pkts:
            w.write(p)
    out["scapy-pcapng"] = (path, [(bytes(p), ns_of(p.time, 1000), lt)
                                  for p, lt in zip(pkts, [1, 113, 1, 276], strict=True)])
    return out


@pytest.fixture(autouse=True, params=["1MiB", "61B"])
def chunk(request, monkeypatch):
    """Every test twice: with the reader's own chunk, and with 61-byte chunks, so that nearly every record and
    header is cut by a chunk's end (and a record longer than the buffer grows it)."""
    if request.param == "61B":
        monkeypatch.setattr(pcapfile, "CHUNK_BYTES", 61)
    return request.param


@pytest.fixture(scope="module")
def scapy_corpus(tmp_path_factory):
    return scapy_files(tmp_path_factory.mktemp("scapy"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("scratch")


# ---------------------------------------------------------------------------------- classic pcap


@pytest.mark.parametrize("endian", ENDIANS)
@pytest.mark.parametrize("nano", [False, True], ids=["us", "ns"])
@pytest.mark.parametrize("linktype", [1, 113, 276, 101])
def test_classic_frames(tmp_path, nano, endian, linktype):
    lay = layout(classic(nano, endian, linktype))
    path = put(tmp_path, lay.data)
    with PcapSource(path) as src:
        assert src.format == "pcap"
        assert src.linktype == linktype
        assert src.bytes_total == len(lay.data)
        r = drain(src)
        assert src.frames == 10
    assert r.error is None
    assert len(r.frames) == 10
    assert r.frames == lay.frames  # bytes, timestamp, linktype and offset of every frame


@pytest.mark.parametrize(
    "nano,endian,sec,frac,expect",
    [
        (False, "<", T0, 999_999, 1692711000_999999000),
        (False, ">", T0, 999_999, 1692711000_999999000),
        (True, "<", T0, 999_999_999, 1692711000_999999999),
        (True, ">", T0, 999_999_999, 1692711000_999999999),
        (False, "<", 0, 0, 0),
        (True, ">", 0, 1, 1),
        (False, "<", 0xFFFFFFFF, 999_999, 4294967295_999999000),
        (True, "<", 0xFFFFFFFF, 999_999_999, 4294967295_999999999),
    ],
)
def test_classic_timestamp_exact(tmp_path, nano, endian, sec, frac, expect):
    data = g.pcap_header(nano=nano, endian=endian) + g.pcap_record(b"abc", sec, frac, endian=endian)
    (f,) = read_clean(put(tmp_path, data))
    assert f == Frame(b"abc", expect, 1, 40)


@pytest.mark.parametrize("field,linktype", [
    (0x50000001, 1),  # F bit, FCS length 2 (4 bytes)
    (0x30000001, 1),  # F bit, FCS length 1
    (0xF0000001, 1),
    (0x50000071, 113),
    (0x10000114, 276),
])
@pytest.mark.parametrize("endian", ENDIANS)
def test_classic_linktype_fcs_bits_ignored(tmp_path, field, linktype, endian):
    lay = layout(classic(endian=endian, linktype=linktype, field=field, n=3))
    path = put(tmp_path, lay.data)
    with PcapSource(path) as src:
        assert src.linktype == linktype
        assert drain(src).frames == lay.frames


def test_classic_header_only_has_no_frames(tmp_path):
    r = read_all(put(tmp_path, g.pcap_header()))
    assert r == Read([], [0], None)


def test_classic_max_record_length_accepted(tmp_path):
    lay = layout(classic(n=3, lengths=[MAX_FRAME, 0, 5]))
    frames = read_clean(put(tmp_path, lay.data))
    assert [len(f.data) for f in frames] == [MAX_FRAME, 0, 5]
    assert frames == lay.frames


# ----------------------------------------------------------------------------------------- pcapng


@pytest.mark.parametrize("endian", ENDIANS)
def test_pcapng_multi_interface(tmp_path, endian):
    lay = layout(multi_iface(endian))
    path = put(tmp_path, lay.data)
    with PcapSource(path) as src:
        assert src.format == "pcapng"
        r = drain(src)
    assert r.error is None
    assert len(r.frames) == 10
    assert {f.lt for f in r.frames} == {1, 276, 101, 113}
    assert r.frames == lay.frames


def test_pcapng_multi_interface_timestamps_literal(tmp_path):
    """The same file's first frame on each interface, with the expected values written out by hand."""
    frames = read_clean(put(tmp_path, layout(multi_iface()).data))
    # frame 0: Ethernet, µs: T0 + 0 ns → exact
    assert frames[0].ts == 1692711000_000000000 and frames[0].lt == 1
    # frame 1: SLL (iface 3, 2^-20 s, offset -7 s): T0 + 1.234567891 + 0.987654321 s, floored to 2^-20
    ns = T0_NS + 1_234_567_891 + 987_654_321
    raw = (ns + 7 * 10**9) * 2**20 // 10**9
    assert frames[1].ts == raw * 10**9 // 2**20 - 7 * 10**9 and frames[1].lt == 113
    assert abs(frames[1].ts - ns) < 954  # 2^-20 s is 953.67 ns
    # frame 2: raw IP (iface 2, ms): T0 + 2.469135782 + 1.975308642 s → ms
    assert frames[2].ts == 1692711004_444000000 and frames[2].lt == 101
    # frame 3: SLL2 (iface 1, ns, offset +1000 s): exact
    assert frames[3].ts == T0_NS + 3 * 1_234_567_891 and frames[3].lt == 276


@pytest.mark.parametrize("e1,e2", list(itertools.product(ENDIANS, ENDIANS)))
def test_pcapng_two_sections_redefine_interfaces(tmp_path, e1, e2):
    lay = layout(two_sections(e1, e2))
    frames = read_clean(put(tmp_path, lay.data))
    assert frames == lay.frames
    assert [f.lt for f in frames] == [1, 101, 1, 276, 276, 276, 276, 276]
    assert [len(f.data) for f in frames] == [60, 61, 62, 63, 21, 7, 21, 20]
    assert frames[3].ts == T0_NS + 555_000_000  # section 2's interface 0 counts milliseconds
    assert frames[7].ts == T0_NS  # the PB too


@pytest.mark.parametrize("endian", ENDIANS)
@pytest.mark.parametrize("snaplen,origlen,stored,expect", [
    (0, 60, 60, 60),  # no snaplen: the whole body
    (0, 7, 7, 7),  # padding is not data: the original length bounds it
    (21, 60, 21, 21),  # cut to the snaplen; the 3 padding bytes are not data
    (21, 7, 7, 7),
    (64, 100, 64, 64),
    (0, 100, 64, 64),  # body shorter than the original length: what is there
])
def test_pcapng_spb(tmp_path, endian, snaplen, origlen, stored, expect):
    data = payload(3, stored)
    blocks = [g.shb(endian=endian), g.idb(113, snaplen=snaplen, tsresol=9, endian=endian),
              g.spb(data, origlen=origlen, endian=endian)]
    (f,) = read_clean(put(tmp_path, b"".join(blocks)))
    start = len(blocks[0]) + len(blocks[1])
    assert f == Frame(data[:expect], 0, 113, start + 12)


@pytest.mark.parametrize("endian", ENDIANS)
def test_pcapng_spb_uses_interface_zero(tmp_path, endian):
    e = endian
    lay = layout([Piece(g.shb(endian=e)), ng_idb(Iface(101, 9), e), ng_idb(Iface(1), e),
                  ng_spb(Iface(101, 9), payload(1, 30), e), ng_packet(1, Iface(1), T0_NS, payload(2, 30), e)])
    assert read_clean(put(tmp_path, lay.data)) == lay.frames


@pytest.mark.parametrize("endian", ENDIANS)
def test_pcapng_obsolete_packet_block(tmp_path, endian):
    e = endian
    ifs = [Iface(1), Iface(113, 9)]
    lay = layout([Piece(g.shb(endian=e)), ng_idb(ifs[0], e), ng_idb(ifs[1], e),
                  ng_packet(1, ifs[1], T0_NS + 7, payload(1, 5), e, kind="pb"),
                  ng_packet(0, ifs[0], T0_NS + 8000, payload(2, 6), e, kind="pb")])
    frames = read_clean(put(tmp_path, lay.data))
    assert frames == lay.frames
    assert [(f.ts, f.lt) for f in frames] == [(T0_NS + 7, 113), (T0_NS + 8000, 1)]


@pytest.mark.parametrize("endian", ENDIANS)
def test_pcapng_unknown_blocks_skipped(tmp_path, endian):
    lay = layout(skipped_blocks(endian))
    frames = read_clean(put(tmp_path, lay.data))
    assert frames == lay.frames
    assert [f.ts for f in frames] == [T0_NS + 1000, T0_NS + 2000]


@pytest.mark.parametrize("endian", ENDIANS)
def test_pcapng_options_padding(tmp_path, endian):
    """Options of every length 0..9 before if_tsresol: each padded to 32 bits, so a reader that
    forgets the padding misreads the resolution."""
    e = endian
    extra = tuple((g.OPT_COMMENT, b"p" * k) for k in range(10))
    # the padded options first, then if_tsresol and if_tsoffset
    body = struct.pack(e + "HHI", 1, 0, 0) + g.options(*extra, (g.IF_TSRESOL, b"\x09"),
                                                       (g.IF_TSOFFSET, struct.pack(e + "q", 2)), endian=e)
    idb = g.block(g.IDB_TYPE, body, endian=e)
    epb_opts = g.options(*((g.OPT_COMMENT, b"q" * k) for k in range(1, 6)), endian=e)
    blocks = [g.shb(endian=e, opts=g.options((g.OPT_COMMENT, b"abcde"), endian=e)), idb,
              g.epb(0, 123, b"xyz", endian=e, opts=epb_opts), g.epb(0, 456, b"w" * 5, endian=e)]
    frames = read_clean(put(tmp_path, b"".join(blocks)))
    assert [(f.data, f.ts) for f in frames] == [(b"xyz", 2 * 10**9 + 123), (b"w" * 5, 2 * 10**9 + 456)]


@pytest.mark.parametrize("tsresol", TSRESOLS, ids=hex)
@pytest.mark.parametrize("endian", ENDIANS)
def test_pcapng_tsresol(tmp_path, tsresol, endian):
    lay = layout(tsresol_file(tsresol, endian=endian))
    assert read_clean(put(tmp_path, lay.data)) == lay.frames


@pytest.mark.parametrize("tsresol,raw,expect", [
    (6, T0 * 10**6 + 999_999, 1692711000_999999000),
    (9, T0_NS + 999_999_999, 1692711000_999999999),
    (3, T0 * 1000 + 999, 1692711000_999000000),
    (0, T0, 1692711000_000000000),
    (0x94, T0 * 2**20 + 2**20 - 1, 1692711000_999999046),  # floor((2^20-1) * 1e9 / 2^20)
    (0x94, T0 * 2**20 + 1, 1692711000_000000953),
    (0x9E, T0 * 2**30 + 1, 1692711000_000000000),
    (0xA0, T0 * 2**32 + 2**31, 1692711000_500000000),
    (0xA0, T0 * 2**32 + 2**32 - 1, 1692711000_999999999),
    (10, T0 * 10**10 + 9_999_999_999, 1692711000_999999999),
    (12, 10**12 + 999, 1_000000000),
])
def test_pcapng_tsresol_literal(tmp_path, tsresol, raw, expect):
    data = g.shb() + g.idb(1, tsresol=tsresol) + g.epb(0, raw, b"t")
    (f,) = read_clean(put(tmp_path, data))
    assert f.ts == expect


@pytest.mark.parametrize("tsoffset", [0, 1, -1, -86400, T0, -T0, 10**9])
@pytest.mark.parametrize("endian", ENDIANS)
def test_pcapng_tsoffset(tmp_path, tsoffset, endian):
    lay = layout(tsresol_file(9, tsoffset, endian))
    frames = read_clean(put(tmp_path, lay.data))
    assert frames == lay.frames


def test_pcapng_1024_interfaces(tmp_path):
    blocks = [g.shb()] + [g.idb(1 + (i % 2) * 100) for i in range(1024)]
    blocks += [g.epb(1023, 5, b"last"), g.epb(0, 6, b"first")]
    frames = read_clean(put(tmp_path, b"".join(blocks)))
    assert [(f.data, f.lt, f.ts) for f in frames] == [(b"last", 101, 5000), (b"first", 1, 6000)]


def test_pcapng_shb_only(tmp_path):
    assert read_all(put(tmp_path, g.shb())) == Read([], [0], None)


# ------------------------------------------------------------------------------------------ scapy


def test_scapy_files(scapy_corpus):
    for name, (path, expect) in scapy_corpus.items():
        got = [(f.data, f.ts, f.lt) for f in read_clean(path)]
        assert got == expect, name


# --------------------------------------------------------------------------------------- batching


@pytest.mark.parametrize("make", [lambda: classic(), lambda: classic(True, ">"), lambda: multi_iface("<"),
                                  lambda: multi_iface(">")], ids=["pcap-le", "pcap-be", "ng-le", "ng-be"])
def test_small_batches(tmp_path, make):
    lay = layout(make())
    assert len(lay.frames) == 10
    path = put(tmp_path, lay.data)
    big = read_all(path, capacity=4096)
    assert big.counts[-1] == 0
    assert_batches(big.counts[:-1], 10, 4096, len(lay.data))
    with PcapSource(path) as src:
        small = drain(src, capacity=3)
        assert src.recv(FrameBatch(3)) == 0  # stays at the end
    assert small.counts[-1] == 0
    assert_batches(small.counts[:-1], 10, 3, len(lay.data))
    assert small.frames == big.frames == lay.frames


@pytest.mark.parametrize("capacity", [1, 2, 5, 9, 10, 11])
def test_batch_capacities(tmp_path, capacity):
    lay = layout(two_sections())
    r = read_all(put(tmp_path, lay.data), capacity)
    assert r.counts[-1] == 0
    assert_batches(r.counts[:-1], len(lay.frames), capacity, len(lay.data))
    assert r.frames == lay.frames


def test_batch_reused_across_sources(tmp_path):
    """One batch handed to two sources in turn: each recv() points it at its own file."""
    a, b = layout(classic(n=4)), layout(multi_iface())
    pa, pb = put(tmp_path, a.data), put(tmp_path, b.data)
    batch = FrameBatch(64)
    got: dict = {"a": [], "b": []}
    with PcapSource(pa) as sa, PcapSource(pb) as sb:
        while True:  # in turns, one recv() each
            na, nb = sa.recv(batch), 0
            got["a"] += [batch.frame(i) for i in range(na)]
            nb = sb.recv(batch)
            got["b"] += [batch.frame(i) for i in range(nb)]
            if na == nb == 0:
                break
    assert got == {"a": [f.data for f in a.frames], "b": [f.data for f in b.frames]}


# ------------------------------------------------------------------------------------- corruption


def rec(i: int, e: str, n: int = 40, **kw) -> bytes:
    return g.pcap_record(payload(i, n), T0, i, endian=e, **kw)


def big_incl(e: str) -> bytes:
    return g.pcap_record(b"abc", T0, 1, endian=e, incl=0xFFFFFFFF)


# name → (damaged record, what comes after it, keyword of the message)
CLASSIC_DAMAGE = {
    "truncated-record-header-1": (lambda e: rec(9, e)[:1], "header"),
    "truncated-record-header-15": (lambda e: rec(9, e)[:15], "header"),
    "truncated-record-data": (lambda e: rec(9, e)[:-1], "truncated"),
    "truncated-record-no-data": (lambda e: rec(9, e)[:16], "truncated"),
    "incl-past-eof": (lambda e: rec(9, e, incl=41), "truncated"),
    "record-over-262144": (lambda e: rec(9, e, n=MAX_FRAME + 1) + rec(10, e), "262144"),
    "record-incl-0xffffffff": (lambda e: big_incl(e) + rec(10, e), "262144"),
}


@pytest.mark.parametrize("capacity", [1, 4096])
@pytest.mark.parametrize("nano", [False, True], ids=["us", "ns"])
@pytest.mark.parametrize("endian", ENDIANS)
@pytest.mark.parametrize("name", list(CLASSIC_DAMAGE))
def test_classic_damage(tmp_path, name, endian, nano, capacity):
    make, keyword = CLASSIC_DAMAGE[name]
    good = layout(classic(nano, endian, n=3, lengths=[60, 0, 17]))
    path = put(tmp_path, good.data + make(endian))
    assert_damage(path, good.frames, len(good.data), keyword, capacity)


def assert_damage(path: str, before: list[Frame], offset: int, keyword: str, capacity: int) -> None:
    """The frames before the damage come first (in full batches), then CorruptInput, every time."""
    with PcapSource(path) as src:
        r = drain(src, capacity)
        assert r.frames == before
        assert_batches(r.counts, len(before), capacity, os.path.getsize(path))
        assert_corrupt_at(r.error, offset, keyword)
        with pytest.raises(CorruptInput) as again:  # it stays broken
            src.recv(FrameBatch(capacity))
        assert again.value.offset == offset


def ng_base(e: str) -> list[Piece]:
    ifs = [Iface(1), Iface(113, 9)]
    return [Piece(g.shb(endian=e)), ng_idb(ifs[0], e), ng_idb(ifs[1], e),
            ng_packet(0, ifs[0], T0_NS + 1000, payload(1, 50), e),
            ng_packet(1, ifs[1], T0_NS + 2, payload(2, 51), e)]


def epb(e: str, ifid: int = 0, n: int = 45, **kw) -> bytes:
    return g.epb(ifid, 77, payload(7, n), endian=e, **kw)


EPB_LEN = 12 + 20 + 48  # epb(e) with 45 bytes of data


def idb_bad_option(e: str) -> bytes:
    body = struct.pack(e + "HHI", 1, 0, 0) + struct.pack(e + "HH", g.IF_NAME, 100) + b"eth0"
    return g.block(g.IDB_TYPE, body, endian=e)


# name → (valid pieces after the base, damaged block, what comes after it, keyword)
NG_DAMAGE = {
    "block-length-not-multiple-of-4": ([], lambda e: epb(e, length=EPB_LEN + 2), "block length"),
    "block-length-1-short": ([], lambda e: epb(e, length=EPB_LEN - 1), "block length"),
    "block-length-8": ([], lambda e: epb(e, length=8), "block length"),
    "block-length-0": ([], lambda e: epb(e, length=0), "block length"),
    "trailer-mismatch": ([], lambda e: epb(e, trailer=EPB_LEN + 4) + epb(e), "trailer"),
    "trailer-zero": ([], lambda e: epb(e, trailer=0) + epb(e), "trailer"),
    "bad-byte-order-magic": ([], lambda e: g.shb(endian=e, bom=0xDEADBEEF) + g.idb(1, endian=e) + epb(e),
                             "byte-order"),
    "epb-undeclared-interface": ([], lambda e: epb(e, ifid=2) + epb(e), "interface"),
    "epb-interface-2^32-1": ([], lambda e: epb(e, ifid=0xFFFFFFFF), "interface"),
    "pb-undeclared-interface": ([], lambda e: g.pb(2, 5, b"abc", endian=e), "interface"),
    "epb-interface-of-previous-section": (lambda e: [Piece(g.shb(endian=e))], lambda e: epb(e, ifid=0),
                                          "interface"),
    "spb-without-idb": (lambda e: [Piece(g.shb(endian=e))], lambda e: g.spb(b"abcd", endian=e), "interface"),
    "block-past-eof": ([], lambda e: epb(e)[:-4], "truncated"),
    "block-past-eof-header-only": ([], lambda e: epb(e)[:12], "truncated"),
    "block-length-huge": ([], lambda e: epb(e, length=0xFFFFFFF0) + epb(e), "truncated"),
    "truncated-block-header": ([], lambda e: epb(e)[:11], "header"),
    "truncated-block-header-1": ([], lambda e: epb(e)[:1], "header"),
    "second-shb-truncated": ([], lambda e: g.shb(endian=e)[:20], "truncated"),
    "epb-body-too-short": ([], lambda e: g.block(g.EPB_TYPE, bytes(16), endian=e), "body"),
    "epb-caplen-past-block": ([], lambda e: epb(e, caplen=49) + epb(e), "body"),
    "epb-caplen-huge": ([], lambda e: epb(e, caplen=0xFFFFFFFF) + epb(e), "body"),
    "pb-body-too-short": ([], lambda e: g.block(g.PB_TYPE, bytes(8), endian=e), "body"),
    "spb-body-empty": ([], lambda e: g.block(g.SPB_TYPE, b"", endian=e), "body"),
    "idb-body-too-short": ([], lambda e: g.block(g.IDB_TYPE, bytes(4), endian=e) + epb(e), "body"),
    "idb-option-past-block": ([], lambda e: idb_bad_option(e) + epb(e), "option"),
}


@pytest.mark.parametrize("capacity", [1, 4096])
@pytest.mark.parametrize("endian", ENDIANS)
@pytest.mark.parametrize("name", list(NG_DAMAGE))
def test_pcapng_damage(tmp_path, name, endian, capacity):
    extra, make, keyword = NG_DAMAGE[name]
    good = layout(ng_base(endian) + (extra(endian) if callable(extra) else extra))
    path = put(tmp_path, good.data + make(endian))
    assert_damage(path, good.frames, len(good.data), keyword, capacity)


@pytest.mark.parametrize("endian", ENDIANS)
def test_pcapng_first_shb_bad_byte_order(tmp_path, endian):
    path = put(tmp_path, g.shb(endian=endian, bom=0x12345678) + g.idb(1) + epb("<"))
    assert_damage(path, [], 0, "byte-order", 16)


def test_pcapng_too_many_interfaces(tmp_path):
    good = [g.shb()] + [g.idb(1) for _ in range(1024)] + [epb("<", ifid=1023)]
    offset = sum(map(len, good))
    path = put(tmp_path, b"".join(good) + g.idb(1) + epb("<"))
    with PcapSource(path) as src:
        r = drain(src)
    assert [f.data for f in r.frames] == [payload(7, 45)]
    assert_corrupt_at(r.error, offset, "interfaces")


@pytest.mark.parametrize("size", [4, 5, 16, 23])
@pytest.mark.parametrize("nano", [False, True], ids=["us", "ns"])
@pytest.mark.parametrize("endian", ENDIANS)
def test_classic_truncated_file_header(tmp_path, size, nano, endian):
    """A pcap magic but less than the 24-byte file header: CorruptInput at offset 0, no frames."""
    path = put(tmp_path, g.pcap_header(nano=nano, endian=endian)[:size])
    assert_damage(path, [], 0, "header", 8)


@pytest.mark.parametrize("size", [4, 8, 11])
def test_pcapng_truncated_shb_header(tmp_path, size):
    assert_damage(put(tmp_path, g.shb()[:size]), [], 0, "header", 8)


# --------------------------------------------------------------------------------- refused files


@pytest.mark.parametrize("data", [
    b"GIF89a" + bytes(100),
    bytes(100),
    b"\xd4\xc3\xb2\xa2" + bytes(100),  # one bit off the µs magic
    b"\x0a\x0d\x0d\x0b" + bytes(100),  # one bit off the SHB type
    b"\x1f\x8b\x08\x00" + bytes(100),  # a gzipped capture
    b"\xd4", b"\xd4\xc3", b"\xd4\xc3\xb2", b"\x0a\x0d\x0d",  # shorter than any magic
], ids=lambda d: d[:6].hex())
def test_not_a_capture(tmp_path, data):
    path = put(tmp_path, data)
    with pytest.raises(SourceError) as exc:
        PcapSource(path)
    assert not isinstance(exc.value, CorruptInput)
    msg = assert_one_line(exc.value)
    assert path in msg and "not a pcap" in msg


def test_empty_file(tmp_path):
    path = put(tmp_path, b"")
    with pytest.raises(SourceError) as exc:
        PcapSource(path)
    assert not isinstance(exc.value, CorruptInput)
    msg = assert_one_line(exc.value)
    assert path in msg and "empty" in msg


def test_missing_file(tmp_path):
    path = str(tmp_path / "no" / "such.pcap")
    with pytest.raises(SourceError) as exc:
        PcapSource(path)
    assert path in assert_one_line(exc.value)


def test_directory_is_refused(tmp_path):
    with pytest.raises(SourceError) as exc:
        PcapSource(str(tmp_path))
    assert str(tmp_path) in assert_one_line(exc.value)


def test_recv_after_close(tmp_path):
    path = put(tmp_path, layout(classic(n=2)).data)
    src = PcapSource(path)
    batch = FrameBatch(1)
    assert src.recv(batch) == 1
    src.close()
    assert src.bytes_total == 0
    with pytest.raises(SourceError) as exc:
        src.recv(batch)
    assert "closed" in assert_one_line(exc.value)
    assert batch.frame(0) == payload(0, 60)  # the frame handed out before stays readable


@pytest.mark.parametrize("head,fmt", [
    (g.pcap_header(), "pcap"), (g.pcap_header(endian=">"), "pcap"), (g.pcap_header(nano=True), "pcap"),
    (g.pcap_header(nano=True, endian=">"), "pcap"), (g.shb(), "pcapng"), (g.shb(endian=">"), "pcapng"),
    (b"\xa1\xb2", None), (b"", None), (b"\x4d\x3c\xb2\xa2", None), (b"\x0a\x0d\x0d\x0b", None),
])
def test_sniff(head, fmt):
    assert sniff(head) == fmt


# ------------------------------------------------------------------------------------------ tshark


def tshark_frames(path: str) -> list[tuple[int, int, int]]:
    """(epoch ns, unit, captured length) of each frame as tshark reads it; `unit` is the precision
    tshark printed (10^(9 - digits) ns). No time at all (an SPB) counts as 0."""
    out = subprocess.run(
        [TSHARK, "-n", "-r", path, "-T", "fields", "-E", "separator=/t", "-e", "frame.time_epoch",
         "-e", "frame.cap_len"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, f"tshark failed on {path}: {out.stderr.strip()}"
    rows = []
    for line in out.stdout.splitlines():
        t, caplen = line.split("\t")
        if not t:
            rows.append((0, 1, int(caplen)))
            continue
        d = Decimal(t)
        digits = max(0, -d.as_tuple().exponent)
        assert digits <= 9, t
        rows.append((int(d.scaleb(9)), 10 ** (9 - digits), int(caplen)))
    return rows


def assert_matches_tshark(path: str) -> list[Frame]:
    frames = read_clean(path)
    oracle = tshark_frames(path)
    assert len(frames) == len(oracle)
    ours = [(f.ts - f.ts % unit, unit, len(f.data)) for f, (_, unit, _) in zip(frames, oracle, strict=True)]
    assert ours == oracle
    return frames


@needs_tshark
@pytest.mark.parametrize(
    "path", OMI,
    ids=lambda p: p and os.path.relpath(p, OMI_DIR),
)
def test_omi_matches_tshark(path):
    frames = assert_matches_tshark(path)
    assert frames and all(f.lt == 1 and f.ts > T0_NS for f in frames)


# Where tshark 4.0 itself is wrong: it mis-scales 10^-11 s and finer units (5.123456789012 s stored
# at 10^-12 shows as 5.012776324), so those files are checked against pcapgen's arithmetic only.
TSHARK_WRONG = {"pcapng-tsresol-0xc": "tshark 4.0 mis-scales if_tsresol 10^-12"}


@needs_tshark
@pytest.mark.parametrize("name", [n for n in HAND if n not in TSHARK_WRONG])
def test_generated_matches_tshark(tmp_path, name):
    lay = layout(HAND[name]())
    assert assert_matches_tshark(put(tmp_path, lay.data)) == lay.frames


@needs_tshark
def test_scapy_matches_tshark(scapy_corpus):
    for path, _ in scapy_corpus.values():
        assert_matches_tshark(path)


# -------------------------------------------------------------------------------------- robustness

# Valid bases for damage: small files (truncation is tried at every byte), plus bare headers.
BASES = {
    "pcap-us-le": lambda: classic(n=6, lengths=[60, 0, 1, 14, 33, 2]),
    "pcap-ns-be": lambda: classic(True, ">", n=6, lengths=[60, 0, 1, 14, 33, 2]),
    "pcapng-multi-le": lambda: multi_iface("<")[:12],
    "pcapng-multi-be": lambda: multi_iface(">")[:12],
    "pcapng-2sections-le-be": lambda: two_sections("<", ">"),
    "pcapng-skipped-be": lambda: skipped_blocks(">"),
    "pcap-header": lambda: [Piece(g.pcap_header())],
    "pcap-header-ns-be": lambda: [Piece(g.pcap_header(nano=True, endian=">"))],
    "pcapng-shb-idb": lambda: [Piece(g.shb()), ng_idb(Iface(1), "<")],
    "pcapng-shb-idb-be": lambda: [Piece(g.shb(endian=">")), ng_idb(Iface(1, 9), ">")],
}
BASE_LAYOUTS = {name: layout(make()) for name, make in BASES.items()}
HEADER_LEN = {True: g.PCAP_HEADER_LEN, False: 0}


def read_damaged(path: str, size: int) -> Read | None:
    """Read a damaged file: refused at open (None) or frames then maybe CorruptInput; nothing else."""
    try:
        src = PcapSource(path)
    except SourceError as e:
        assert_one_line(e)
        return None
    with src:
        r = drain(src, 7)
    if r.error is not None:
        assert 0 <= r.error.offset <= size
        assert_corrupt_at(r.error, r.error.offset)
    return r


def prefix_frames(lay: Layout, limit: int) -> list[Frame]:
    """Frames from pieces that end at or before byte `limit`: untouched by damage from there on."""
    return [f for f, end in zip(lay.frames, lay.frame_ends, strict=True) if end <= limit]


@pytest.mark.parametrize("name", [n for n in BASES if not n.endswith(("header", "header-ns-be"))])
def test_truncation_at_every_byte(scratch, name):
    """Cut anywhere from the end of the file header on: the frames of every complete record/block,
    then (unless the cut falls on a boundary) CorruptInput at the start of the cut one. The cuts
    inside the pcap file header have their own test (test_classic_truncated_file_header)."""
    lay = BASE_LAYOUTS[name]
    first = HEADER_LEN[name.startswith("pcap-")]
    for cut in range(first, len(lay.data) + 1):
        if cut < 4:
            continue  # refused at open: test_not_a_capture / test_empty_file
        path = put(scratch, lay.data[:cut])
        r = read_all(path)
        os.unlink(path)
        assert r.frames == prefix_frames(lay, cut), cut
        k = next((i for i, (s, e) in enumerate(zip(lay.starts, lay.ends, strict=True)) if s < cut < e), None)
        if k is None:
            assert r.error is None, (cut, str(r.error))
        else:
            assert_corrupt_at(r.error, lay.starts[k])


ROBUST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ROBUST
@given(name=st.sampled_from(list(BASES)), tail=st.binary(min_size=1, max_size=400))
def test_random_bytes_after_valid_file(scratch, name, tail):
    lay = BASE_LAYOUTS[name]
    data = lay.data + tail
    path = put(scratch, data)
    try:
        r = read_damaged(path, len(data))
    finally:
        os.unlink(path)
    assert r is not None
    assert r.frames[: len(lay.frames)] == lay.frames  # the valid part is all delivered first


# layouts with something after their file header (section header block) to damage
DAMAGEABLE = [n for n, lay in BASE_LAYOUTS.items() if len(lay.data) > lay.ends[0]]


@ROBUST
@given(data=st.data())
def test_random_bit_flips(scratch, data):
    """Flips after the file header: opened, and every frame of a record before the first flip comes out
    intact (then anything, or CorruptInput at a sound offset). Flips in the header: test_damaged_magic."""
    name = data.draw(st.sampled_from(DAMAGEABLE))
    lay = BASE_LAYOUTS[name]
    buf = bytearray(lay.data)
    bits = st.tuples(st.integers(lay.ends[0], len(buf) - 1), st.integers(0, 7))
    flips = data.draw(st.lists(bits, min_size=1, max_size=6))
    for pos, bit in flips:
        buf[pos] ^= 1 << bit
    path = put(scratch, bytes(buf))
    try:
        r = read_damaged(path, len(buf))
    finally:
        os.unlink(path)
    intact = prefix_frames(lay, min(p for p, _ in flips))
    assert r is not None and r.frames[: len(intact)] == intact


@ROBUST
@given(data=st.data())
def test_random_truncation_and_flips(scratch, data):
    """Cut after the file header, flips before the cut, junk after it: opened, every frame of a record before
    the first damage intact. (The header cuts are test_classic_truncated_file_header's.)"""
    name = data.draw(st.sampled_from(DAMAGEABLE))
    lay = BASE_LAYOUTS[name]
    cut = data.draw(st.integers(lay.ends[0] + 1, len(lay.data)))
    buf = bytearray(lay.data[:cut])
    flips = data.draw(st.lists(st.tuples(st.integers(lay.ends[0], cut - 1), st.integers(0, 7)), max_size=4))
    for pos, bit in flips:
        buf[pos] ^= 1 << bit
    buf += data.draw(st.binary(max_size=64))
    path = put(scratch, bytes(buf))
    try:
        r = read_damaged(path, len(buf))
    finally:
        os.unlink(path)
    intact = prefix_frames(lay, min([cut] + [p for p, _ in flips]))
    assert r is not None and r.frames[: len(intact)] == intact


@pytest.mark.parametrize("name", list(BASES))
def test_damaged_magic_is_refused_in_one_line(scratch, name):
    buf = bytearray(BASE_LAYOUTS[name].data)
    buf[0] ^= 0x40
    path = put(scratch, bytes(buf))
    try:
        assert read_damaged(path, len(buf)) is None  # not a pcap or pcapng file: refused at open, one line
    finally:
        os.unlink(path)


@pytest.mark.parametrize("shb, needle", [
    (struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 2, 0, -1) + struct.pack("<I", 28), "major version"),
    (struct.pack("<III", 0x0A0D0D0A, 16, 0x1A2B3C4D) + struct.pack("<I", 16), "too short"),
], ids=["version-2", "shb-16-bytes"])
def test_bad_section_header_is_reported_at_offset_0(tmp_path, shb, needle):
    path = tmp_path / "bad.pcapng"
    path.write_bytes(shb)
    src = PcapSource(str(path))
    with pytest.raises(CorruptInput, match=needle) as e:
        src.recv(FrameBatch(4))
    assert e.value.offset == 0
