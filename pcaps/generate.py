"""Deterministic MoldUDP64 / TotalView-ITCH 5.0 captures for the decoder's tests.

Run `python pcaps/generate.py [--out DIR]` (default: pcaps/generated/ next to this file). It writes

* all_types.pcap      nanosecond pcap, Ethernet: every one of the 23 ITCH 5.0 message types with edge
                      values, three MoldUDP64 sessions on two multicast groups, heartbeats, End of
                      Session, untagged / 802.1Q / QinQ frames and an IPv4 header with options.
* malformed.pcap      microsecond pcap, Ethernet: frames and packets the handler must count and skip,
                      interleaved with good packets.
* two_interfaces.pcapng  pcapng with two interfaces (0: Ethernet, 1: Linux cooked SLL) carrying a few
                      of the all_types packets.
* raw_ipv4.pcap       microsecond pcap, linktype 101 (raw IP, no link header).

Scapy builds the Ethernet / 802.1Q / IPv4 / UDP (and ARP, IPv6, TCP, SLL) layers; every field that
scapy would otherwise fill from the host or the clock is set explicitly (MACs, IP ids, TTLs,
timestamps), so the files are byte-identical on every run. The MoldUDP64 header and every ITCH
message are packed here with `struct` from the literal values in the tables below, following
docs/protocols.md §2 and §4 (not the decoder's schema), so the tests compare the decoder with
an independent statement of what is on the wire. pcaps/generated/README.md lists each file's contents
and the counter values expected for malformed.pcap.
"""

import argparse
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP, IPOption_EOL, IPOption_NOP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, CookedLinux, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapWriter

# ---------------------------------------------------------------------------------------- ITCH 5.0

# type → (total length including the type byte, body fields after the 11-byte common header).
# Field codes are struct codes: 'Ns' alpha of N bytes (space padded), 'H' uint16, 'I' uint32 or price4,
# 'Q' uint64 or price8. Names are the snake_case of the specification's field names.
LAYOUTS = {
    "S": (12, (("event_code", "1s"),)),
    "R": (39, (
        ("stock", "8s"), ("market_category", "1s"), ("financial_status_indicator", "1s"),
        ("round_lot_size", "I"), ("round_lots_only", "1s"), ("issue_classification", "1s"),
        ("issue_sub_type", "2s"), ("authenticity", "1s"), ("short_sale_threshold_indicator", "1s"),
        ("ipo_flag", "1s"), ("luld_reference_price_tier", "1s"), ("etp_flag", "1s"),
        ("etp_leverage_factor", "I"), ("inverse_indicator", "1s"),
    )),
    "H": (25, (("stock", "8s"), ("trading_state", "1s"), ("reserved", "1s"), ("reason", "4s"))),
    "Y": (20, (("stock", "8s"), ("reg_sho_action", "1s"))),
    "L": (26, (
        ("mpid", "4s"), ("stock", "8s"), ("primary_market_maker", "1s"), ("market_maker_mode", "1s"),
        ("market_participant_state", "1s"),
    )),
    "V": (35, (("level_1", "Q"), ("level_2", "Q"), ("level_3", "Q"))),
    "W": (12, (("breached_level", "1s"),)),
    "K": (28, (
        ("stock", "8s"), ("ipo_quotation_release_time", "I"), ("ipo_quotation_release_qualifier", "1s"),
        ("ipo_price", "I"),
    )),
    "J": (35, (
        ("stock", "8s"), ("auction_collar_reference_price", "I"), ("upper_auction_collar_price", "I"),
        ("lower_auction_collar_price", "I"), ("auction_collar_extension", "I"),
    )),
    "h": (21, (("stock", "8s"), ("market_code", "1s"), ("operational_halt_action", "1s"))),
    "A": (36, (
        ("order_reference_number", "Q"), ("buy_sell_indicator", "1s"), ("shares", "I"), ("stock", "8s"),
        ("price", "I"),
    )),
    "F": (40, (
        ("order_reference_number", "Q"), ("buy_sell_indicator", "1s"), ("shares", "I"), ("stock", "8s"),
        ("price", "I"), ("attribution", "4s"),
    )),
    "E": (31, (("order_reference_number", "Q"), ("executed_shares", "I"), ("match_number", "Q"))),
    "C": (36, (
        ("order_reference_number", "Q"), ("executed_shares", "I"), ("match_number", "Q"), ("printable", "1s"),
        ("execution_price", "I"),
    )),
    "X": (23, (("order_reference_number", "Q"), ("canceled_shares", "I"))),
    "D": (19, (("order_reference_number", "Q"),)),
    "U": (35, (
        ("original_order_reference_number", "Q"), ("new_order_reference_number", "Q"), ("shares", "I"),
        ("price", "I"),
    )),
    "P": (44, (
        ("order_reference_number", "Q"), ("buy_sell_indicator", "1s"), ("shares", "I"), ("stock", "8s"),
        ("price", "I"), ("match_number", "Q"),
    )),
    "Q": (40, (
        ("shares", "Q"), ("stock", "8s"), ("cross_price", "I"), ("match_number", "Q"), ("cross_type", "1s"),
    )),
    "B": (19, (("match_number", "Q"),)),
    "I": (50, (
        ("paired_shares", "Q"), ("imbalance_shares", "Q"), ("imbalance_direction", "1s"), ("stock", "8s"),
        ("far_price", "I"), ("near_price", "I"), ("current_reference_price", "I"), ("cross_type", "1s"),
        ("price_variation_indicator", "1s"),
    )),
    "N": (20, (("stock", "8s"), ("interest_flag", "1s"))),
    "O": (48, (
        ("stock", "8s"), ("open_eligibility_status", "1s"), ("minimum_allowable_price", "I"),
        ("maximum_allowable_price", "I"), ("near_execution_price", "I"), ("near_execution_time", "Q"),
        ("lower_price_range_collar", "I"), ("upper_price_range_collar", "I"),
    )),
}

