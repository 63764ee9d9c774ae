"""OUCH 4.2 and OUCH 5.0 message layouts, both directions (docs/protocols.md §5, §6), written once.

Owns the layouts, the 5.0 appendage tags and the numpy record dtypes of the decoded tables; the
compiled decoder (multicast.ouch.decoder), the plain-Python reference decoder (multicast.ouch.reference) and the
encoder (multicast.ouch.encode) all read them from here. Messages are keyed by (version, direction,
type letter): 'U' is Replace Order inbound and Replaced outbound (trap 21).

Field kinds: 'u' unsigned integer, 'ts' timestamp (uint64 ns since midnight), 'p4' price4 (uint32, 4
implied decimals), 'px' px8d4 (uint64, 4 implied decimals), 'a' alpha; tags may also be 's4' (spx4:
int32, 4 implied decimals). Prices stay raw integers. In the record dtypes an alpha field of up to 8
bytes is the big-endian integer of its bytes (as in multicast.itch.schema) and a 14-byte alpha (order
token, ClOrdID) is an 'S14' column holding the wire bytes.

Length forms (trap 22: an OUCH 5.0 message is parsed by its SoupBinTCP length): `base` is the length
of the fixed fields; `ext` are trailing fields a later revision added (present only in the long
form); `app` says whether a uint16 Appendage Length plus that many bytes of TagValue elements follows
the fixed fields (and ext): None, REQUIRED, or OPTIONAL (docs/protocols.md §6.4: the message is either
exactly `base` bytes or carries the appendage). Tables of messages that may carry an appendage get
one column per known tag, named TAG_PREFIX + tag name (0 when absent), and `appendage_tags`, a bitmask
with bit n set when tag n was present; bit 0 (APPENDAGE_MALFORMED, there is no tag 0) marks an
appendage with a malformed element (empty, cut short, or of the wrong width for its tag).
"""

import re
from dataclasses import dataclass

import numpy as np

VERSIONS = ("4.2", "5.0")
DIRECTIONS = ("in", "out")  # in: client → Nasdaq (SoupBinTCP 'U' packets); out: Nasdaq → client ('S')
REQUIRED, OPTIONAL = "required", "optional"
TAG_PREFIX = "app_"
TAG_BITS = "appendage_tags"
APPENDAGE_MALFORMED = 1  # bit 0 of `appendage_tags`: an element was cut short, empty or of the wrong width
COPY_WIDTH = 14  # the only alpha width stored as bytes


