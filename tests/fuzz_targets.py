"""Fuzz targets: every parser of untrusted bytes, each as `run(data) -> signature`, for tests/fuzz.py.

A target takes one input and either returns a signature (a small tuple saying which counters and paths
the input reached: an input with a signature not seen before is kept, so the fuzzer drifts towards
new behaviour) or raises one of its `allowed` errors (the documented one-line errors, e.g. a capture
damaged part-way). Anything else that escapes is a bug, and so is a broken invariant: the targets
check that every frame, packet and message ends in exactly one counter, and that the compiled
decoders agree with the pure-Python references on which messages decode and to what.

Targets: pcap (pcap/pcapng reader → frames → MoldUDP64 → ITCH, the whole `xdpfeed decode` path),
frames (link, IPv4 and UDP headers of single frames), moldudp64 (MoldUDP64 packets behind a sound
UDP header), itch (a NASDAQ binary ITCH file through the decoder and the order book), ouch42 / ouch50
(SoupBinTCP streams of both directions, compiled vs reference), soupbintcp (the compiled Sequenced
Data walk vs a Python walk of the same packets) and config (the TOML feed configuration loader).
"""

import os
import struct
import tempfile

import numpy as np

from xdpfeed.capture.batch import LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, FrameBatch
from xdpfeed.capture.errors import CorruptInput, SourceError
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.feed import config as cfgmod
from xdpfeed.multicast.itch.decoder import ItchTables, decode_batch
from xdpfeed.multicast.itch.file import decode_file
from xdpfeed.multicast.itch.input_format import looks_like_itch
from xdpfeed.multicast.itch.pipeline import index_batches
from xdpfeed.multicast.ouch import decoder as ouch
from xdpfeed.multicast.ouch import reference as ouch_reference
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire import soupbintcp as sb
from xdpfeed.multicast.wire.moldudp64 import MAX_BLOCKS_PER_PACKET, PacketIndex, Sessions, extract_batch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PCAPS = os.path.join(REPO, "pcaps")
SCRATCH = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir(),
                       f"xdpfeed-fuzz-{os.getpid()}")
FATES = (C.NON_IPV4, C.NON_UDP, C.IP_FRAGMENTS, C.TRUNCATED_FRAMES, C.BAD_HEADERS, C.UNSUPPORTED_LINKTYPE,
         C.FILTERED, C.PACKETS, C.MALFORMED_PACKETS, C.SESSIONS_OVERFLOW)
LINKTYPES = (LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, 0xBEEF)
NOGROUP = np.zeros((0, 2), dtype=np.int64)


class Broken(AssertionError):
    """An invariant does not hold: a bug even though nothing raised."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Broken(what)


def _scratch(data: bytes, suffix: str) -> str:
    path = SCRATCH + suffix
    with open(path, "wb") as f:
        f.write(data)
    return path


def _files(folder: str, *exts) -> list[bytes]:
    out = []
    for root, _, names in os.walk(folder):
        for n in sorted(names):
            if n.endswith(exts):
                with open(os.path.join(root, n), "rb") as f:
                    out.append(f.read())
    return out


def _nonzero(cnt) -> tuple:
    return tuple(int(i) for i in np.flatnonzero(cnt))


# ------------------------------------------------------------------------------------------ pcap
def pcap_seeds() -> list[bytes]:
    return [d for d in _files(PCAPS, ".pcap", ".pcapng") if len(d) < 64 << 10]


_SHARED = {}


def _tables() -> ItchTables:
    """One table set for every input (a maximal packet's worth of rows is ~30 MB: too much to make per input)."""
    if "itch" not in _SHARED:
        _SHARED["itch"] = ItchTables(MAX_BLOCKS_PER_PACKET)
    t = _SHARED["itch"]
    t.clear()
    return t


def pcap_run(data: bytes) -> tuple:
    """A capture file through the reader, frames, MoldUDP64 and ITCH, as `xdpfeed decode` runs them."""
    cnt, tables, n = C.new(), _tables(), 0
    try:
        for buf, index in index_batches(_scratch(data, ".pcap"), NOGROUP, Sessions(), cnt):
            row = 0
            while row < index.rows:
                tables.clear()
                row = decode_batch(buf, index, row, tables, cnt)
                n += tables.count
    finally:
        check(cnt[C.FRAMES] == sum(int(cnt[i]) for i in FATES), "a frame in no counter or in two")
        check(cnt[C.MESSAGES] == cnt[C.DECODED] + cnt[C.UNKNOWN_TYPES] + cnt[C.BAD_LENGTH_MESSAGES],
              "a message in no counter or in two")
    check(n == cnt[C.DECODED], "decoded rows differ from the decoded counter")
    return _nonzero(cnt)


# ---------------------------------------------------------------------------------------- frames
def run_frames(frames: list[bytes], linktypes: list[int]):
    """Frames in one buffer through extract + decode; the counters (each frame in exactly one fate)."""
    batch = FrameBatch(max(1, len(frames)))
    data = b"".join(frames)
    batch.data = np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, np.uint8)
    pos = 0
    for i, (f, lt) in enumerate(zip(frames, linktypes, strict=True)):
        batch.offset[i], batch.length[i], batch.linktype[i] = pos, len(f), lt
        pos += len(f)
    batch.count = len(frames)
    cnt, sessions, index, tables = C.new(), Sessions(), PacketIndex(), _tables()
    start = 0
    while start < batch.count:
        start = extract_batch(batch, start, NOGROUP, sessions, index, cnt)
        row = 0
        while row < index.rows:
            tables.clear()
            row = decode_batch(batch.data, index, row, tables, cnt)
    check(cnt[C.FRAMES] == len(frames) == sum(int(cnt[i]) for i in FATES), "a frame in no counter or in two")
    check(cnt[C.MESSAGES] == cnt[C.DECODED] + cnt[C.UNKNOWN_TYPES] + cnt[C.BAD_LENGTH_MESSAGES],
          "a message in no counter or in two")
    return cnt