MAX_PRICE4 = 0x77359400  # $200,000.0000, the ITCH maximum
U32 = 0xFFFFFFFF
U64 = 2**64 - 1
U63 = 2**63
U48 = 2**48 - 1
T_OPEN = 34_200_000_000_000  # 09:30:00 in ns since midnight
T_LAST = 86_399_999_999_999  # 23:59:59.999999999


def msg(t: str, stock_locate: int, tracking_number: int, timestamp: int, **fields) -> dict:
    """One ITCH message as literal values: common header + the type's body fields (all of them)."""
    names = [n for n, _ in LAYOUTS[t][1]]
    if sorted(fields) != sorted(names):
        raise ValueError(f"{t!r}: fields {sorted(fields)} != layout {sorted(names)}")
    return {"type": t, "stock_locate": stock_locate, "tracking_number": tracking_number,
            "timestamp": timestamp, **fields}


def pack_message(m: dict) -> bytes:
    """ITCH message bytes: type, locate, tracking, uint48 timestamp, body fields big-endian."""
    t = m["type"]
    total, fields = LAYOUTS[t]
    ts = m["timestamp"]
    out = struct.pack(">cHHHI", t.encode(), m["stock_locate"], m["tracking_number"], ts >> 32, ts & U32)
    for name, code in fields:
        v = m[name]
        if code.endswith("s"):
            size = int(code[:-1])
            raw = v.encode("ascii")
            if len(raw) > size:
                raise ValueError(f"{t!r}.{name}: {v!r} longer than {size}")
            out += raw.ljust(size, b" ")
        else:
            out += struct.pack(">" + code, v)
    if len(out) != total:
        raise AssertionError(f"{t!r}: packed {len(out)} bytes, layout says {total}")
    return out


def _mkts(n: int) -> int:
    return T_OPEN + n * 1_000