def snake(name: str) -> str:
    """"Buy/Sell Indicator" → buy_sell_indicator, "ClOrdID" → cl_ord_id, "UserRefNum" → user_ref_num."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class Field:
    name: str  # snake_case, used in dtypes and decoded dicts
    spec_name: str
    offset: int  # from the message type byte
    size: int
    kind: str  # 'u', 'ts', 'p4', 'px', 'a', 's4'


@dataclass(frozen=True)
class Message:
    type: str
    name: str
    base: int  # length of the fixed fields, type byte included
    fields: tuple[Field, ...]
    ext: tuple[Field, ...] = ()  # trailing fields of the long form only
    app: str | None = None  # None, REQUIRED or OPTIONAL

    @property
    def app_offset(self) -> int:
        """Offset of the Appendage Length (long form), or of the end of the ext fields."""
        return self.base + sum(f.size for f in self.ext)

    @property
    def short_ok(self) -> bool:
        """A message of exactly `base` bytes is valid."""
        return self.app != REQUIRED


def _f(rows):
    return tuple(Field(snake(n), n, o, s, k) for n, o, s, k in rows)


def _msg(t, name, base, rows, ext=(), app=None):
    return Message(t, name, base, _f(rows), _f(ext), app)


_TS = ("Timestamp", 1, 8, "ts")
_TOKEN = ("Order Token", 9, 14, "a")  # 4.2 outbound: after the timestamp

# ---------------------------------------------------------------------------------------------- 4.2
_IN42 = [
    _msg("O", "Enter Order", 49, [
        ("Order Token", 1, 14, "a"), ("Buy/Sell Indicator", 15, 1, "a"), ("Shares", 16, 4, "u"),
        ("Stock", 20, 8, "a"), ("Price", 28, 4, "p4"), ("Time in Force", 32, 4, "u"), ("Firm", 36, 4, "a"),
        ("Display", 40, 1, "a"), ("Capacity", 41, 1, "a"), ("Intermarket Sweep Eligibility", 42, 1, "a"),
        ("Minimum Quantity", 43, 4, "u"), ("Cross Type", 47, 1, "a"), ("Customer Type", 48, 1, "a")]),
    _msg("U", "Replace Order", 47, [
        ("Existing Order Token", 1, 14, "a"), ("Replacement Order Token", 15, 14, "a"), ("Shares", 29, 4, "u"),
        ("Price", 33, 4, "p4"), ("Time in Force", 37, 4, "u"), ("Display", 41, 1, "a"),
        ("Intermarket Sweep Eligibility", 42, 1, "a"), ("Minimum Quantity", 43, 4, "u")]),
    _msg("X", "Cancel Order", 19, [("Order Token", 1, 14, "a"), ("Shares", 15, 4, "u")]),
    _msg("M", "Modify Order", 20, [("Order Token", 1, 14, "a"), ("Buy/Sell Indicator", 15, 1, "a"),
                                   ("Shares", 16, 4, "u")]),
    _msg("N", "Trade Now", 15, [("Order Token", 1, 14, "a")]),
]
_EXEC42 = [_TS, _TOKEN, ("Executed Shares", 23, 4, "u"), ("Execution Price", 27, 4, "p4"),
           ("Liquidity Flag", 31, 1, "a"), ("Match Number", 32, 8, "u")]
_ORDER42 = [("Buy/Sell Indicator", 23, 1, "a"), ("Shares", 24, 4, "u"), ("Stock", 28, 8, "a"),
            ("Price", 36, 4, "p4"), ("Time in Force", 40, 4, "u"), ("Firm", 44, 4, "a"), ("Display", 48, 1, "a"),
            ("Order Reference Number", 49, 8, "u"), ("Capacity", 57, 1, "a"),
            ("Intermarket Sweep Eligibility", 58, 1, "a"), ("Minimum Quantity", 59, 4, "u"),
            ("Cross Type", 63, 1, "a"), ("Order State", 64, 1, "a")]
_OUT42 = [
    _msg("S", "System Event", 10, [_TS, ("Event Code", 9, 1, "a")]),
    _msg("A", "Accepted", 66, [_TS, _TOKEN, *_ORDER42, ("BBO Weight Indicator", 65, 1, "a")]),
    _msg("U", "Replaced", 80, [_TS, ("Replacement Order Token", 9, 14, "a"), *_ORDER42,
                               ("Previous Order Token", 65, 14, "a"), ("BBO Weight Indicator", 79, 1, "a")]),
    _msg("C", "Canceled", 28, [_TS, _TOKEN, ("Decrement Shares", 23, 4, "u"), ("Reason", 27, 1, "a")]),
    # 37 bytes in the 2019 edition and Wireshark; a later revision adds AIQ Strategy → 38 (docs/protocols.md §5.2).
    _msg("D", "AIQ Canceled", 37, [
        _TS, _TOKEN, ("Decrement Shares", 23, 4, "u"), ("Reason", 27, 1, "a"),
        ("Quantity Prevented from Trading", 28, 4, "u"), ("Execution Price", 32, 4, "p4"),
        ("Liquidity Flag", 36, 1, "a")], ext=[("AIQ Strategy", 37, 1, "a")]),
    _msg("E", "Executed", 40, _EXEC42),
    _msg("B", "Broken Trade", 32, [_TS, _TOKEN, ("Match Number", 23, 8, "u"), ("Reason", 31, 1, "a")]),
    _msg("J", "Rejected", 24, [_TS, _TOKEN, ("Reason", 23, 1, "a")]),
    _msg("P", "Cancel Pending", 23, [_TS, _TOKEN]),
    _msg("I", "Cancel Reject", 23, [_TS, _TOKEN]),
    _msg("T", "Order Priority Update", 36, [_TS, _TOKEN, ("Price", 23, 4, "p4"), ("Display", 27, 1, "a"),
                                            ("Order Reference Number", 28, 8, "u")]),
    _msg("M", "Order Modified", 28, [_TS, _TOKEN, ("Buy/Sell Indicator", 23, 1, "a"), ("Shares", 24, 4, "u")]),
    _msg("G", "Executed with Reference Price", 45, [*_EXEC42, ("Reference Price", 40, 4, "p4"),
                                                    ("Reference Price Type", 44, 1, "a")]),
    _msg("F", "Trade Correction", 41, [*_EXEC42, ("Reason", 40, 1, "a")]),
    _msg("N", "Trade Now", 23, [_TS, _TOKEN]),  # known from one dissector only (docs/protocols.md §5.2)
]

# ---------------------------------------------------------------------------------------------- 5.0
_REF = ("UserRefNum", 9, 4, "u")  # outbound: after the timestamp
_IN50 = [
    _msg("O", "Enter Order", 45, [
        ("UserRefNum", 1, 4, "u"), ("Side", 5, 1, "a"), ("Quantity", 6, 4, "u"), ("Symbol", 10, 8, "a"),
        ("Price", 18, 8, "px"), ("Time in Force", 26, 1, "a"), ("Display", 27, 1, "a"), ("Capacity", 28, 1, "a"),
        ("Intermarket Sweep Eligibility", 29, 1, "a"), ("Cross Type", 30, 1, "a"), ("ClOrdID", 31, 14, "a")],
        app=REQUIRED),
    _msg("U", "Replace Order", 38, [
        ("OrigUserRefNum", 1, 4, "u"), ("UserRefNum", 5, 4, "u"), ("Quantity", 9, 4, "u"), ("Price", 13, 8, "px"),
        ("Time in Force", 21, 1, "a"), ("Display", 22, 1, "a"), ("Intermarket Sweep Eligibility", 23, 1, "a"),
        ("ClOrdID", 24, 14, "a")], app=REQUIRED),
    _msg("X", "Cancel Order", 9, [("UserRefNum", 1, 4, "u"), ("Quantity", 5, 4, "u")], app=OPTIONAL),
    _msg("M", "Modify Order", 10, [("UserRefNum", 1, 4, "u"), ("Side", 5, 1, "a"), ("Quantity", 6, 4, "u")],
         app=OPTIONAL),
    _msg("Q", "Account Query", 1, [], app=OPTIONAL),
    _msg("C", "Mass Cancel", 17, [("UserRefNum", 1, 4, "u"), ("Firm", 5, 4, "a"), ("Symbol", 9, 8, "a")],
         app=REQUIRED),  # later 5.0 revision only, as are D and E (docs/protocols.md §6.4)
    _msg("D", "Disable Order Entry", 9, [("UserRefNum", 1, 4, "u"), ("Firm", 5, 4, "a")], app=REQUIRED),
    _msg("E", "Enable Order Entry", 9, [("UserRefNum", 1, 4, "u"), ("Firm", 5, 4, "a")], app=REQUIRED),
]
_EXEC50 = [_TS, _REF, ("Quantity", 13, 4, "u"), ("Price", 17, 8, "px"), ("Liquidity Flag", 25, 1, "a"),
           ("Match Number", 26, 8, "u")]
_ORDER50 = [("Side", 1, 1, "a"), ("Quantity", 2, 4, "u"), ("Symbol", 6, 8, "a"), ("Price", 14, 8, "px"),
            ("Time in Force", 22, 1, "a"), ("Display", 23, 1, "a"), ("Order Reference Number", 24, 8, "u"),
            ("Capacity", 32, 1, "a"), ("Intermarket Sweep Eligibility", 33, 1, "a"), ("Cross Type", 34, 1, "a"),
            ("Order State", 35, 1, "a"), ("ClOrdID", 36, 14, "a")]  # offsets from Side = 1, placed by _at


def _at(rows, start):
    return [(n, start + o - 1, s, k) for n, o, s, k in rows]


_OUT50 = [
    _msg("S", "System Event", 10, [_TS, ("Event Code", 9, 1, "a")]),
    _msg("A", "Order Accepted", 62, [_TS, _REF, *_at(_ORDER50, 13)], app=REQUIRED),
    _msg("U", "Order Replaced", 66, [_TS, ("OrigUserRefNum", 9, 4, "u"), ("UserRefNum", 13, 4, "u"),
                                     *_at(_ORDER50, 17)], app=REQUIRED),
    _msg("C", "Order Canceled", 18, [_TS, _REF, ("Quantity", 13, 4, "u"), ("Reason", 17, 1, "a")], app=OPTIONAL),
    _msg("D", "AIQ Canceled", 31, [
        _TS, _REF, ("Decrement Shares", 13, 4, "u"), ("Reason", 17, 1, "a"),
        ("Quantity Prevented from Trading", 18, 4, "u"), ("Execution Price", 22, 8, "px"),
        ("Liquidity Flag", 30, 1, "a")], ext=[("AIQ Strategy", 31, 1, "a")], app=OPTIONAL),
    _msg("E", "Order Executed", 34, _EXEC50, app=REQUIRED),
    _msg("B", "Broken Trade", 36, [_TS, _REF, ("Match Number", 13, 8, "u"), ("Reason", 21, 1, "a"),
                                   ("ClOrdID", 22, 14, "a")], app=OPTIONAL),
    _msg("F", "Trade Correction", 49, [*_EXEC50, ("Reason", 34, 1, "a"), ("ClOrdID", 35, 14, "a")]),  # 2023 edition
    _msg("J", "Rejected", 29, [_TS, _REF, ("Reason", 13, 2, "u"), ("ClOrdID", 15, 14, "a")], app=OPTIONAL),
    _msg("P", "Cancel Pending", 13, [_TS, _REF], app=OPTIONAL),
    _msg("I", "Cancel Reject", 13, [_TS, _REF], app=OPTIONAL),
    _msg("T", "Order Priority Update", 30, [_TS, _REF, ("Price", 13, 8, "px"), ("Display", 21, 1, "a"),
                                            ("Order Reference Number", 22, 8, "u")], app=OPTIONAL),
    _msg("M", "Order Modified", 18, [_TS, _REF, ("Side", 13, 1, "a"), ("Quantity", 14, 4, "u")], app=OPTIONAL),
    _msg("R", "Order Restated", 14, [_TS, _REF, ("Reason", 13, 1, "a")], app=REQUIRED),
    _msg("Q", "Account Query Response", 13, [_TS, ("NextUserRefNum", 9, 4, "u")], app=OPTIONAL),
    _msg("X", "Mass Cancel Response", 25, [_TS, _REF, ("Firm", 13, 4, "a"), ("Symbol", 17, 8, "a")],
         app=REQUIRED),  # later 5.0 revision only, as are G and K
    _msg("G", "Disable Order Entry Response", 17, [_TS, _REF, ("Firm", 13, 4, "a")], app=REQUIRED),
    _msg("K", "Enable Order Entry Response", 17, [_TS, _REF, ("Firm", 13, 4, "a")], app=REQUIRED),
]

# (version, direction) → {type letter: Message}, in table order
MESSAGES = {
    ("4.2", "in"): {m.type: m for m in _IN42},
    ("4.2", "out"): {m.type: m for m in _OUT42},
    ("5.0", "in"): {m.type: m for m in _IN50},
    ("5.0", "out"): {m.type: m for m in _OUT50},
}


# ---------------------------------------------------------------------------------- 5.0 appendage tags
@dataclass(frozen=True)
class Tag:
    number: int
    name: str  # snake_case; its table column is TAG_PREFIX + name
    spec_name: str
    size: int  # value bytes (the element's length byte is size + 1)
    kind: str  # 'u', 'a', 'px', 's4'


TAGS = {n: Tag(n, snake(s), s, w, k) for n, s, w, k in (
    (1, "SecondaryOrdRefNum", 8, "u"), (2, "Firm", 4, "a"), (3, "MinQty", 4, "u"), (4, "CustomerType", 1, "a"),
    (5, "MaxFloor", 4, "u"), (6, "PriceType", 1, "a"), (7, "PegOffset", 4, "s4"), (9, "DiscretionPrice", 8, "px"),
    (10, "DiscretionPriceType", 1, "a"), (11, "DiscretionPegOffset", 4, "s4"), (12, "PostOnly", 1, "a"),
    (13, "RandomReserves", 4, "u"), (14, "Route", 4, "a"), (15, "ExpireTime", 4, "u"), (16, "TradeNow", 1, "a"),
    (17, "HandleInst", 1, "a"), (18, "BBO Weight Indicator", 1, "a"), (19, "Reference Price", 8, "px"),
    (20, "Reference Price Type", 1, "a"), (22, "Display Quantity", 4, "u"), (23, "Display Price", 8, "px"),
    (24, "GroupID", 2, "u"), (25, "SharesLocated", 1, "a"), (26, "LocateBroker", 4, "a"), (27, "Side", 1, "a"),
    (28, "UserRefIdx", 1, "u"), (29, "AIQ Strategy", 1, "a"), (30, "AIQ Group ID", 2, "a"),
)}
TAG_BY_NAME = {t.name: t for t in TAGS.values()}
MAX_TAG = 31  # tags above are unknown (the presence bitmask is 32 bits)

# --------------------------------------------------------------------------------------------- dtypes
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def column_type(size: int, kind: str):
    if kind == "a" and size == COPY_WIDTH:
        return f"S{COPY_WIDTH}"
    if kind == "s4":
        return np.int32
    return _UINT[size]


def has_tags(m: Message) -> bool:
    return m.app is not None


def tag_columns():
    """The tag block: widest first, so that it starts 8-aligned and has the same layout in every record."""
    cols = [(TAG_PREFIX + t.name, column_type(t.size, t.kind)) for t in TAGS.values()]
    return sorted(cols, key=lambda c: -np.dtype(c[1]).itemsize)


def record_dtype(m: Message) -> np.dtype:
    """numpy record of one message type: fixed fields in wire order, ext fields, then (if it may carry an
    appendage) `appendage_tags` and the tag block. Laid out like align=True (C struct rules), except that
    the 14-byte columns start 8-aligned and the record size is a multiple of 8, so that the decoder
    addresses every column in whole units of its width from the row's first 8-byte word and copies a
    14-byte column with three aligned stores."""
    cols = [(f.name, column_type(f.size, f.kind)) for f in m.fields + m.ext]
    if has_tags(m):
        cols += [(TAG_BITS, np.uint32)] + tag_columns()
    offsets, pos = [], 0
    for _, t in cols:
        dt = np.dtype(t)
        a = 8 if dt.kind == "S" else dt.alignment
        pos = -(-pos // a) * a
        offsets.append(pos)
        pos += dt.itemsize
    return np.dtype({"names": [c[0] for c in cols], "formats": [c[1] for c in cols], "offsets": offsets,
                     "itemsize": -(-pos // 8) * 8}, align=True)


DTYPES = {key: {t: record_dtype(m) for t, m in msgs.items()} for key, msgs in MESSAGES.items()}


def check_layouts() -> None:
    """Fields tile each message from byte 1 to `base` (then ext to app_offset), no gap, no overlap, in
    widths the decoder handles; record sizes are multiples of 8; appendages only in 5.0."""
    for (v, d), msgs in MESSAGES.items():
        for t, m in msgs.items():
            pos = 1
            for f in m.fields + m.ext:
                if f.offset != pos:
                    raise AssertionError(f"OUCH {v} {d} {t!r}: {f.name} at {f.offset}, expected {pos}")
                if f.size not in _UINT and (f.kind, f.size) != ("a", COPY_WIDTH):
                    raise AssertionError(f"OUCH {v} {d} {t!r}: {f.name} has width {f.size}")
                pos += f.size
                if f in m.fields and pos > m.base:
                    raise AssertionError(f"OUCH {v} {d} {t!r}: {f.name} ends past {m.base}")
            if pos != m.app_offset or (not m.ext and pos != m.base):
                raise AssertionError(f"OUCH {v} {d} {t!r}: fields end at {pos}, base is {m.base}")
            dt = DTYPES[(v, d)][t]
            if dt.itemsize % 8:
                raise AssertionError(f"OUCH {v} {d} {t!r}: record size {dt.itemsize} is not a multiple of 8")
            if m.app is not None and v != "5.0":
                raise AssertionError(f"OUCH {v} {d} {t!r}: appendages exist in 5.0 only")


check_layouts()