def _split_frames(data: bytes) -> tuple[list[bytes], list[int]]:
    """Input layout: [linktype selector][u16 length][frame]...; the rest is the last frame."""
    if not data:
        return [], []
    frames, lts, pos = [], [], 0
    while pos < len(data) and len(frames) < 64:
        lt = LINKTYPES[data[pos] % len(LINKTYPES)]
        if pos + 3 > len(data):
            frames.append(data[pos + 1 :])
            lts.append(lt)
            break
        n = struct.unpack_from(">H", data, pos + 1)[0]
        frames.append(data[pos + 3 : pos + 3 + n])
        lts.append(lt)
        pos += 3 + n
    return frames, lts


def _pack_frames(frames: list[bytes], lt_index: int = 0) -> bytes:
    return b"".join(bytes([lt_index]) + struct.pack(">H", len(f)) + f for f in frames)


def _capture_frames(path: str, limit: int = 40) -> list[bytes]:
    from xdpfeed.capture.pcapfile import PcapSource

    out = []
    with PcapSource(path) as src:
        b = FrameBatch(limit)
        if src.recv(b):
            out = [bytes(b.frame(i)) for i in range(b.count)]
            src.release(b)
    return out


def frames_seeds() -> list[bytes]:
    seeds = []
    for name in ("all_types.pcap", "malformed.pcap"):
        fr = _capture_frames(os.path.join(PCAPS, "generated", name))
        seeds += [_pack_frames(fr[:4]), _pack_frames(fr[4:8])]
    return seeds


def frames_run(data: bytes) -> tuple:
    frames, lts = _split_frames(data)
    return _nonzero(run_frames(frames, lts))


# ------------------------------------------------------------------------------------- moldudp64
_UDP_HEAD = bytes.fromhex("01005e360c6f020000000001" "0800")


def _udp_frame(payload: bytes) -> bytes:
    """A sound Ethernet/IPv4/UDP header to 233.54.12.111:26477 around the payload (checksums 0)."""
    udp = struct.pack(">HHHH", 40000, 26477, 8 + len(payload), 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0x4000, 64, 17, 0, bytes([10, 9, 9, 9]),
                     bytes([233, 54, 12, 111]))
    return _UDP_HEAD + ip + udp + payload


def moldudp64_seeds() -> list[bytes]:
    out = []
    for fr in _capture_frames(os.path.join(PCAPS, "generated", "all_types.pcap")):
        k = fr.find(b"SESSION")
        if k < 0:
            k = fr.find(b"C3        ")
        if k >= 0:
            out.append(fr[k:])
    return out


def moldudp64_run(data: bytes) -> tuple:
    cnt = run_frames([_udp_frame(data[:65000])], [LINKTYPE_ETHERNET])
    check(cnt[C.PACKETS] + cnt[C.MALFORMED_PACKETS] == 1, "a UDP packet neither sound nor malformed")
    return _nonzero(cnt)


