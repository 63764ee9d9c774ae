"""TCP reassembly from captures: split, retransmitted, reordered and missing segments."""

import random

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Dot1Q, Ether

from xdpfeed.capture.tcp_stream import reassemble

from helpers import write_pcap

CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 15000)


def seg(src, dst, seq, data=b"", flags="PA", vlan=None):
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    return bytes(l2 / IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], seq=seq, flags=flags) / data)


def chunks(data: bytes, rng, isn):
    out, pos = [], 0
    while pos < len(data):
        n = rng.randrange(1, 40)
        out.append((isn + pos, data[pos : pos + n]))
        pos += n
    return out


def streams(path):
    return {(d.src, d.dst): d for d in reassemble(str(path))}


def test_split_reordered_retransmitted_segments_come_back_whole(tmp_path):
    rng = random.Random(3)
    up = bytes(rng.randrange(256) for _ in range(3000))
    down = bytes(rng.randrange(256) for _ in range(5000))
    isn_c, isn_s = 0xFFFFFF00, 12345  # the client's sequence numbers wrap around 2^32
    frames = [seg(CLIENT, SERVER, isn_c, flags="S"), seg(SERVER, CLIENT, isn_s, flags="SA", vlan=5)]
    pieces = [(CLIENT, SERVER, s + 1, d) for s, d in chunks(up, rng, isn_c)]
    pieces += [(SERVER, CLIENT, s + 1, d) for s, d in chunks(down, rng, isn_s)]
    pieces += [pieces[i] for i in rng.sample(range(len(pieces)), 20)]  # retransmissions
    rng.shuffle(pieces)  # and everything out of order
    frames += [seg(a, b, s % (1 << 32), d) for a, b, s, d in pieces]
    got = streams(write_pcap(tmp_path / "s.pcap", frames))
    c, s = got[(CLIENT, SERVER)], got[(SERVER, CLIENT)]
    assert c.assemble() == (up, 0) and s.assemble() == (down, 0)
    assert c.retransmitted_bytes + s.retransmitted_bytes > 0 and c.out_of_order > 0
    assert c.conflicting_bytes == s.conflicting_bytes == 0


def test_overlapping_retransmission_that_disagrees_is_counted(tmp_path):
    frames = [seg(CLIENT, SERVER, 99, flags="S"), seg(CLIENT, SERVER, 100, b"abcdef"),
              seg(CLIENT, SERVER, 103, b"XYZghi")]  # bytes 103..105 sent again, differently
    d = streams(write_pcap(tmp_path / "o.pcap", frames))[(CLIENT, SERVER)]
    assert d.assemble() == (b"abcdefghi", 0)
    assert d.conflicting_bytes == 3


def test_a_hole_ends_the_stream_and_says_how_much_is_missing(tmp_path):
    frames = [seg(CLIENT, SERVER, 0, flags="S"), seg(CLIENT, SERVER, 1, b"hello"), seg(CLIENT, SERVER, 11, b"world"),
              seg(CLIENT, SERVER, 16, flags="FA")]
    d = streams(write_pcap(tmp_path / "h.pcap", frames))[(CLIENT, SERVER)]
    assert d.assemble() == (b"hello", 10) and d.fin


def test_capture_started_mid_connection(tmp_path):
    frames = [seg(SERVER, CLIENT, 5000, b"late "), seg(SERVER, CLIENT, 5005, b"start")]
    d = streams(write_pcap(tmp_path / "m.pcap", frames))[(SERVER, CLIENT)]
    assert d.assemble() == (b"late start", 0)


def test_arrival_times_follow_the_pieces(tmp_path):
    frames = [seg(CLIENT, SERVER, 0, flags="S"), seg(CLIENT, SERVER, 6, b"world"), seg(CLIENT, SERVER, 1, b"hello")]
    d = streams(write_pcap(tmp_path / "t.pcap", frames))[(CLIENT, SERVER)]
    # write_pcap stamps frame i at 1700000000 + i seconds and i ns
    assert d.arrival() == [(5, 1700000002 * 10**9 + 2), (10, 1700000001 * 10**9 + 1)]


def test_mid_connection_starts_at_the_earliest_byte_and_after_early_holes(tmp_path):
    # no SYN: the first segment seen is not the earliest (its predecessor arrives next)
    frames = [seg(CLIENT, SERVER, 1010, b"KLMNO"), seg(CLIENT, SERVER, 1000, b"ABCDEFGHIJ")]
    d = streams(write_pcap(tmp_path / "m.pcap", frames))[(CLIENT, SERVER)]
    assert d.mid_connection and d.assemble() == (b"ABCDEFGHIJKLMNO", 0) and d.skipped_at_start == 0
    # a segment in flight when the capture began is missing: read from after that early hole
    frames = [seg(CLIENT, SERVER, 1000, b"ab"), seg(CLIENT, SERVER, 1005, b"fghij"), seg(CLIENT, SERVER, 1010, b"kl")]
    d = streams(write_pcap(tmp_path / "h.pcap", frames))[(CLIENT, SERVER)]
    assert d.assemble() == (b"fghijkl", 0) and d.skipped_at_start == 5
    assert d.arrival() == [(5, 1_700_000_001_000_000_001), (7, 1_700_000_002_000_000_002)]
    # with a SYN the same hole is a hole: nothing after it is invented or skipped over
    frames = [seg(CLIENT, SERVER, 999, flags="S")] + frames
    d = streams(write_pcap(tmp_path / "s.pcap", frames))[(CLIENT, SERVER)]
    assert d.assemble() == (b"ab", 10) and d.skipped_at_start == 0
