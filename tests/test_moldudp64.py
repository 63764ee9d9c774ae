"""Frame parsing and MoldUDP64 extraction on hand-built packets: every frame ends in one counter."""

import struct

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

from xdpfeed.multicast.wire import counters as C

from helpers import decode_all, frame, mold, write_pcap

S = b"SESS000001"
D1 = b"D" + struct.pack(">HH", 1, 0) + (5).to_bytes(6, "big") + struct.pack(">Q", 77)  # 19-byte Order Delete

# Counters where a frame can end; every frame is in exactly one.
FATES = (C.NON_IPV4, C.NON_UDP, C.IP_FRAGMENTS, C.TRUNCATED_FRAMES, C.BAD_HEADERS, C.UNSUPPORTED_LINKTYPE,
         C.FILTERED, C.PACKETS, C.MALFORMED_PACKETS, C.SESSIONS_OVERFLOW)


def run(tmp_path, frames, groups=()):
    msgs, r = decode_all(write_pcap(tmp_path / "t.pcap", frames), groups)
    c = r.counters
    assert c[C.FRAMES] == len(frames) == sum(int(c[i]) for i in FATES)
    return msgs, c, r


def test_block_sequence_numbers_and_sessions(tmp_path):
    msgs, c, r = run(tmp_path, [frame(mold(S, 10, [D1, D1, D1])), frame(mold(b"OTHER", 500, [D1]), vlan=141)])
    assert [(m["session"], m["seq"]) for m in msgs] == [(S.decode(), 10), (S.decode(), 11), (S.decode(), 12),
                                                        ("OTHER", 500)]
    assert r.sessions.names() == ["SESS000001", "OTHER"]
    assert list(r.sessions.first_seq[:2]) == [10, 500] and list(r.sessions.end_seq[:2]) == [13, 501]
    assert c[C.PACKETS] == 2 and c[C.MESSAGES] == 4


def test_heartbeat_and_end_of_session_carry_no_messages(tmp_path):
    msgs, c, _ = run(tmp_path, [frame(mold(S, 7)), frame(mold(S, 7, count=0xFFFF)), frame(mold(S, 7, [D1]))])
    assert (c[C.HEARTBEATS], c[C.END_OF_SESSION], c[C.PACKETS], len(msgs)) == (1, 1, 3, 1)


@pytest.mark.parametrize("payload", [
    mold(S, 1, [D1])[:-1],  # last block overruns the packet
    mold(S, 1, [D1]) + b"\x00",  # a byte after the last block
    mold(S, 1, [D1], count=2),  # count says two, one present
    mold(S, 1)[:19],  # header too short
    mold(S, 1, count=0xFFFF) + b"xx",  # end of session with data
], ids=["overrun", "trailing", "count-too-high", "short-header", "eos-extra"])
def test_malformed_packets_are_counted_and_contribute_nothing(tmp_path, payload):
    msgs, c, _ = run(tmp_path, [frame(payload), frame(mold(S, 2, [D1]))])
    assert c[C.MALFORMED_PACKETS] == 1 and [m["seq"] for m in msgs] == [2]


def test_each_packet_is_judged_on_its_own_blocks(tmp_path):
    """extract checks the blocks of four packets side by side: a malformed packet in any place among its
    neighbours, whatever their block counts and whatever lies between them, spoils only itself."""
    rng = np.random.default_rng(24)
    frames, want, bad, seq = [], [], 0, 1
    for _ in range(401):  # not a multiple of four: the last packets are checked with lanes past the batch's end
        kind = rng.choice(["good", "good", "overrun", "trailing", "count-high", "count-low", "heartbeat", "arp"])
        n = int(rng.integers(1, 9))
        packet = mold(S, seq, [D1] * n)
        if kind == "good":
            want += range(seq, seq + n)
        elif kind == "heartbeat":
            packet = mold(S, seq)
        elif kind != "arp":
            bad += 1
            packet = {"overrun": packet[:-1], "trailing": packet + b"\x00",
                      "count-high": mold(S, seq, [D1] * n, count=n + 1),
                      "count-low": mold(S, seq, [D1] * (n + 1), count=n)}[kind]
        frames.append(bytes(Ether() / ARP()) if kind == "arp" else frame(packet))
        seq += n
    msgs, c, _ = run(tmp_path, frames)
    assert [m["seq"] for m in msgs] == want
    assert c[C.MALFORMED_PACKETS] == bad > 50