# ------------------------------------------------------------------------------------------ itch
def _whole_records(day: bytes, start: int, size: int) -> bytes:
    """The [uint16 length][message] records that lie wholly in day[start : start + size] (start on a record)."""
    pos = start
    while pos + 2 <= len(day) and pos + 2 + int.from_bytes(day[pos : pos + 2], "big") <= start + size:
        pos += 2 + int.from_bytes(day[pos : pos + 2], "big")
    return day[start:pos]


def itch_seeds() -> list[bytes]:
    from xdpfeed.multicast.exchange import synthetic

    records, _ = synthetic.generate(1100, seed=3)
    day = bytes(records)
    middle = len(_whole_records(day, 0, len(day) // 2))
    return [_whole_records(day, 0, 4000), _whole_records(day, middle, 3000), _whole_records(day, 0, 600)]


def itch_run(data: bytes) -> tuple:
    """A NASDAQ binary ITCH file through the decoder, and the same bytes through the order book."""
    path = _scratch(data, ".itch")
    cnt, tables, damage = C.new(), _tables(), None
    try:
        if looks_like_itch(data[:256]):
            for _ in decode_file(path, tables, cnt, gz=False):
                pass
    except CorruptInput as e:  # documented: raised after everything before the damage was decoded
        damage = e
    check(cnt[C.MESSAGES] == cnt[C.DECODED] + cnt[C.UNKNOWN_TYPES] + cnt[C.BAD_LENGTH_MESSAGES],
          "a record in no counter or in two")
    book = _SHARED.get("book")
    _SHARED["book_inputs"] = n = _SHARED.get("book_inputs", 0) + 1
    if book is None or n % 512 == 0:  # one book takes many inputs (more state to reach); fresh now and then
        book = _SHARED["book"] = OrderBook(window=1 << 12, hash_orders=1 << 8, levels=1 << 10, events=1 << 8)
    before = book.stat()
    buf = np.frombuffer(data, dtype=np.uint8)
    used = book.apply_stream(buf)
    check(0 <= used <= buf.size, "the book read past its input")
    book.checksum()
    if damage is not None:
        raise damage
    return _nonzero(cnt) + tuple(sorted(k for k, v in book.stat().items() if v != before.get(k)))


# ------------------------------------------------------------------------------------------ ouch
def _soup_streams(path: str) -> list[bytes]:
    """The SoupBinTCP byte stream of each direction of each session in a capture."""
    from xdpfeed.multicast.ouch import capture as ouch_capture

    sessions, _, _ = ouch_capture.find_sessions(path)
    return [b"".join((len(p.payload) + 1).to_bytes(2, "big") + bytes([p.ptype]) + p.payload for p in side.packets)
            for s in sessions for side in s.sides]


def ouch_seeds(version: str) -> list[bytes]:
    seeds = []
    for raw in _soup_streams(os.path.join(PCAPS, "generated", f"ouch{version.replace('.', '')}_session.pcap")):
        seeds += [raw[:600], raw[600:1400]]
    if version == "5.0":
        for root, _, names in os.walk(os.path.join(PCAPS, "omi", "ouch50")):
            seeds += [raw for n in sorted(names) if n.endswith(".pcap") for raw in _soup_streams(os.path.join(root, n))]
    return seeds


def _ouch_run(version: str, data: bytes) -> tuple:
    sig = []
    for direction in ("in", "out"):
        tables = ouch.OuchTables(version, direction, capacity=64)
        want = []  # the reference decoder's view of the same packets
        pos, bad_frame = 0, False
        while True:
            try:
                pkt = sb.next_packet(data, pos, len(data))
            except ValueError:
                bad_frame = True
                break
            if pkt is None:
                break
            ptype, start, length, pos = pkt
            if ptype == (ord("U") if direction == "in" else ord("S")):
                try:
                    want.append(ouch_reference.decode(version, direction, data[start : start + length]))
                except ouch_reference.BadAppendage:
                    want.append(None)  # the compiled decoder keeps the fixed fields and flags the appendage
                except ValueError:
                    pass
        got, p = [], 0
        try:
            while True:
                p2 = ouch.decode_soup_stream(data, p, len(data), tables, direction)
                got += tables.to_dicts()
                tables.clear()
                if p2 == p or p2 >= len(data):
                    break
                p = p2
        except ValueError:
            got += tables.to_dicts()  # what came before the broken frame
            check(bad_frame, "the compiled walk stopped on a frame the Python walk accepts")
        check(len(got) == len(want), f"compiled and reference decoders disagree on what decodes ({direction})")
        for g, w in zip(got, want, strict=True):
            if w is None:
                check(g.get("appendage_malformed") is True, f"a malformed appendage not flagged ({direction})")
            else:
                check(g == w, f"compiled and reference decoders disagree ({direction}): {g} != {w}")
        sig += [direction] + [k for k, v in tables.counts().items() if v]
    return tuple(sig)


def ouch42_run(data: bytes) -> tuple:
    return _ouch_run("4.2", data)


def ouch50_run(data: bytes) -> tuple:
    return _ouch_run("5.0", data)


# ------------------------------------------------------------------------------------ soupbintcp
def soupbintcp_seeds() -> list[bytes]:
    return ouch_seeds("5.0")[:4] + [sb.encode_login_request("USER01", "pw", b"", 7) + sb.SERVER_HEARTBEAT_PACKET +
                                    b"".join(sb.encode_sequenced(bytes([65 + i]) * i) for i in range(1, 9))]


def soupbintcp_run(data: bytes) -> tuple:
    """The compiled Sequenced Data walk against a Python walk of the same bytes."""
    buf = np.frombuffer(data, dtype=np.uint8)
    out = np.zeros(len(data) + 2, dtype=np.uint8)
    pos, out_pos, n = sb.sequenced_to_blocks(buf, 0, buf.size, out, 0)
    want, p = [], 0
    while True:  # the 'S' packets at the front, as the Python walk sees them
        try:
            pkt = sb.next_packet(data, p, len(data))
        except ValueError:
            break
        if pkt is None or pkt[0] != ord("S"):
            break
        ptype, start, length, p = pkt
        want.append(data[start : start + length])
    check(n == len(want) and pos == (sum(len(w) + 3 for w in want)), "walks disagree on the packets")
    blocks = b"".join(len(w).to_bytes(2, "big") + w for w in want)
    check(bytes(out[:out_pos]) == blocks, "blocks differ from the packets")
    for ptype in (ord("A"), ord("L")):  # the control-packet parsers: ValueError only
        for pk in _packets_of(data, ptype):
            try:
                (sb.parse_login_accepted if ptype == ord("A") else sb.parse_login_request)(pk)
            except ValueError:
                pass
    return (min(n, 8), pos == len(data))


def _packets_of(data: bytes, ptype: int) -> list[bytes]:
    out, p = [], 0
    while True:
        try:
            pkt = sb.next_packet(data, p, len(data))
        except ValueError:
            return out
        if pkt is None:
            return out
        t, start, length, p = pkt
        if t == ptype:
            out.append(data[start : start + length])


# ---------------------------------------------------------------------------------------- config
def config_seeds() -> list[bytes]:
    doc = cfgmod.__doc__
    example = doc[doc.index("```toml") + 7 : doc.index("```", doc.index("```toml") + 7)]
    return [example.encode(), b"[feed]\nline_a = 'udp:239.1.1.1:5000@lo'\n[recovery]\ndeadline = 2.5\n",
            b"[sequencer]\nhold_messages = 4096\nslot_bytes = 64\n[metrics]\naddr = 'off'\n"]


def config_run(data: bytes) -> tuple:
    cfg = cfgmod.load(_scratch(data, ".toml"))
    return (bool(cfg.line_a), bool(cfg.replay), bool(cfg.rerequest))


TARGETS = {
    "pcap": (pcap_seeds, pcap_run, (SourceError, CorruptInput)),
    "frames": (frames_seeds, frames_run, ()),
    "moldudp64": (moldudp64_seeds, moldudp64_run, ()),
    "itch": (itch_seeds, itch_run, (CorruptInput,)),
    "ouch42": (lambda: ouch_seeds("4.2"), ouch42_run, ()),
    "ouch50": (lambda: ouch_seeds("5.0"), ouch50_run, ()),
    "soupbintcp": (soupbintcp_seeds, soupbintcp_run, ()),
    "config": (config_seeds, config_run, (cfgmod.ConfigError,)),
}


def cleanup() -> None:
    for suffix in (".pcap", ".itch", ".toml"):
        try:
            os.unlink(SCRATCH + suffix)
        except FileNotFoundError:
            pass
