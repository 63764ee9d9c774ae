"""`xdpfeed orders` and OUCH in `xdpfeed decode`, end to end on captures of whole sessions.

The captures come from pcaps/generate_ouch.py (the simulated gateway's real answers to a fixed script,
cut into TCP segments that end inside messages, some sent twice, some swapped). What each order must
end as is written out here by hand from the script, not computed by the code under test.
"""

import importlib.util
import json
import struct
from pathlib import Path

import pytest

from xdpfeed.capture.tcp_stream import reassemble
from xdpfeed.multicast.cli.main import main

REPO = Path(__file__).resolve().parent.parent
GENERATED = REPO / "pcaps" / "generated"
CAPTURES = {"4.2": GENERATED / "ouch42_session.pcap", "5.0": GENERATED / "ouch50_session.pcap"}
OMI_ENTER = REPO / "pcaps" / "omi" / "ouch50" / "Nasdaq.Nsm.Ouch.v5.0" / "EnterOrderMessage.pcap"
P = 1_500_000
SESSION = "10.1.0.2:40100>10.1.0.1:15000"

# order k → state, side, quantity, price, leaves, executed, Σ price × shares, lifecycle events
EXPECTED = {
    1: ("filled", "B", 100, P, 0, 100, 100 * P, ["enter", "accepted", "executed", "executed"]),
    2: ("canceled", "S", 200, P, 0, 0, 0, ["enter", "accepted", "cancel-request", "canceled", "cancel-request",
                                           "canceled"]),
    3: ("replaced", "B", 300, P, 0, 0, 0, ["enter", "accepted", "executed", "replace-request", "replaced-by",
                                           "broken"]),
    4: ("canceled", "B", 150, P + 100, 0, 0, 0, ["replace-request", "replaces", "cancel-request", "canceled"]),
    5: ("rejected", "X", 100, P, 0, 0, 0, ["enter", "rejected"]),
    6: ("canceled", "B", 100, P, 0, 50, 50 * P, ["enter", "accepted", "cancel-request", "cancel-pending", "executed",
                                                 "canceled"]),
    7: ("accepted", "T", 100, P, 60, 0, 0, ["enter", "accepted", "modify-request", "modified"]),
}
OUTBOUND_TYPES = "S A E A C A E U J A P A M E E C C C B S".split()


def oid(version, k):
    return f"ORD{k:04d}" if version == "4.2" else k


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


# ----------------------------------------------------------------------- pcap surgery for damage tests
def records(path):
    raw = Path(path).read_bytes()
    head, pos, out = raw[:24], 24, []
    while pos < len(raw):
        n = struct.unpack_from("<I", raw, pos + 8)[0]
        out.append(raw[pos : pos + 16 + n])
        pos += 16 + n
    return head, out


def tcp_of(rec):
    frame = rec[16:]
    sport, _, seq = struct.unpack_from(">HHI", frame, 34)
    return sport, seq, len(frame) - 54