def test_link_layers_and_skips(tmp_path):
    good = mold(S, 1, [D1])
    ip = IP(src="10.9.9.9", dst="233.54.12.111", flags="DF")
    frames = [
        bytes(Ether() / Dot1AD(vlan=5) / Dot1Q(vlan=141) / ip / UDP(dport=26477) / good),  # QinQ
        bytes(Ether() / IP(src="10.9.9.9", dst="233.54.12.111", options=b"\x01\x01\x01\x00") / UDP() / good),
        bytes(Ether() / ARP()),
        bytes(Ether() / IPv6() / UDP() / good),
        bytes(Ether() / ip / TCP() / good),
        bytes(Ether() / IP(dst="233.54.12.111", flags="MF") / UDP() / good),
        bytes(Ether() / IP(dst="233.54.12.111", frag=10) / UDP() / good),
        bytes(Ether() / ip / UDP() / good)[:-3],  # capture cut inside the payload
        bytes(Ether() / ip / UDP(len=4) / good),  # UDP length below its own header
    ]
    msgs, c, _ = run(tmp_path, frames)
    assert len(msgs) == 2 and c[C.PACKETS] == 2
    assert (c[C.NON_IPV4], c[C.NON_UDP], c[C.IP_FRAGMENTS], c[C.TRUNCATED_FRAMES], c[C.BAD_HEADERS]) == (2, 1, 2, 1, 1)


def test_group_filter(tmp_path):
    frames = [frame(mold(S, 1, [D1]), port=26477), frame(mold(S, 2, [D1]), group="233.54.12.112", port=26477),
              frame(mold(S, 3, [D1]), port=26478)]
    from xdpfeed.multicast.itch.pipeline import parse_group

    msgs, c, _ = run(tmp_path, frames, groups=[parse_group("233.54.12.111:26477")])
    assert [m["seq"] for m in msgs] == [1] and c[C.FILTERED] == 2


def test_ethernet_padding_is_not_part_of_the_payload(tmp_path):
    """Short frames are padded to 60 bytes on the wire; the IPv4/UDP lengths say where data ends."""
    f = frame(mold(S, 1))  # heartbeat: 14 + 20 + 8 + 20 = 62 already; make a shorter one by hand
    short = bytes(Ether() / IP(dst="233.54.12.111") / UDP() / b"x")
    padded = short + b"\x00" * (60 - len(short))
    msgs, c, _ = run(tmp_path, [f, padded])
    assert c[C.MALFORMED_PACKETS] == 1 and c[C.HEARTBEATS] == 1  # the 1-byte payload, not 15 bytes


def test_index_capacity_splits_between_packets(tmp_path):
    """More blocks than one batch holds: the walk stops before a packet and resumes there."""
    from xdpfeed.multicast.itch.pipeline import Decode

    frames = [frame(mold(S, 1 + 60 * i, [D1] * 60)) for i in range(1200)]  # 72,000 messages
    msgs, c, r = run(tmp_path, frames)
    assert [m["seq"] for m in msgs] == list(range(1, 72001))
    assert isinstance(r, Decode) and c[C.DECODED] == 72000


def test_session_table_overflow_is_counted(tmp_path):
    frames = [frame(mold(b"S%09d" % i, 1, [D1])) for i in range(260)]
    msgs, c, r = run(tmp_path, frames)
    assert len(r.sessions.names()) == 256 and c[C.SESSIONS_OVERFLOW] == 4 and len(msgs) == 256
    assert np.all(r.sessions.messages[:256] == 1)
