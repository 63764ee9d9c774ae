"""TotalView-ITCH 5.0 message layouts (NASDAQ TotalView-ITCH 5.0 specification, sections 1.3 and 4),
written once.

Every other piece reads this table: the numpy record dtype of each type's output table, the field
names of JSON/CSV output, the pure-Python reference decoder, the compiled decoder's generated code,
and the offsets the order book and the synthetic day generator use (`offset`, multicast.itch.offsets).
Field names are the snake_case of the specification's names. Kinds: 'u' unsigned integer, 'p4'/'p8'
prices with 4/8 implied decimals (kept as raw integers), 'a' alpha (stored as the big-endian integer of
its bytes, shown as a string with trailing spaces removed). The common header (type, stock locate,
tracking number, timestamp) is described once in HEADER.
"""

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Field:
    name: str  # snake_case name used in dtypes and output
    spec_name: str  # the specification's name
    offset: int  # from the message type byte
    size: int
    kind: str  # 'u', 'p4', 'p8', 'a'


def snake(name: str) -> str:
    """"Buy/Sell Indicator" → "buy_sell_indicator": lowercase, each run of non-alphanumerics → '_'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _fields(*rows):
    return tuple(Field(snake(n), n, o, s, k) for n, o, s, k in rows)


HEADER = _fields(("Stock Locate", 1, 2, "u"), ("Tracking Number", 3, 2, "u"), ("Timestamp", 5, 6, "u"))

# type letter → (spec message name, total length, body fields)
MESSAGES = {
    "S": ("System Event", 12, _fields(("Event Code", 11, 1, "a"))),
    "R": ("Stock Directory", 39, _fields(
        ("Stock", 11, 8, "a"), ("Market Category", 19, 1, "a"), ("Financial Status Indicator", 20, 1, "a"),
        ("Round Lot Size", 21, 4, "u"), ("Round Lots Only", 25, 1, "a"), ("Issue Classification", 26, 1, "a"),
        ("Issue Sub-Type", 27, 2, "a"), ("Authenticity", 29, 1, "a"), ("Short Sale Threshold Indicator", 30, 1, "a"),
        ("IPO Flag", 31, 1, "a"), ("LULD Reference Price Tier", 32, 1, "a"), ("ETP Flag", 33, 1, "a"),
        ("ETP Leverage Factor", 34, 4, "u"), ("Inverse Indicator", 38, 1, "a"))),
    "H": ("Stock Trading Action", 25, _fields(
        ("Stock", 11, 8, "a"), ("Trading State", 19, 1, "a"), ("Reserved", 20, 1, "a"), ("Reason", 21, 4, "a"))),
    "Y": ("Reg SHO Short Sale Price Test Restricted Indicator", 20, _fields(
        ("Stock", 11, 8, "a"), ("Reg SHO Action", 19, 1, "a"))),
    "L": ("Market Participant Position", 26, _fields(
        ("MPID", 11, 4, "a"), ("Stock", 15, 8, "a"), ("Primary Market Maker", 23, 1, "a"),
        ("Market Maker Mode", 24, 1, "a"), ("Market Participant State", 25, 1, "a"))),
    "V": ("MWCB Decline Level", 35, _fields(
        ("Level 1", 11, 8, "p8"), ("Level 2", 19, 8, "p8"), ("Level 3", 27, 8, "p8"))),
    "W": ("MWCB Status", 12, _fields(("Breached Level", 11, 1, "a"))),
    "K": ("IPO Quoting Period Update", 28, _fields(
        ("Stock", 11, 8, "a"), ("IPO Quotation Release Time", 19, 4, "u"),
        ("IPO Quotation Release Qualifier", 23, 1, "a"), ("IPO Price", 24, 4, "p4"))),
    "J": ("LULD Auction Collar", 35, _fields(
        ("Stock", 11, 8, "a"), ("Auction Collar Reference Price", 19, 4, "p4"),
        ("Upper Auction Collar Price", 23, 4, "p4"), ("Lower Auction Collar Price", 27, 4, "p4"),
        ("Auction Collar Extension", 31, 4, "u"))),
    "h": ("Operational Halt", 21, _fields(
        ("Stock", 11, 8, "a"), ("Market Code", 19, 1, "a"), ("Operational Halt Action", 20, 1, "a"))),
    "A": ("Add Order", 36, _fields(
        ("Order Reference Number", 11, 8, "u"), ("Buy/Sell Indicator", 19, 1, "a"), ("Shares", 20, 4, "u"),
        ("Stock", 24, 8, "a"), ("Price", 32, 4, "p4"))),
    "F": ("Add Order with MPID Attribution", 40, _fields(
        ("Order Reference Number", 11, 8, "u"), ("Buy/Sell Indicator", 19, 1, "a"), ("Shares", 20, 4, "u"),
        ("Stock", 24, 8, "a"), ("Price", 32, 4, "p4"), ("Attribution", 36, 4, "a"))),
    "E": ("Order Executed", 31, _fields(
        ("Order Reference Number", 11, 8, "u"), ("Executed Shares", 19, 4, "u"), ("Match Number", 23, 8, "u"))),
    "C": ("Order Executed With Price", 36, _fields(
        ("Order Reference Number", 11, 8, "u"), ("Executed Shares", 19, 4, "u"), ("Match Number", 23, 8, "u"),
        ("Printable", 31, 1, "a"), ("Execution Price", 32, 4, "p4"))),
    "X": ("Order Cancel", 23, _fields(("Order Reference Number", 11, 8, "u"), ("Canceled Shares", 19, 4, "u"))),
    "D": ("Order Delete", 19, _fields(("Order Reference Number", 11, 8, "u"))),
    "U": ("Order Replace", 35, _fields(
        ("Original Order Reference Number", 11, 8, "u"), ("New Order Reference Number", 19, 8, "u"),
        ("Shares", 27, 4, "u"), ("Price", 31, 4, "p4"))),
    "P": ("Trade", 44, _fields(
        ("Order Reference Number", 11, 8, "u"), ("Buy/Sell Indicator", 19, 1, "a"), ("Shares", 20, 4, "u"),
        ("Stock", 24, 8, "a"), ("Price", 32, 4, "p4"), ("Match Number", 36, 8, "u"))),
    "Q": ("Cross Trade", 40, _fields(
        ("Shares", 11, 8, "u"), ("Stock", 19, 8, "a"), ("Cross Price", 27, 4, "p4"), ("Match Number", 31, 8, "u"),
        ("Cross Type", 39, 1, "a"))),
    "B": ("Broken Trade", 19, _fields(("Match Number", 11, 8, "u"))),
    "I": ("Net Order Imbalance Indicator", 50, _fields(
        ("Paired Shares", 11, 8, "u"), ("Imbalance Shares", 19, 8, "u"), ("Imbalance Direction", 27, 1, "a"),
        ("Stock", 28, 8, "a"), ("Far Price", 36, 4, "p4"), ("Near Price", 40, 4, "p4"),
        ("Current Reference Price", 44, 4, "p4"), ("Cross Type", 48, 1, "a"),
        ("Price Variation Indicator", 49, 1, "a"))),
    "N": ("Retail Price Improvement Indicator", 20, _fields(("Stock", 11, 8, "a"), ("Interest Flag", 19, 1, "a"))),
    "O": ("DLCR Price Discovery", 48, _fields(
        ("Stock", 11, 8, "a"), ("Open Eligibility Status", 19, 1, "a"), ("Minimum Allowable Price", 20, 4, "p4"),
        ("Maximum Allowable Price", 24, 4, "p4"), ("Near Execution Price", 28, 4, "p4"),
        ("Near Execution Time", 32, 8, "u"), ("Lower Price Range Collar", 40, 4, "p4"),
        ("Upper Price Range Collar", 44, 4, "p4"))),
}

# Order of the output tables; the position of a letter here is its type code in compiled code.
TYPES = "SRHYLVWKJhAFECXDUPQBINO"
TYPE_CODE = {t: i for i, t in enumerate(TYPES)}
N_TYPES = len(TYPES)

_INT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 6: np.uint64, 8: np.uint64}

# Columns every table starts with: where the message came from, then the ITCH common header.
ORIGIN = (("session", np.uint16), ("seq", np.uint64))


def record_dtype(t: str) -> np.dtype:
    """numpy record of one message type: origin, header, then the body fields in spec order."""
    cols = list(ORIGIN) + [(f.name, _INT[f.size]) for f in HEADER + MESSAGES[t][2]]
    return np.dtype(cols, align=True)


DTYPES = {t: record_dtype(t) for t in TYPES}

LENGTHS = np.full(256, -1, dtype=np.int64)  # expected total length by type byte, -1 unknown
CODES = np.full(256, -1, dtype=np.int64)  # table index by type byte, -1 unknown
for _t in TYPES:
    LENGTHS[ord(_t)] = MESSAGES[_t][1]
    CODES[ord(_t)] = TYPE_CODE[_t]


def check_layouts() -> None:
    """Every table's fields tile its message exactly: header + fields, no gap, no overlap."""
    for t, (_, total, fields) in MESSAGES.items():
        pos = 11
        for f in fields:
            if f.offset != pos:
                raise AssertionError(f"ITCH {t!r}: field {f.name} at {f.offset}, expected {pos}")
            pos += f.size
        if pos != total:
            raise AssertionError(f"ITCH {t!r}: fields end at {pos}, message is {total} bytes")


check_layouts()


def offset(t: str, name: str) -> int:
    """Offset of field `name` (snake_case, header fields included) in messages of type `t`, from the type byte."""
    for f in HEADER + MESSAGES[t][2]:
        if f.name == name:
            return f.offset
    raise KeyError(f"ITCH {t!r} has no field {name!r}")


def same_offset(name_by_type: dict[str, str]) -> int:
    """The one offset that several types' fields share (code that reads them alike relies on it)."""
    offsets = {offset(t, n) for t, n in name_by_type.items()}
    if len(offsets) != 1:
        raise AssertionError(f"ITCH fields {name_by_type} are not at one offset: {sorted(offsets)}")
    return offsets.pop()