# ---- Packet 1: every type once, in the order S R H Y L V W K J h A F E C X D U P Q B I N O, ordinary values.
ORDINARY = [
    msg("S", 0, 0, 0, event_code="O"),
    msg("R", 1, 2, 1, stock="A", market_category="N", financial_status_indicator=" ", round_lot_size=100,
        round_lots_only="N", issue_classification="C", issue_sub_type="Z", authenticity="P",
        short_sale_threshold_indicator="N", ipo_flag=" ", luld_reference_price_tier="1", etp_flag="N",
        etp_leverage_factor=1, inverse_indicator="N"),
    msg("H", 2, 3, _mkts(2), stock="ABCDEFGH", trading_state="T", reserved=" ", reason="    "),
    msg("Y", 3, 4, _mkts(3), stock="ZVZZT", reg_sho_action="0"),
    msg("L", 4, 5, _mkts(4), mpid="NITE", stock="AAPL", primary_market_maker="Y", market_maker_mode="N",
        market_participant_state="A"),
    msg("V", 0, 6, _mkts(5), level_1=360_000_000_000, level_2=335_000_000_000, level_3=300_000_000_000),
    msg("W", 0, 7, _mkts(6), breached_level="1"),
    msg("K", 5, 8, _mkts(7), stock="ZIPO", ipo_quotation_release_time=34_200,
        ipo_quotation_release_qualifier="A", ipo_price=250_000),
    msg("J", 6, 9, _mkts(8), stock="ZJZZT", auction_collar_reference_price=1_000_000,
        upper_auction_collar_price=1_100_000, lower_auction_collar_price=900_000, auction_collar_extension=2),
    msg("h", 7, 10, _mkts(9), stock="QQQ", market_code="Q", operational_halt_action="H"),
    msg("A", 4, 11, _mkts(10), order_reference_number=1, buy_sell_indicator="B", shares=100, stock="AAPL",
        price=1_500_000),
    msg("F", 8, 12, _mkts(11), order_reference_number=2, buy_sell_indicator="S", shares=200, stock="MSFT",
        price=3_000_000, attribution="GSCO"),
    msg("E", 4, 13, _mkts(12), order_reference_number=1, executed_shares=50, match_number=1001),
    msg("C", 8, 14, _mkts(13), order_reference_number=2, executed_shares=20, match_number=1002, printable="Y",
        execution_price=3_000_100),
    msg("X", 4, 15, _mkts(14), order_reference_number=1, canceled_shares=10),
    msg("D", 4, 16, _mkts(15), order_reference_number=1),
    msg("U", 8, 17, _mkts(16), original_order_reference_number=2, new_order_reference_number=3, shares=150,
        price=3_100_000),
    msg("P", 4, 18, _mkts(17), order_reference_number=0, buy_sell_indicator="B", shares=300, stock="AAPL",
        price=1_500_100, match_number=1003),
    msg("Q", 4, 19, _mkts(18), shares=1_000_000, stock="AAPL", cross_price=1_500_000, match_number=1004,
        cross_type="O"),
    msg("B", 4, 20, _mkts(19), match_number=1003),
    msg("I", 4, 21, _mkts(20), paired_shares=5_000, imbalance_shares=1_000, imbalance_direction="B",
        stock="AAPL", far_price=1_500_000, near_price=1_499_000, current_reference_price=1_500_500,
        cross_type="O", price_variation_indicator="L"),
    msg("N", 4, 22, _mkts(21), stock="AAPL", interest_flag="A"),
    msg("O", 9, 23, _mkts(22), stock="ZDLCR", open_eligibility_status="Y", minimum_allowable_price=1_000_000,
        maximum_allowable_price=2_000_000, near_execution_price=1_500_000,
        near_execution_time=36_000_000_000_000, lower_price_range_collar=1_400_000,
        upper_price_range_collar=1_600_000),
]

