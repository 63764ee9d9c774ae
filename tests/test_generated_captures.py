"""The decoder against the captures written by pcaps/generate.py.

Expected values are the literals the generator was told to write (its tables are imported), never
the decoder's own output: every field of every message in all_types.pcap, the sessions and sequence
numbers, and the exact counters for malformed.pcap. The CLI is run as a subprocess for the output
formats and filters. The generator itself is checked too: deterministic (a fresh run equals the
committed files), its packing matches the byte vectors of docs/protocols.md §4.6, and its frames have the
framings the file descriptions claim.
"""

import csv
import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from xdpfeed.multicast.itch import output
from xdpfeed.multicast.itch.pipeline import Decode, parse_group
from xdpfeed.multicast.itch.schema import TYPES
from xdpfeed.multicast.wire.counters import as_dict

REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "pcaps" / "generated"


def _load_generator():
    spec = importlib.util.spec_from_file_location("pcaps_generate", REPO / "pcaps" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


gen = _load_generator()

ALL_TYPES = GENERATED / "all_types.pcap"
MALFORMED = GENERATED / "malformed.pcap"
PCAPNG = GENERATED / "two_interfaces.pcapng"
RAW_IPV4 = GENERATED / "raw_ipv4.pcap"

GROUP_A = "233.54.12.111:26477"
GROUP_B = "233.54.12.112:26478"


# ------------------------------------------------------------------------------------------ helpers


def expected_messages(molds) -> list[dict]:
    """What the decoder must output for these MoldUDP64 packets: one dict per ITCH message block
    (raw-bytes blocks are the deliberately bad ones and are skipped), seq = header seq + block index,
    alpha values without their trailing spaces."""
    out = []
    for mold in molds:
        for k, m in enumerate(mold.messages):
            if isinstance(m, bytes):
                continue
            d = {"session": mold.session.rstrip(" "), "seq": mold.seq + k}
            d.update({key: v.rstrip(" ") if isinstance(v, str) else v for key, v in m.items()})
            out.append(d)
    return out


def decode(path, groups=()):
    """(run, message dicts) through the library: Decode(...).batches() + output.messages(...)."""
    run = Decode(str(path), groups=[parse_group(g) for g in groups])
    msgs = []
    for _, tables in run.batches():
        msgs += output.messages(tables, run.sessions.names(), True, output.type_codes(TYPES), float("inf"))
    return run, msgs


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xdpfeed.multicast.cli", "decode", *args],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )


def pcap_records(path: Path) -> tuple[bytes, list[tuple[bytes, int, int]]]:
    """Classic little-endian pcap → (global header, [(record bytes incl. header, caplen, wirelen)])."""
    data = path.read_bytes()
    pos, recs = 24, []
    while pos < len(data):
        _, _, incl, orig = struct.unpack_from("<IIII", data, pos)
        recs.append((data[pos:pos + 16 + incl], incl, orig))
        pos += 16 + incl
    assert pos == len(data)
    return data[:24], recs


def molds_of(entries):
    return [e[2] for e in entries]


ALL_MOLDS = molds_of(gen.ALL_TYPES)
ALL_EXPECTED = expected_messages(ALL_MOLDS)


@pytest.fixture(scope="module")
def all_types_run():
    return decode(ALL_TYPES)


# --------------------------------------------------------------------------------- the generator


def test_generator_is_deterministic_in_process(tmp_path):
    written = gen.generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(gen.FILES)
    for p in written:
        assert p.read_bytes() == (GENERATED / p.name).read_bytes(), p.name


def test_generator_script_reproduces_committed_files(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "pcaps" / "generate.py"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for name in gen.FILES:
        assert (tmp_path / name).read_bytes() == (GENERATED / name).read_bytes(), name


def test_committed_files_are_small():
    for name in gen.FILES:
        assert (GENERATED / name).stat().st_size < 8192, name


# docs/protocols.md §4.6: real packets, hex as printed there (but the 'F' attribution LUBS, not UBSS).
VECTORS = [
    ("551db300001f1aced771e90000000000e6897f000000000145f2c700000064001036c8",
     gen.msg("U", 7603, 0, 34_199_999_836_649, original_order_reference_number=15_108_479,
             new_order_reference_number=21_361_351, shares=100, price=1_062_600)),
    ("440ab100001f1acf4c4eb70000000001665d6a",
     gen.msg("D", 2737, 0, 34_200_007_495_351, order_reference_number=23_485_802)),
    ("41197200001f23e0981ae10000000000792f9f42000000014d45544120202020000c4950",
     gen.msg("A", 6514, 0, 0x1F23E0981AE1, order_reference_number=7_942_047, buy_sell_indicator="B", shares=1,
             stock="META", price=805_200)),
    ("46197200001f23e0981ae1000000000094d0a742000000054d45544120202020000c394c4c554253",
     gen.msg("F", 6514, 0, 0x1F23E0981AE1, order_reference_number=9_752_743, buy_sell_indicator="B", shares=5,
             stock="META", price=801_100, attribution="LUBS")),
]


@pytest.mark.parametrize("hexbytes, m", VECTORS, ids=[m["type"] for _, m in VECTORS])
def test_generator_packs_protocol_test_vectors(hexbytes, m):
    assert gen.pack_message(m) == bytes.fromhex(hexbytes)


def test_generator_mold_header_vector():
    mold = gen.Mold("000010059B", 14_757_701, (VECTORS[0][1],))
    assert mold.payload()[:20] == bytes.fromhex("30303030313030353942" "0000000000e12f45" "0001")
    assert mold.payload()[20:22] == b"\x00\x23"


def test_all_types_covers_every_type_and_edge():
    types = {m["type"] for m in ALL_EXPECTED}
    assert types == set("SRHYLVWKJhAFECXDUPQBINO") == set(TYPES)
    values = [v for m in ALL_EXPECTED for v in m.values()]
    for edge in (0x77359400, 0xFFFFFFFF, 2**64 - 1, 2**63, 86_399_999_999_999, 2**48 - 1, 0):
        assert edge in values, edge
    assert {m["session"] for m in ALL_EXPECTED} == {"SESSIONA01", "SESSIONB02", "C3"}
    counts = [m.count for m in ALL_MOLDS]
    assert counts.count(0) == 2 and counts.count(0xFFFF) == 2
    assert max(len(m.messages) for m in ALL_MOLDS) >= 30
    assert {"eth", "vlan", "qinq", "ipopt"} == {e[0] for e in gen.ALL_TYPES}
    assert {e[1] for e in gen.ALL_TYPES} == {gen.GROUP_A, gen.GROUP_B}


def _ethertypes_and_ip(frame: bytes, linktype: int):
    """(ethertypes seen, IPv4 header offset) by walking the link header with struct."""
    types = []
    if linktype == 101:
        return types, 0
    p = 12 if linktype == 1 else 14
    (et,) = struct.unpack_from(">H", frame, p)
    types.append(et)
    p += 2
    while et in (0x8100, 0x88A8):
        (et,) = struct.unpack_from(">H", frame, p + 2)
        types.append(et)
        p += 4
    return types, p


FRAMINGS = {"eth": [0x0800], "ipopt": [0x0800], "vlan": [0x8100, 0x0800], "qinq": [0x88A8, 0x8100, 0x0800]}


@pytest.mark.parametrize("i", range(len(gen.ALL_TYPES)))
def test_all_types_frame_framing(i):
    framing, (group_ip, port), mold = gen.ALL_TYPES[i]
    head, recs = pcap_records(ALL_TYPES)
    assert struct.unpack("<IHHiIII", head)[0] == 0xA1B23C4D  # nanosecond pcap
    assert struct.unpack("<IHHiIII", head)[6] == 1
    rec, incl, orig = recs[i]
    frame = rec[16:]
    types, ip = _ethertypes_and_ip(frame, 1)
    assert types == FRAMINGS[framing]
    ihl = (frame[ip] & 0x0F) * 4
    assert ihl == (28 if framing == "ipopt" else 20)
    assert frame[ip + 16:ip + 20] == bytes(int(x) for x in group_ip.split("."))
    assert struct.unpack_from(">H", frame, ip + ihl + 2)[0] == port
    assert frame[ip + ihl + 8:] == mold.payload()
    assert incl == orig == len(frame)


def test_pcapng_has_ethernet_and_sll_interfaces():
    data = PCAPNG.read_bytes()
    pos, idbs, epb_ifaces = 0, [], []
    while pos < len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 1:
            idbs.append(struct.unpack_from("<H", data, pos + 8)[0])
        elif btype == 6:
            epb_ifaces.append(struct.unpack_from("<I", data, pos + 8)[0])
        pos += blen
    assert idbs == [1, 113]
    assert epb_ifaces == [iface for iface, _ in gen.PCAPNG]


def test_raw_ipv4_linktype():
    head, recs = pcap_records(RAW_IPV4)
    assert struct.unpack("<IHHiIII", head)[6] == 101
    assert [rec[16] >> 4 for rec, _, _ in recs] == [4] * len(gen.RAW_IPV4)
    assert [(rec[16] & 0x0F) * 4 for rec, _, _ in recs] == [
        28 if gen.ALL_TYPES[k][0] == "ipopt" else 20 for k in gen.RAW_IPV4
    ]


# -------------------------------------------------------------------------------- all_types.pcap


def test_all_types_message_count(all_types_run):
    _, got = all_types_run
    assert len(got) == len(ALL_EXPECTED) == 81


@pytest.mark.parametrize(
    "i", range(len(ALL_EXPECTED)),
    ids=[f"{i:02d}-{m['session']}-{m['seq']}-{m['type']}" for i, m in enumerate(ALL_EXPECTED)],
)
def test_all_types_every_field(all_types_run, i):
    _, got = all_types_run
    assert got[i] == ALL_EXPECTED[i]


def _sum_caplen(path):
    return sum(incl for _, incl, _ in pcap_records(path)[1])


def test_all_types_counters(all_types_run):
    run, _ = all_types_run
    assert as_dict(run.counters) == {
        "frames": 9, "frame_bytes": _sum_caplen(ALL_TYPES), "non_ipv4": 0, "non_udp": 0, "ip_fragments": 0,
        "truncated_frames": 0, "bad_headers": 0, "unsupported_linktype": 0, "filtered": 0, "packets": 9,
        "malformed_packets": 0, "heartbeats": 2, "end_of_session": 2, "sessions_overflow": 0, "messages": 81,
        "unknown_types": 0, "bad_length_messages": 0, "decoded": 81, "truncated_records": 0, "after_end_of_session": 0,
    }
    assert as_dict(run.counters)["frame_bytes"] == 2849


def test_all_types_sessions(all_types_run):
    run, _ = all_types_run
    s = run.sessions
    n = int(s.count[0])
    got = [(s.name(i), int(s.first_seq[i]), int(s.end_seq[i]), int(s.messages[i])) for i in range(n)]
    assert got == [
        ("SESSIONA01", 1, 1 + len(gen.ORDINARY) + len(gen.MAXIMA), len(gen.ORDINARY) + len(gen.MAXIMA)),
        ("SESSIONB02", 1, 1 + len(gen.ZEROS) + len(gen.MANY), len(gen.ZEROS) + len(gen.MANY)),
        ("C3", 2**32, 2**32 + 2, 2),
    ]
    assert got[0][2] == 42 and got[1][2] == 39


def _molds_to(group):
    return [mold for _, g, mold in gen.ALL_TYPES if g == group]


@pytest.mark.parametrize("group, want", [(GROUP_A, gen.GROUP_A), (GROUP_B, gen.GROUP_B)], ids=["A", "B"])
def test_group_filter_library(group, want):
    run, got = decode(ALL_TYPES, groups=[group])
    assert got == expected_messages(_molds_to(want))
    c = as_dict(run.counters)
    kept = len(_molds_to(want))
    assert (c["filtered"], c["packets"], c["frames"]) == (9 - kept, kept, 9)
    assert c["heartbeats"] == 1 and c["end_of_session"] == 1


def test_group_filter_two_groups_keeps_all():
    run, got = decode(ALL_TYPES, groups=[GROUP_A, GROUP_B])
    assert got == ALL_EXPECTED
    assert as_dict(run.counters)["filtered"] == 0


def test_group_filter_unmatched_port_filters_everything():
    run, got = decode(ALL_TYPES, groups=["233.54.12.111:26478"])
    assert got == []
    assert as_dict(run.counters)["filtered"] == 9 and as_dict(run.counters)["packets"] == 0


# ------------------------------------------------------------------------------- pcapng / raw IPv4


@pytest.mark.parametrize("path, indices", [
    (PCAPNG, [k for _, k in gen.PCAPNG]),
    (RAW_IPV4, gen.RAW_IPV4),
], ids=["pcapng-eth+sll", "raw-ipv4"])
def test_other_linktypes_every_field(path, indices):
    molds = [gen.ALL_TYPES[k][2] for k in indices]
    run, got = decode(path)
    assert got == expected_messages(molds)
    c = as_dict(run.counters)
    assert c["frames"] == c["packets"] == len(molds)
    assert c["messages"] == c["decoded"] == len(got) > 0
    assert c["heartbeats"] == sum(m.count == 0 for m in molds)
    assert c["end_of_session"] == sum(m.count == 0xFFFF for m in molds)
    for k in ("malformed_packets", "truncated_frames", "bad_headers", "unsupported_linktype", "filtered"):
        assert c[k] == 0, k


# -------------------------------------------------------------------------------- malformed.pcap

# Exact counters for malformed.pcap (also in pcaps/generated/README.md). 19 frames: 7 dropped at the
# frame level (2 non-IPv4, 1 non-UDP, 2 fragments, 1 truncated, 1 bad header), 5 malformed MoldUDP64
# packets, 7 accepted packets (5 with data, 1 heartbeat, 1 end of session) carrying 12 message blocks:
# 9 decoded, 1 unknown type, 2 bad length (a 20-byte 'D' and a zero-length block).
MALFORMED_COUNTERS = {
    "frames": 19, "frame_bytes": 1686, "non_ipv4": 2, "non_udp": 1, "ip_fragments": 2, "truncated_frames": 1,
    "bad_headers": 1, "unsupported_linktype": 0, "filtered": 0, "packets": 7, "malformed_packets": 5,
    "heartbeats": 1, "end_of_session": 1, "sessions_overflow": 0, "messages": 12, "unknown_types": 1,
    "bad_length_messages": 2, "decoded": 9, "truncated_records": 0, "after_end_of_session": 0,
}

# Per frame, in file order: the counters (besides frames / frame_bytes) that frame alone must move.
MALFORMED_FRAMES = [
    ("good", {"packets": 1, "messages": 2, "decoded": 2}),
    ("block_overrun", {"malformed_packets": 1}),
    ("unknown_and_bad_length", {"packets": 1, "messages": 4, "decoded": 2, "unknown_types": 1,
                                "bad_length_messages": 1}),
    ("trailing_bytes", {"malformed_packets": 1}),
    ("short_header", {"malformed_packets": 1}),
    ("count_too_big", {"malformed_packets": 1}),
    ("good", {"packets": 1, "messages": 1, "decoded": 1}),
    ("ip_fragment_mf", {"ip_fragments": 1}),
    ("ip_fragment_offset", {"ip_fragments": 1}),
    ("tcp", {"non_udp": 1}),
    ("arp", {"non_ipv4": 1}),
    ("ipv6", {"non_ipv4": 1}),
    ("snaplen_truncated", {"truncated_frames": 1}),
    ("udp_length_overrun", {"bad_headers": 1}),
    ("zero_length_block", {"packets": 1, "messages": 2, "decoded": 1, "bad_length_messages": 1}),
    ("eos_with_data", {"malformed_packets": 1}),
    ("heartbeat", {"packets": 1, "heartbeats": 1}),
    ("good", {"packets": 1, "messages": 3, "decoded": 3}),
    ("end_of_session", {"packets": 1, "end_of_session": 1}),
]

# Packets whose messages are delivered (the others contribute no message).
DELIVERING = {"good", "unknown_and_bad_length", "zero_length_block"}


def test_malformed_table_matches_generator():
    assert [label for label, _, _ in gen.MALFORMED] == [label for label, _ in MALFORMED_FRAMES]
    assert gen.MALFORMED_COUNTERS == {k: v for k, v in MALFORMED_COUNTERS.items() if k != "frame_bytes"}
    total = {k: 0 for k in MALFORMED_COUNTERS}
    for _, deltas in MALFORMED_FRAMES:
        for k, v in deltas.items():
            total[k] += v
    total["frames"] = len(MALFORMED_FRAMES)
    total["frame_bytes"] = _sum_caplen(MALFORMED)
    assert total == MALFORMED_COUNTERS


def test_malformed_counters_exact():
    run, _ = decode(MALFORMED)
    assert as_dict(run.counters) == MALFORMED_COUNTERS


def test_malformed_good_messages_still_decoded():
    _, got = decode(MALFORMED)
    want = expected_messages([mold for label, _, mold in gen.MALFORMED if label in DELIVERING])
    assert got == want
    assert [(m["seq"], m["type"]) for m in got] == [
        (1, "A"), (2, "D"), (3, "S"), (6, "E"), (7, "X"), (9, "D"), (10, "A"), (11, "F"), (12, "C"),
    ]


def test_malformed_sessions():
    run, _ = decode(MALFORMED)
    s = run.sessions
    got = (s.names(), int(s.first_seq[0]), int(s.end_seq[0]), int(s.messages[0]))
    assert got == (["MALFORMED1"], 1, 13, 12)


def test_malformed_snaplen_frame_is_cut():
    _, recs = pcap_records(MALFORMED)
    i = [label for label, _ in MALFORMED_FRAMES].index("snaplen_truncated")
    _, incl, orig = recs[i]
    assert incl == gen.SNAPLEN_CUT < orig


@pytest.mark.parametrize("i", range(len(MALFORMED_FRAMES)),
                         ids=[f"{i:02d}-{label}" for i, (label, _) in enumerate(MALFORMED_FRAMES)])
def test_malformed_each_frame_alone(tmp_path, i):
    """Each frame on its own in a pcap moves exactly its own counters."""
    head, recs = pcap_records(MALFORMED)
    rec, incl, _ = recs[i]
    path = tmp_path / "one.pcap"
    path.write_bytes(head + rec)
    run, _ = decode(path)
    want = {k: 0 for k in MALFORMED_COUNTERS}
    want.update(MALFORMED_FRAMES[i][1], frames=1, frame_bytes=incl)
    assert as_dict(run.counters) == want


@pytest.mark.parametrize("extra", [b"\x00\x01\x02", b"\x00\x13" + bytes(19)], ids=["junk", "a-block"])
def test_heartbeat_with_data_is_malformed(tmp_path, extra):
    payload = gen.Mold("MALFORMED1", 5, count=gen.HEARTBEAT).payload() + extra
    frame = bytes(gen.udp_frame("eth", gen.GROUP_A, payload, 1))
    head, _ = pcap_records(MALFORMED)
    path = tmp_path / "hb.pcap"
    path.write_bytes(head + struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame)
    run, _ = decode(path)
    c = as_dict(run.counters)
    assert (c["malformed_packets"], c["heartbeats"], c["packets"]) == (1, 0, 0)


# ---------------------------------------------------------------------------------------- the CLI


def _jsonl(r):
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_cli_jsonl_all_messages():
    r = cli(str(ALL_TYPES), "-T", "jsonl")
    assert _jsonl(r) == ALL_EXPECTED
    assert r.stderr == ""  # nothing skipped


def test_cli_group_filter():
    r = cli(str(ALL_TYPES), "--group", GROUP_B)
    assert _jsonl(r) == expected_messages(_molds_to(gen.GROUP_B))
    assert {m["session"] for m in _jsonl(r)} == {"SESSIONB02"}


@pytest.mark.parametrize("types, count", [("A,D", None), ("V,Q,I", None), ("D", 3), (None, 5), (None, 81)])
def test_cli_type_filter_and_count(types, count):
    args = [str(ALL_TYPES)]
    want = ALL_EXPECTED
    if types:
        args += ["--type", types]
        want = [m for m in want if m["type"] in types.split(",")]
    if count:
        args += ["-c", str(count)]
        want = want[:count]
    assert _jsonl(cli(*args)) == want
    assert len(want) > 0


def test_cli_csv():
    r = cli(str(ALL_TYPES), "-T", "csv", "--type", "A,F")
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == [
        "session", "seq", "type", "stock_locate", "tracking_number", "timestamp",
        "order_reference_number", "buy_sell_indicator", "shares", "stock", "price", "attribution",
    ]
    want = [m for m in ALL_EXPECTED if m["type"] in "AF"]
    assert len(rows) == 1 + len(want) == 6
    for row, m in zip(rows[1:], want, strict=True):
        assert dict(zip(rows[0], row, strict=True)) == {k: str(m.get(k, "")) for k in rows[0]}
    # the maxima 'A': uint64 and price4 at their largest, written as plain integers
    assert rows[3] == ["SESSIONA01", "24", "A", "65535", "65535", "86399999999999",
                       "18446744073709551615", "S", "4294967295", "ZZZZZZZZ", "2000000000", ""]


def test_cli_summary():
    r = cli(str(ALL_TYPES), "-T", "summary")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "frames: 9 (2849 bytes)" in lines
    assert "packets: 9  heartbeats: 2  end_of_session: 2  malformed: 0" in lines
    assert "messages: 81  decoded: 81  unknown_types: 0  bad_length: 0  truncated_records: 0" in lines
    assert "printed: 81" in lines
    i = lines.index("sessions: 3")
    assert lines[i + 1:i + 4] == [
        "  SESSIONA01  seq 1..41  messages 41",
        "  SESSIONB02  seq 1..38  messages 38",
        "  C3  seq 4294967296..4294967297  messages 2",
    ]
    rest = lines[lines.index("by type:") + 1:]
    by_type = {ln.split()[0]: int(ln.split()[-1]) for ln in rest if ln.startswith("  ")}
    want = {t: sum(m["type"] == t for m in ALL_EXPECTED) for t in TYPES}
    assert by_type == want and by_type["D"] == 32


def test_cli_summary_group_and_count():
    r = cli(str(ALL_TYPES), "-T", "summary", "--group", GROUP_A, "-c", "30")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "printed: 30" in lines
    assert any(ln.startswith("frames skipped:") and ln.endswith("filtered: 4") for ln in lines)


def test_cli_malformed():
    r = cli(str(MALFORMED))
    got = _jsonl(r)
    assert got == expected_messages([mold for label, _, mold in gen.MALFORMED if label in DELIVERING])
    assert r.stderr == (
        "xdpfeed decode: skipped: 2 non ipv4, 1 non udp, 2 ip fragments, 1 truncated frames, 1 bad headers, "
        "5 malformed packets, 1 unknown types, 2 bad length messages\n"
    )


def test_cli_malformed_summary():
    r = cli(str(MALFORMED), "-T", "summary")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "packets: 7  heartbeats: 1  end_of_session: 1  malformed: 5" in lines
    assert ("frames skipped: non_ipv4: 2  non_udp: 1  ip_fragments: 2  truncated_frames: 1  bad_headers: 1  "
            "unsupported_linktype: 0  filtered: 0") in lines
    assert "messages: 12  decoded: 9  unknown_types: 1  bad_length: 2  truncated_records: 0" in lines
    assert "  MALFORMED1  seq 1..12  messages 12" in lines