# ------------------------------------------------------------------------------------------ tests
def test_generator_writes_the_committed_captures_byte_for_byte(tmp_path):
    spec = importlib.util.spec_from_file_location("generate_ouch", REPO / "pcaps" / "generate_ouch.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.main(["--out", str(tmp_path)]) == 0
    for p in CAPTURES.values():
        assert (tmp_path / p.name).read_bytes() == p.read_bytes(), p.name


@pytest.mark.parametrize("version", CAPTURES)
def test_captures_are_hard_for_a_reassembler(version):
    dirs = {d.src[1]: d for d in reassemble(str(CAPTURES[version]))}
    client, server = dirs[40100], dirs[15000]
    for d in (client, server):
        assert d.out_of_order > 0 and d.retransmitted_bytes > 0 and d.conflicting_bytes == 0
        data, missing = d.assemble()
        assert missing == 0
        # many more segments than SoupBinTCP packets: most segments end inside a packet
        packets, pos = 0, 0
        while pos < len(data):
            pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
            packets += 1
        assert pos == len(data) and d.segments > 3 * packets


@pytest.mark.parametrize("version", CAPTURES)
def test_every_lifecycle_end_to_end(capsys, version):
    rc, out, err = run(capsys, "orders", CAPTURES[version], "-T", "jsonl")
    assert rc == 0 and err == ""
    recs = jsonl(out)
    orders = {r["id"]: r for r in recs if r["record"] == "order"}
    assert list(orders) == [oid(version, k) for k in EXPECTED]
    for k, (state, side, qty, price, leaves, executed, notional, events) in EXPECTED.items():
        o = orders[oid(version, k)]
        assert (o["state"], o["side"], o["quantity"], o["price"], o["leaves"], o["executed"]) == \
            (state, side, qty, price, leaves, executed), k
        assert (o["avg_price_num"], o["avg_price_den"]) == (notional, executed), k
        assert [e["event"] for e in o["events"]] == events, k
        assert o["session"] == SESSION
        times = [e["time_ns"] for e in o["events"]]
        assert times == sorted(times), k  # each request before its answer, in capture order
        for e in o["events"]:
            assert (e["seq"] is None) == (e["direction"] == "in"), (k, e)
    assert orders[oid(version, 3)]["replaced_by"] == oid(version, 4)
    assert orders[oid(version, 4)]["replaces"] == oid(version, 3)
    # the broken trade takes order 3's 100 executed shares back; its match number is the first fill's
    ev3 = orders[oid(version, 3)]["events"]
    assert ev3[-1]["args"][:2] == [ev3[2]["args"][2], 100]
    (sess,) = [r for r in recs if r["record"] == "session"]
    assert sess["ouch"] == version and sess["anomalies"] == [] and sess["damage"] == [] and sess["undecoded"] == 0
    assert (sess["messages_in"], sess["messages_out"]) == (12, 20)
    assert sess["login"] == {"user": "TRADR1", "session": "(blank)", "sequence": 1}
    assert sess["accepted"] == {"session": "OUCH000001", "sequence": 1}
    assert sess["system_events"] == ["S", "E"]
    assert sess["states"] == {"filled": 1, "canceled": 3, "replaced": 1, "rejected": 1, "accepted": 1}


@pytest.mark.parametrize("version", CAPTURES)
def test_table_shows_final_state_and_lifecycle(capsys, version):
    rc, out, err = run(capsys, "orders", CAPTURES[version])
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith(f"session {SESSION}  user TRADR1  OUCH {version}  messages in 12 out 20  orders 7")
    row6 = next(line for line in lines if line.startswith(str(oid(version, 6)) + " "))
    assert "canceled" in row6 and " 150.0000 " in row6
    assert row6.endswith("cancel-request(0) > cancel-pending > executed(50,1500000,4) > canceled(50,U)")


@pytest.mark.parametrize("version", CAPTURES)
def test_decode_prints_both_directions_in_capture_order(capsys, version):
    rc, out, err = run(capsys, "decode", CAPTURES[version])
    assert rc == 0 and err == ""
    msgs = jsonl(out)
    outbound = [m for m in msgs if m["direction"] == "out"]
    assert [m["type"] for m in outbound] == OUTBOUND_TYPES
    assert [m["seq"] for m in outbound] == list(range(1, 21))
    assert [m["type"] for m in msgs if m["direction"] == "in"] == list("OOXOUOOXOMXX")
    assert [m["time_ns"] for m in msgs] == sorted(m["time_ns"] for m in msgs)
    first_enter = next(m for m in msgs if m["type"] == "O")
    assert first_enter["price"] == P and first_enter["session"] == SESSION
    rc, out, _ = run(capsys, "decode", CAPTURES[version], "-T", "csv", "--type", "E", "-c", "3")
    rows = out.splitlines()
    assert rc == 0 and len(rows) == 4
    assert all(r.split(",")[4] == "E" for r in rows[1:])


def test_version_is_detected_and_a_wrong_one_is_reported(capsys):
    rc, out, err = run(capsys, "orders", CAPTURES["5.0"], "--ouch", "4.2")
    assert rc == 0
    assert "inbound messages did not decode" in err and "outbound messages did not decode" in err
    rc, out, _ = run(capsys, "decode", CAPTURES["4.2"], "--ouch", "auto", "-T", "summary")
    assert rc == 0 and "(OUCH 4.2, 1 sessions)" in out and "out:E: 4" in out


def test_real_omi_enter_order_through_the_cli(capsys):
    rc, out, err = run(capsys, "decode", OMI_ENTER)
    assert rc == 0 and err == ""
    (m,) = jsonl(out)
    # read by hand from the frame against OUCH 5.0 §6.1.1 (also checked byte by byte in test_ouch_codec)
    assert (m["type"], m["user_ref_num"], m["side"], m["quantity"], m["symbol"], m["price"]) == \
        ("O", 113, "T", 225, "CVLT", 630200)
    assert m["cl_ord_id"] == "H8FUB8IV" and m["appendage"] == {"firm": "LIME"}
    assert m["direction"] == "in" and m["seq"] is None


def test_hole_in_a_stream_is_an_error_after_what_came_before(capsys, tmp_path):
    head, recs = records(CAPTURES["5.0"])
    data = [i for i, r in enumerate(recs) if tcp_of(r)[0] == 15000 and tcp_of(r)[2] > 0]
    victim = tcp_of(recs[data[len(data) * 3 // 4]])
    kept = [r for r in recs if tcp_of(r)[:2] != victim[:2]]
    path = tmp_path / "hole.pcap"
    path.write_bytes(head + b"".join(kept))
    rc, out, err = run(capsys, "orders", path, "-T", "jsonl")
    assert rc == 1
    assert "error: server stream has a hole" in err
    orders = [r for r in jsonl(out) if r["record"] == "order"]
    assert orders and orders[0]["state"] != "pending-new"  # the part before the hole was followed


def test_truncated_capture_reports_its_offset(capsys, tmp_path):
    raw = CAPTURES["4.2"].read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(raw[: len(raw) * 2 // 3])
    rc, out, err = run(capsys, "orders", path)
    assert rc == 1 and "error:" in err and "offset" in err and "Traceback" not in err
    assert out.startswith("session ")


def test_capture_begun_mid_session(capsys, tmp_path):
    head, recs = records(CAPTURES["4.2"])
    path = tmp_path / "mid.pcap"
    path.write_bytes(head + b"".join(recs[len(recs) // 2 :]))  # no handshake, no login, half the orders
    rc, out, err = run(capsys, "orders", path, "-T", "jsonl")
    assert rc == 0
    recs = jsonl(out)
    (sess,) = [r for r in recs if r["record"] == "session"]
    assert sess["login"] is None and sess["accepted"] is None
    assert sess["session"] == SESSION  # the client is still told apart from the server
    orders = {r["id"]: r for r in recs if r["record"] == "order"}
    for k in (5, 6, 7):  # entered after the cut: followed to the same end as in the whole capture
        assert orders[oid("4.2", k)]["state"] == EXPECTED[k][0]
        assert [e["event"] for e in orders[oid("4.2", k)]["events"]] == EXPECTED[k][7]
    # answers about orders entered before the capture began are reported, not applied
    assert "anomaly: Broken Trade for unknown order 'ORD0003'" in err
    assert "note: the capture begins inside the server stream" in err


def test_errors_are_one_line(capsys):
    rc, _, err = run(capsys, "orders", GENERATED / "all_types.pcap")
    assert rc == 2 and err.count("\n") == 1 and "no SoupBinTCP session" in err
    rc, _, err = run(capsys, "decode", CAPTURES["5.0"], "--type", "Z")
    assert rc == 2 and "unknown OUCH 5.0 message type Z" in err
    rc, _, err = run(capsys, "decode", CAPTURES["5.0"], "--group", "233.54.12.111:26477")
    assert rc == 2 and "--group" in err
    rc, _, err = run(capsys, "orders", "/nonexistent.pcap")
    assert rc == 2 and err.count("\n") == 1