# ---- Packet 2: maxima. uint64 at 2**64-1 and 2**63, price4 at 0x77359400 and 0xFFFFFFFF, uint32 at max,
# timestamps at 23:59:59.999999999 and at the uint48 maximum, locate/tracking 0xFFFF, full 8-char symbols.
MAXIMA = [
    msg("A", 0xFFFF, 0xFFFF, T_LAST, order_reference_number=U64, buy_sell_indicator="S", shares=U32,
        stock="ZZZZZZZZ", price=MAX_PRICE4),
    msg("F", 0xFFFF, 0xFFFF, T_LAST, order_reference_number=U63, buy_sell_indicator="B", shares=U32,
        stock="ABCDEFGH", price=U32, attribution="A"),
    msg("E", 0xFFFF, 0xFFFF, U48, order_reference_number=U64, executed_shares=U32, match_number=U64),
    msg("C", 0xFFFF, 0xFFFF, T_LAST, order_reference_number=U63, executed_shares=U32, match_number=U63,
        printable="N", execution_price=U32),
    msg("X", 0xFFFF, 0xFFFF, T_LAST, order_reference_number=U64, canceled_shares=U32),
    msg("D", 0xFFFF, 0xFFFF, T_LAST, order_reference_number=U63),
    msg("U", 0xFFFF, 0xFFFF, T_LAST, original_order_reference_number=U64, new_order_reference_number=U63,
        shares=U32, price=MAX_PRICE4),
    msg("P", 0xFFFF, 0xFFFF, T_LAST, order_reference_number=U64, buy_sell_indicator="S", shares=U32,
        stock="A", price=U32, match_number=U64),
    msg("Q", 0xFFFF, 0xFFFF, T_LAST, shares=U64, stock="A", cross_price=MAX_PRICE4, match_number=U63,
        cross_type="A"),
    msg("B", 0xFFFF, 0xFFFF, T_LAST, match_number=U64),
    msg("I", 0xFFFF, 0xFFFF, T_LAST, paired_shares=U64, imbalance_shares=U63, imbalance_direction="N",
        stock="ABCDEFGH", far_price=U32, near_price=MAX_PRICE4, current_reference_price=0, cross_type="C",
        price_variation_indicator=" "),
    msg("V", 0, 0xFFFF, T_LAST, level_1=U64, level_2=U63, level_3=0),
    msg("J", 0xFFFF, 0xFFFF, T_LAST, stock="ZZZZZZZZ", auction_collar_reference_price=U32,
        upper_auction_collar_price=MAX_PRICE4, lower_auction_collar_price=0, auction_collar_extension=U32),
    msg("K", 0, 0xFFFF, T_LAST, stock="ZZZZZZZZ", ipo_quotation_release_time=U32,
        ipo_quotation_release_qualifier="C", ipo_price=U32),
    msg("R", 0xFFFF, 0xFFFF, T_LAST, stock="ZZZZZZZZ", market_category="Q", financial_status_indicator="D",
        round_lot_size=U32, round_lots_only="Y", issue_classification="Z", issue_sub_type="AI",
        authenticity="T", short_sale_threshold_indicator="Y", ipo_flag="Y", luld_reference_price_tier="2",
        etp_flag="Y", etp_leverage_factor=U32, inverse_indicator="Y"),
    msg("O", 0xFFFF, 0xFFFF, T_LAST, stock="ZZZZZZZZ", open_eligibility_status="N",
        minimum_allowable_price=0, maximum_allowable_price=U32, near_execution_price=MAX_PRICE4,
        near_execution_time=U64, lower_price_range_collar=U63 >> 32, upper_price_range_collar=U32),
    msg("W", 0, 0xFFFF, T_LAST, breached_level="3"),
    msg("S", 0, 0xFFFF, T_LAST, event_code="C"),
]

