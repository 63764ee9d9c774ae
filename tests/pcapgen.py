"""Hand-built pcap and pcapng bytes for tests.

Only `struct` is used, never the reader under test, so a file built here is an independent statement
of what the formats say (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html and
draft-ietf-opsawg-pcapng). Every function returns bytes; a test concatenates them and knows the
byte offset of each piece from the lengths. Arguments that override a length or a magic exist to
build damaged files.
"""

import struct

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAP_HEADER_LEN = 24
PCAP_RECORD_HEADER_LEN = 16

SHB_TYPE = 0x0A0D0D0A
BYTE_ORDER_MAGIC = 0x1A2B3C4D
IDB_TYPE = 1
PB_TYPE = 2  # obsolete Packet Block
SPB_TYPE = 3
NRB_TYPE = 4
ISB_TYPE = 5
EPB_TYPE = 6
CUSTOM_TYPE = 0x00000BAD

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
IF_NAME = 2
IF_TSRESOL = 9
IF_TSOFFSET = 14
EPB_FLAGS = 2
ISB_IFRECV = 4


def pad4(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


# ---------------------------------------------------------------------------------------- classic


def pcap_header(*, nano: bool = False, endian: str = "<", linktype: int = 1, snaplen: int = 262144,
                magic: int | None = None) -> bytes:
    """24-byte global header: magic, version 2.4, thiszone, sigfigs, snaplen, linktype (+FCS bits)."""
    if magic is None:
        magic = PCAP_MAGIC_NS if nano else PCAP_MAGIC_US
    return struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(data: bytes, sec: int, frac: int, *, endian: str = "<", incl: int | None = None,
                orig: int | None = None) -> bytes:
    """16-byte record header plus the data; `incl` overrides the captured length field."""
    incl = len(data) if incl is None else incl
    orig = len(data) if orig is None else orig
    return struct.pack(endian + "IIII", sec, frac, incl, orig) + data


def pcap_file(packets, *, nano: bool = False, endian: str = "<", linktype: int = 1,
              snaplen: int = 262144) -> bytes:
    """packets: iterable of (sec, frac, data) where frac is µs (or ns when `nano`)."""
    out = [pcap_header(nano=nano, endian=endian, linktype=linktype, snaplen=snaplen)]
    out += [pcap_record(data, sec, frac, endian=endian) for sec, frac, data in packets]
    return b"".join(out)


# ----------------------------------------------------------------------------------------- pcapng


def option(code: int, value: bytes, *, endian: str = "<") -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + pad4(value)


def options(*items: tuple[int, bytes], endian: str = "<") -> bytes:
    """Options list ended by opt_endofopt; empty bytes for no options."""
    if not items:
        return b""
    return b"".join(option(c, v, endian=endian) for c, v in items) + struct.pack(endian + "HH", 0, 0)


def block(btype: int, body: bytes, *, endian: str = "<", length: int | None = None,
          trailer: int | None = None) -> bytes:
    """A generic block: type, total length, body padded to 32 bits, total length again."""
    body = pad4(body)
    total = 12 + len(body)
    head = struct.pack(endian + "II", btype, total if length is None else length)
    return head + body + struct.pack(endian + "I", total if trailer is None else trailer)


def shb(*, endian: str = "<", bom: int = BYTE_ORDER_MAGIC, opts: bytes = b"", section_length: int = -1,
        **kw) -> bytes:
    body = struct.pack(endian + "IHHq", bom, 1, 0, section_length) + opts
    return block(SHB_TYPE, body, endian=endian, **kw)


def idb(linktype: int, *, snaplen: int = 0, tsresol: int | None = None, tsoffset: int | None = None,
        name: bytes | None = None, endian: str = "<", extra: tuple = (), **kw) -> bytes:
    """Interface Description Block; if_tsresol/if_tsoffset/if_name options only when given."""
    items = []
    if name is not None:
        items.append((IF_NAME, name))
    if tsresol is not None:
        items.append((IF_TSRESOL, bytes([tsresol])))
    if tsoffset is not None:
        items.append((IF_TSOFFSET, struct.pack(endian + "q", tsoffset)))
    items += list(extra)
    body = struct.pack(endian + "HHI", linktype, 0, snaplen) + options(*items, endian=endian)
    return block(IDB_TYPE, body, endian=endian, **kw)


def epb(ifid: int, ts: int, data: bytes, *, caplen: int | None = None, origlen: int | None = None,
        opts: bytes = b"", endian: str = "<", **kw) -> bytes:
    """Enhanced Packet Block; `ts` is the raw 64-bit timestamp in the interface's units."""
    caplen = len(data) if caplen is None else caplen
    origlen = len(data) if origlen is None else origlen
    fixed = struct.pack(endian + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, caplen, origlen)
    return block(EPB_TYPE, fixed + pad4(data) + opts, endian=endian, **kw)


def pb(ifid: int, ts: int, data: bytes, *, drops: int = 0, endian: str = "<", **kw) -> bytes:
    """Obsolete Packet Block (type 2): 16-bit interface id and drops count."""
    fixed = struct.pack(endian + "HHIIII", ifid, drops, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
    return block(PB_TYPE, fixed + pad4(data), endian=endian, **kw)


def spb(data: bytes, *, origlen: int | None = None, endian: str = "<", **kw) -> bytes:
    """Simple Packet Block: original length then the data (captured length is implied)."""
    origlen = len(data) if origlen is None else origlen
    return block(SPB_TYPE, struct.pack(endian + "I", origlen) + pad4(data), endian=endian, **kw)


def nrb(*, endian: str = "<", **kw) -> bytes:
    """Name Resolution Block with one IPv4 record and a comment option."""
    name = b"feed.example\0"
    rec = struct.pack(endian + "HH", 1, 4 + len(name)) + pad4(bytes([10, 0, 0, 1]) + name)
    end = struct.pack(endian + "HH", 0, 0)
    return block(NRB_TYPE, rec + end + options((OPT_COMMENT, b"names"), endian=endian), endian=endian, **kw)


def isb(ifid: int, ts: int, *, endian: str = "<", **kw) -> bytes:
    """Interface Statistics Block with an isb_ifrecv option."""
    fixed = struct.pack(endian + "III", ifid, ts >> 32, ts & 0xFFFFFFFF)
    opts = options((ISB_IFRECV, struct.pack(endian + "Q", 12345)), endian=endian)
    return block(ISB_TYPE, fixed + opts, endian=endian, **kw)


def custom(data: bytes = b"custom!", *, pen: int = 32473, endian: str = "<", **kw) -> bytes:
    """Custom Block (0x00000BAD): private enterprise number then opaque data."""
    return block(CUSTOM_TYPE, struct.pack(endian + "I", pen) + data, endian=endian, **kw)


def ts_units(tsresol: int) -> int:
    """Timestamp units per second for an if_tsresol byte (MSB set: 2^-n, else 10^-n)."""
    return 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10**tsresol


def raw_ts(ns: int, tsresol: int = 6, tsoffset: int = 0) -> int:
    """The raw EPB timestamp an interface with `tsresol`/`tsoffset` stores for `ns` since the epoch
    (rounded down to the interface's resolution)."""
    return (ns - tsoffset * 10**9) * ts_units(tsresol) // 10**9


def epoch_ns(raw: int, tsresol: int = 6, tsoffset: int = 0) -> int:
    """ns since the epoch for a raw timestamp, rounded down (what Wireshark computes)."""
    return raw * 10**9 // ts_units(tsresol) + tsoffset * 10**9