# ---- Packet 4: zeros and short alpha values (one character, three of four).
ZEROS = [
    msg("A", 0, 0, 0, order_reference_number=0, buy_sell_indicator="B", shares=0, stock="A", price=0),
    msg("Q", 0, 0, 0, shares=0, stock="A", cross_price=0, match_number=0, cross_type="H"),
    msg("H", 0, 0, 0, stock="A", trading_state="H", reserved=" ", reason="T12"),
    msg("L", 1, 0, 0, mpid="ABCD", stock="A", primary_market_maker="N", market_maker_mode="P",
        market_participant_state="E"),
    msg("V", 0, 0, 0, level_1=0, level_2=0, level_3=0),
    msg("N", 1, 0, 0, stock="AB", interest_flag="N"),
    msg("h", 1, 0, 0, stock="ABC", market_code="X", operational_halt_action="T"),
    msg("Y", 1, 0, 0, stock="ABCD", reg_sho_action="2"),
]

# ---- Packet 5: many blocks in one packet (30 Order Deletes).
MANY = [msg("D", 10, k, T_OPEN + 7 * k, order_reference_number=1_000_000 + k) for k in range(30)]

# ---- Packet 6: a session with a short name, sequence above 2**32.
SHORT_SESSION = [
    msg("S", 0, 1, 14_400_000_000_000, event_code="S"),
    msg("N", 65_535, 2, 14_400_000_000_001, stock="BRK.A", interest_flag="S"),
]

# ------------------------------------------------------------------------------------ MoldUDP64

HEARTBEAT = 0
END_OF_SESSION = 0xFFFF


@dataclass
class Mold:
    """One MoldUDP64 downstream packet (docs/protocols.md §2.1)."""

    session: str  # up to 10 characters, space padded on the wire
    seq: int  # sequence number of the first block (next expected for heartbeat / end of session)
    messages: tuple = ()  # dicts (packed with pack_message) or bytes written as the block's data as is
    count: int | None = None  # header message count; None = number of blocks
    trailer: bytes = b""  # bytes after the last block (a malformed packet)

    def payload(self) -> bytes:
        count = len(self.messages) if self.count is None else self.count
        out = struct.pack(">10sQH", self.session.encode("ascii").ljust(10, b" "), self.seq, count)
        for m in self.messages:
            data = m if isinstance(m, bytes) else pack_message(m)
            out += struct.pack(">H", len(data)) + data
        return out + self.trailer


SESSION_A = "SESSIONA01"
SESSION_B = "SESSIONB02"
SESSION_C = "C3"  # padded with 8 spaces on the wire

# Two multicast groups (destination IPv4, UDP port).
GROUP_A = ("233.54.12.111", 26477)
GROUP_B = ("233.54.12.112", 26478)

SRC_MAC = "02:00:00:00:00:01"
SRC_IP = "10.10.10.1"
SRC_PORT = 40000

# all_types.pcap: (framing, group, packet). Framing: 'eth' untagged, 'vlan' 802.1Q VLAN 141,
# 'qinq' 802.1ad outer VLAN 100 + 802.1Q inner VLAN 141, 'ipopt' untagged with IPv4 options (IHL 7).
ALL_TYPES = [
    ("eth", GROUP_A, Mold(SESSION_A, 1, tuple(ORDINARY))),
    ("vlan", GROUP_A, Mold(SESSION_A, 24, tuple(MAXIMA))),
    ("vlan", GROUP_A, Mold(SESSION_A, 24 + len(MAXIMA), count=HEARTBEAT)),
    ("qinq", GROUP_B, Mold(SESSION_B, 1, tuple(ZEROS))),
    ("ipopt", GROUP_B, Mold(SESSION_B, 1 + len(ZEROS), tuple(MANY))),
    ("eth", GROUP_A, Mold(SESSION_C, 2**32, tuple(SHORT_SESSION))),
    ("eth", GROUP_B, Mold(SESSION_B, 1 + len(ZEROS) + len(MANY), count=HEARTBEAT)),
    ("eth", GROUP_A, Mold(SESSION_A, 24 + len(MAXIMA), count=END_OF_SESSION)),
    ("vlan", GROUP_B, Mold(SESSION_B, 1 + len(ZEROS) + len(MANY), count=END_OF_SESSION)),
]

# two_interfaces.pcapng: (interface, index into ALL_TYPES); interface 0 Ethernet, 1 Linux cooked
# (SLL, linktype 113). Same groups and payloads as in all_types.pcap.
PCAPNG = [(0, 0), (1, 3), (1, 5), (0, 7)]

# raw_ipv4.pcap (linktype 101): indices into ALL_TYPES; the 'ipopt' packet keeps its IPv4 options.
RAW_IPV4 = [1, 4, 6]

# malformed.pcap, session MALFORMED1 on GROUP_A: (label, kind, packet or payload). Kinds:
# 'good' a well-formed packet; 'payload' raw bytes as the UDP payload; the rest name a framing fault.
MS = "MALFORMED1"
MALFORMED = [
    ("good", "good", Mold(MS, 1, (
        msg("A", 1, 0, T_OPEN, order_reference_number=7, buy_sell_indicator="B", shares=1, stock="META",
            price=805_200),
        msg("D", 1, 0, T_OPEN + 1, order_reference_number=7),
    ))),
    # Two blocks announced; the second says 40 bytes but 10 remain.
    ("block_overrun", "payload", struct.pack(">10sQH", MS.encode(), 3, 2)
     + struct.pack(">H", 12) + pack_message(msg("S", 0, 0, 0, event_code="Q"))
     + struct.pack(">H", 40) + bytes(10)),
    # Good S and E around an unknown type 'z' (7 bytes) and a 20-byte 'D' (its length is 19).
    ("unknown_and_bad_length", "good", Mold(MS, 3, (
        msg("S", 0, 1, T_OPEN + 2, event_code="Q"),
        b"z" + bytes(6),
        pack_message(msg("D", 1, 0, T_OPEN + 3, order_reference_number=8)) + b"\x00",
        msg("E", 1, 2, T_OPEN + 4, order_reference_number=7, executed_shares=1, match_number=99),
    ))),
    ("trailing_bytes", "good", Mold(MS, 7, (msg("D", 1, 0, T_OPEN, order_reference_number=9),),
                                    trailer=b"\x00\x00\x00")),
    ("short_header", "payload", MS.encode() + bytes(5)),  # 15 bytes: session + part of the sequence
    ("count_too_big", "good", Mold(MS, 7, (msg("D", 1, 0, T_OPEN, order_reference_number=9),) * 2, count=3)),
    ("good", "good", Mold(MS, 7, (msg("X", 1, 3, T_OPEN + 5, order_reference_number=7, canceled_shares=0),))),
    ("ip_fragment_mf", "mf", Mold(MS, 8, (msg("D", 1, 0, T_OPEN, order_reference_number=10),))),
    ("ip_fragment_offset", "frag", Mold(MS, 8, (msg("D", 1, 0, T_OPEN, order_reference_number=11),))),
    ("tcp", "tcp", Mold(MS, 8, (msg("D", 1, 0, T_OPEN, order_reference_number=12),))),
    ("arp", "arp", None),
    ("ipv6", "ipv6", Mold(MS, 8, (msg("D", 1, 0, T_OPEN, order_reference_number=13),))),
    ("snaplen_truncated", "snap", Mold(MS, 8, (
        msg("A", 1, 0, T_OPEN, order_reference_number=14, buy_sell_indicator="S", shares=5, stock="META",
            price=801_100),
    ) * 2)),
    ("udp_length_overrun", "udplen", Mold(MS, 8, (msg("D", 1, 0, T_OPEN, order_reference_number=15),))),
    # A zero-length block (legal MoldUDP64, not an ITCH message) and a good D.
    ("zero_length_block", "good", Mold(MS, 8, (b"", msg("D", 1, 4, T_OPEN + 6, order_reference_number=16)))),
    ("eos_with_data", "payload", struct.pack(">10sQH", MS.encode(), 10, END_OF_SESSION) + b"\x00\x01\x02"),
    ("heartbeat", "good", Mold(MS, 10, count=HEARTBEAT)),
    ("good", "good", Mold(MS, 10, (
        msg("A", 2, 5, T_OPEN + 7, order_reference_number=17, buy_sell_indicator="S", shares=300, stock="SPY",
            price=4_500_000),
        msg("F", 2, 6, T_OPEN + 8, order_reference_number=18, buy_sell_indicator="B", shares=400, stock="SPY",
            price=4_499_900, attribution="LUBS"),
        msg("C", 2, 7, T_OPEN + 9, order_reference_number=17, executed_shares=100, match_number=100,
            printable="Y", execution_price=4_500_000),
    ))),
    ("end_of_session", "good", Mold(MS, 13, count=END_OF_SESSION)),
]

SNAPLEN_CUT = 64  # captured bytes of the snaplen_truncated frame

# Counters (multicast/wire/counters.py names) a decoder must report for malformed.pcap; frame_bytes is the
# sum of the captured lengths. README.md explains each number.
MALFORMED_COUNTERS = {
    "frames": 19, "non_ipv4": 2, "non_udp": 1, "ip_fragments": 2, "truncated_frames": 1, "bad_headers": 1,
    "unsupported_linktype": 0, "filtered": 0, "packets": 7, "malformed_packets": 5, "heartbeats": 1,
    "end_of_session": 1, "sessions_overflow": 0, "messages": 12, "unknown_types": 1,
    "bad_length_messages": 2, "decoded": 9, "truncated_records": 0, "after_end_of_session": 0,
}

# ------------------------------------------------------------------------------------ frames


def multicast_mac(ip: str) -> str:
    """01:00:5e + the low 23 bits of the IPv4 group (RFC 1112)."""
    a, b, c, d = (int(x) for x in ip.split("."))
    return f"01:00:5e:{b & 0x7F:02x}:{c:02x}:{d:02x}"


def _ip(group, ip_id: int, *, options=False, proto=17, flags=0, frag=0) -> IP:
    # Router Alert (4 bytes), 3 NOPs, End of Options: 8 option bytes, IHL 7.
    opts = [IPOption_Router_Alert(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_EOL()]
    return IP(version=4, tos=0, id=ip_id, flags=flags, frag=frag, ttl=32, proto=proto, src=SRC_IP,
              dst=group[0], options=opts if options else [])


def _udp(group, payload: bytes, length=None) -> UDP:
    return UDP(sport=SRC_PORT, dport=group[1], len=length) / Raw(load=payload)


def _ether(group, framing: str, inner):
    dst = multicast_mac(group[0])
    if framing in ("eth", "ipopt"):
        return Ether(dst=dst, src=SRC_MAC, type=0x0800) / inner
    if framing == "vlan":
        return Ether(dst=dst, src=SRC_MAC, type=0x8100) / Dot1Q(prio=0, dei=0, vlan=141, type=0x0800) / inner
    if framing == "qinq":
        return (Ether(dst=dst, src=SRC_MAC, type=0x88A8) / Dot1Q(prio=0, dei=0, vlan=100, type=0x8100)
                / Dot1Q(prio=0, dei=0, vlan=141, type=0x0800) / inner)
    raise ValueError(framing)


def udp_frame(framing: str, group, payload: bytes, ip_id: int):
    ip = _ip(group, ip_id, options=framing == "ipopt") / _udp(group, payload)
    return _ether(group, framing, ip)


BASE_SEC = 1_700_000_000  # capture timestamps: 2023-11-14T22:13:20Z + a fixed step per frame


def write_all_types(path: Path) -> None:
    with PcapWriter(str(path), linktype=1, endianness="<", nano=True, snaplen=65535) as w:
        w.write_header(None)
        for i, (framing, group, mold) in enumerate(ALL_TYPES):
            frame = udp_frame(framing, group, mold.payload(), 0x100 + i)
            w.write_packet(frame, sec=BASE_SEC, usec=1_000 * i + 7)  # ns after the second (nano pcap)


def _malformed_frame(kind: str, item, ip_id: int):
    g = GROUP_A
    if kind == "payload":
        return udp_frame("eth", g, item, ip_id)
    payload = item.payload() if item is not None else b""
    if kind in ("good", "snap"):
        return udp_frame("eth", g, payload, ip_id)
    if kind == "mf":
        return _ether(g, "vlan", _ip(g, ip_id, flags="MF") / _udp(g, payload))
    if kind == "frag":
        return _ether(g, "eth", _ip(g, ip_id, frag=100) / Raw(load=payload))
    if kind == "tcp":
        return _ether(g, "eth", _ip(g, ip_id, proto=6) / TCP(
            sport=SRC_PORT, dport=g[1], seq=1, ack=0, dataofs=5, flags="PA", window=65535, urgptr=0,
            options=[]) / Raw(load=payload))
    if kind == "udplen":
        return _ether(g, "eth", _ip(g, ip_id) / _udp(g, payload, length=8 + len(payload) + 100))
    if kind == "arp":
        return Ether(dst="ff:ff:ff:ff:ff:ff", src=SRC_MAC, type=0x0806) / ARP(
            hwtype=1, ptype=0x0800, hwlen=6, plen=4, op=1, hwsrc=SRC_MAC, psrc=SRC_IP,
            hwdst="00:00:00:00:00:00", pdst="10.10.10.2")
    if kind == "ipv6":
        return Ether(dst="33:33:00:00:00:01", src=SRC_MAC, type=0x86DD) / IPv6(
            version=6, tc=0, fl=0, nh=17, hlim=32, src="fd00::1", dst="ff15::1") / UDP(
            sport=SRC_PORT, dport=g[1]) / Raw(load=payload)
    raise ValueError(kind)


def write_malformed(path: Path) -> None:
    with PcapWriter(str(path), linktype=1, endianness="<", snaplen=65535) as w:
        w.write_header(None)
        for i, (_, kind, item) in enumerate(MALFORMED):
            frame = bytes(_malformed_frame(kind, item, 0x200 + i))
            wirelen = len(frame)
            if kind == "snap":
                frame = frame[:SNAPLEN_CUT]
            w.write_packet(frame, sec=BASE_SEC + i, usec=250 * i, wirelen=wirelen)


def write_pcapng(path: Path) -> None:
    w = PcapNgWriter(str(path))
    try:
        for i, (iface, k) in enumerate(PCAPNG):
            framing, group, mold = ALL_TYPES[k]
            ip = _ip(group, 0x300 + i, options=framing == "ipopt") / _udp(group, mold.payload())
            if iface == 0:
                frame = _ether(group, "eth", ip)
            else:
                sll_src = bytes.fromhex("0200000000020000")  # 6-byte MAC in the 8-byte address field
                frame = CookedLinux(pkttype=2, lladdrtype=1, lladdrlen=6, src=sll_src, proto=0x0800) / ip
                frame.sniffed_on = "sll0"
            if not w.header_present:
                w.write_header(frame)  # SHB + IDB 0 (Ethernet); the SLL IDB follows with its first packet
            # k/16 s is exact in binary floating point, so the microsecond stamp never rounds.
            w.write_packet(frame, sec=BASE_SEC + i / 16)
    finally:
        w.close()


def write_raw_ipv4(path: Path) -> None:
    with PcapWriter(str(path), linktype=101, endianness="<", snaplen=65535) as w:
        w.write_header(None)
        for i, k in enumerate(RAW_IPV4):
            framing, group, mold = ALL_TYPES[k]
            ip = _ip(group, 0x400 + i, options=framing == "ipopt") / _udp(group, mold.payload())
            w.write_packet(bytes(ip), sec=BASE_SEC, usec=10 * i)


FILES = {
    "all_types.pcap": write_all_types,
    "malformed.pcap": write_malformed,
    "two_interfaces.pcapng": write_pcapng,
    "raw_ipv4.pcap": write_raw_ipv4,
}


def generate(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, write in FILES.items():
        write(out / name)
        paths.append(out / name)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "generated",
                   help="directory to write the captures into (default: pcaps/generated)")
    args = p.parse_args(argv)
    for path in generate(args.out):
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
