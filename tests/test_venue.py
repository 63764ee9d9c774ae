"""The simulated venue put together: VenueConfig checks, a faulty day received on loopback and every
lost message recovered from the re-request and replay servers, start delay and stop, and the
`xdpfeed simulate` command (run() with a parser built by add_arguments)."""

import argparse
import json
import socket
import struct
import time

import numpy as np
import pytest

from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.udp import UdpSource
from xdpfeed.multicast.cli import simulate
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.exchange.synthetic import generate
from xdpfeed.multicast.exchange.venue import ConfigError, Venue, VenueConfig
from xdpfeed.multicast.wire import soupbintcp as sb

from helpers import eventually

EOS = 0xFFFF


def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines(tag: int) -> dict:
    return {"line_a": (f"239.194.{tag}.1", free_port()), "line_b": (f"239.194.{tag}.2", free_port())}


# ------------------------------------------------------------------------------------------- config
def test_defaults_are_valid():
    c = VenueConfig()
    assert c.messages == 200_000 and c.line_a == ("239.192.1.1", 30001) and c.users == {"XDPF01": "xdpfeed"}


@pytest.mark.parametrize("field, value, accepted", [
    ("messages", 10, "1007.."),
    ("messages", 5000.0, "integer"),
    ("seed", -1, "0..2**64-1"),
    ("session", "", "1..10"),
    ("session", "ELEVENCHARS", "1..10"),
    ("n_stocks", 0, "1..2000"),
    ("line_a", ("10.0.0.1", 5000), "multicast"),
    ("line_a", "239.1.1.1:5000", "(IPv4 multicast group, port 1..65535)"),
    ("line_b", ("239.1.1.1", 0), "port 1..65535"),
    ("line_b", ("239.192.1.1", 30001), "differ from line_a"),
    ("iface_addr", "lo", "IPv4 address"),
    ("replay_host", "localhost", "IPv4 address"),
    ("request_host", "::1", "IPv4 address"),
    ("rate", -1, ">= 0"),
    ("rate", float("inf"), ">= 0"),
    ("loss_a", 1.5, "[0, 1]"),
    ("loss_b", -0.1, "[0, 1]"),
    ("reorder", 2, "[0, 1]"),
    ("duplicate", float("nan"), "[0, 1]"),
    ("request_drop", 1.01, "[0, 1]"),
    ("burst_loss", -1, "0..200000"),
    ("bursts", 3, "both be 0 or both >= 1"),
    ("replay_port", 70000, "0..65535"),
    ("request_port", -1, "0..65535"),
    ("users", {}, "non-empty"),
    ("users", {"toolong": "pw"}, "1..6"),
    ("users", {"me": "elevenchars"}, "1..10"),
    ("heartbeat_interval", 0, "0.01..60"),
    ("request_silent", "yes", "True or False"),
    ("replay_fault", "stall", "ReplayFault"),
    ("start_delay", -1, "0..3600"),
])
def test_config_errors_name_the_field_and_range(field, value, accepted):
    with pytest.raises(ConfigError) as e:
        VenueConfig(**{field: value})
    assert e.value.field == field and str(e.value).startswith(field + " ") and accepted in str(e.value)


def test_bursts_too_large_for_the_day():
    with pytest.raises(ConfigError, match="burst_loss") as e:
        VenueConfig(messages=10_000, burst_loss=3000, bursts=2)
    assert e.value.field == "burst_loss"
    small = DayStore(generate(3_000, seed=1)[0])  # the config allows it for 10000 messages, this day is smaller
    with pytest.raises(ConfigError, match="burst_loss too large") as e:
        Venue(VenueConfig(messages=10_000, burst_loss=2500, bursts=2, **lines(1)), small)
    assert e.value.field == "burst_loss"


# ------------------------------------------------------------------------------------------- venue
def receive_until_eos(venue: Venue, timeout=30.0) -> dict[int, bytes]:
    """Every message that arrived on either line, by sequence, until both lines sent End of Session."""
    got: dict[int, bytes] = {}
    c = venue.config
    sources = [UdpSource(*c.line_a, "lo"), UdpSource(*c.line_b, "lo")]
    batch = FrameBatch(256)
    eos = [0, 0]
    venue.start()
    deadline = time.monotonic() + timeout
    try:
        while min(eos) < 3 and time.monotonic() < deadline:
            for i, src in enumerate(sources):
                for k in range(src.recv(batch)):
                    pkt = batch.frame(k)
                    seq, count = struct.unpack_from(">QH", pkt, 10)
                    eos[i] += count == EOS
                    p = 20
                    for q in range(seq, seq + (count if count != EOS else 0)):
                        n = int.from_bytes(pkt[p : p + 2], "big")
                        got[q] = pkt[p + 2 : p + 2 + n]
                        p += 2 + n
            time.sleep(0.0005)
    finally:
        for src in sources:
            src.close()
    return got


def rerequest(venue: Venue, first: int, end: int) -> dict[int, bytes]:
    """Messages [first, end) from the MoldUDP64 re-request server, asking again for what is left."""
    out: dict[int, bytes] = {}
    session = venue.store.session
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        while first < end:
            s.sendto(session + struct.pack(">QH", first, end - first), venue.request_address)
            reply = s.recv(2048)
            seq, count = struct.unpack_from(">QH", reply, 10)
            assert seq == first and 1 <= count <= end - first and len(reply) <= 1472
            p = 20
            for q in range(seq, seq + count):
                n = int.from_bytes(reply[p : p + 2], "big")
                out[q] = reply[p + 2 : p + 2 + n]
                p += 2 + n
            first += count
    return out


def replay(venue: Venue, user: str, password: str, first: int, end: int) -> dict[int, bytes]:
    """Messages [first, end) from the SoupBinTCP replay server."""
    out: dict[int, bytes] = {}
    buf = b""
    with socket.create_connection(venue.replay_address, timeout=5) as s:
        s.sendall(sb.encode_login_request(user, password, sb.BLANK_SESSION, first))
        seq = None
        while len(out) < end - first:
            while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
                data = s.recv(1 << 16)
                assert data, "replay server closed the connection"
                buf += data
            n = int.from_bytes(buf[:2], "big")
            ptype, payload, buf = buf[2:3], buf[3 : 2 + n], buf[2 + n :]
            if ptype == b"A":
                assert payload[:10].strip() == venue.store.session.strip()
                seq = int(payload[10:])
                assert seq == first
            elif ptype == b"S":
                out[seq] = payload
                seq += 1
        s.sendall(sb.packet(sb.LOGOUT_REQUEST))
    return {q: m for q, m in out.items() if q < end}


def test_faulty_day_is_fully_recoverable():
    cfg = VenueConfig(messages=20_000, seed=4, session="VENUE00001", loss_a=0.05, loss_b=0.05, burst_loss=300,
                      bursts=2, reorder=0.02, duplicate=0.02, heartbeat_interval=0.2, users={"tester": "secret"},
                      **lines(2))
    venue = Venue(cfg)
    try:
        got = receive_until_eos(venue)
        assert venue.wait(10) and venue.publisher.ended
        store = venue.store
        missing = sorted(set(range(1, store.next_seq)) - set(got))
        runs = venue.publisher.lost_on_both
        assert missing == [q for f, e in runs for q in range(f, e)] and len(runs) >= 2
        assert all(got[q] == store.message(q) for q in got)
        (f1, e1), (f2, e2) = runs[0], runs[-1]
        assert rerequest(venue, f1, e1) == {q: store.message(q) for q in range(f1, e1)}
        assert replay(venue, "tester", "secret", f2, e2) == {q: store.message(q) for q in range(f2, e2)}
        deadline = time.monotonic() + 5  # the server thread counts after its send returns: let it catch up
        while venue.summary()["replay_server"]["messages_sent"] < e2 - f2 and time.monotonic() < deadline:
            time.sleep(0.01)
        s = venue.summary()
    finally:
        venue.stop()
    assert s["session"] == "VENUE00001" and s["messages"] == s["published_messages"] == 20_000 and s["ended"]
    assert s["lost_on_both"] == [list(r) for r in runs] and s["lost_on_both_messages"] == len(missing)
    assert s["lines"]["A"]["group"] == cfg.line_a[0] and s["lines"]["B"]["port"] == cfg.line_b[1]
    for name in "AB":
        ln = s["lines"][name]
        # End of Session: the 3 quick repeats, then once per heartbeat interval until stop()
        assert ln["packets_lost"] > 0 and ln["end_of_session"] >= 3 and ln["messages_lost"] >= len(missing)
    assert s["request_server"]["answered"] >= 1 and s["request_server"]["messages_sent"] == e1 - f1
    assert s["replay_server"]["logins"] == 1 and s["replay_server"]["messages_sent"] >= e2 - f2


def test_start_delay_and_stop_with_a_given_store():
    store = DayStore(generate(3_000, seed=2)[0], "GIVEN")
    venue = Venue(VenueConfig(start_delay=0.5, rate=1000, messages=50_000, **lines(3)), store)
    with venue:
        assert venue.store is store and venue.publisher.published == 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # nothing published yet: no answer
            s.settimeout(0.3)
            s.sendto(store.session + struct.pack(">QH", 1, 5), venue.request_address)
            with pytest.raises(TimeoutError):
                s.recv(2048)
        assert not venue.wait(0.1)
        eventually(lambda: venue.publisher.published > 1)  # publishing began after the start delay
        assert venue.publisher.published < store.next_seq
        venue.stop()
        assert venue.wait(0)
        s = venue.summary()
    assert s["messages"] == 3_000 and 0 < s["published_messages"] < 3_000 and not s["ended"]
    assert s["session"] == "GIVEN" and s["request_server"]["beyond_end"] == 1


# ---------------------------------------------------------------------------------------- simulate
def parse(argv):
    p = argparse.ArgumentParser(prog="xdpfeed simulate")
    simulate.add_arguments(p)
    return p.parse_args(argv)


@pytest.mark.parametrize("argv, flag", [
    (["--loss-a", "1.5"], "--loss-a"),
    (["--line-a", "10.0.0.1:5000"], "--line-a"),
    (["--messages", "5"], "--messages"),
    (["--replay-port", "70000"], "--replay-port"),
    (["--burst-loss", "150000"], "--burst-loss"),
    (["--rate", "-3"], "--rate"),
    (["--session", "MUCHTOOLONGNAME"], "--session"),
    (["--user", "longusername"], "--user"),
    (["--day", "/nonexistent/day.itch"], "--day"),
    (["--iface-addr", "192.0.2.1", "--messages", "2000"], "--iface-addr"),  # TEST-NET: not a local address
    (["--iface-addr", "eth0"], "--iface-addr"),
    (["--start-delay", "7200"], "--start-delay"),
])
def test_simulate_bad_values(argv, flag, capsys, monkeypatch):
    monkeypatch.setenv("XDPFEED_PASSWORD", "pw")
    assert simulate.run(parse(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xdpfeed simulate: error: " + flag), err


def test_simulate_unparsable_flag(capsys):
    with pytest.raises(SystemExit) as e:
        parse(["--line-b", "nonsense"])
    assert e.value.code == 2 and "--line-b" in capsys.readouterr().err


def test_simulate_json(capsys, monkeypatch):
    monkeypatch.setenv("XDPFEED_PASSWORD", "s3cret")
    g = lines(4)
    argv = ["--messages", "5000", "--linger", "0", "-T", "json", "--seed", "9", "--loss-b", "0.1",
            "--line-a", "{}:{}".format(*g["line_a"]), "--line-b", "{}:{}".format(*g["line_b"])]
    assert simulate.run(parse(argv)) == 0
    out, err = capsys.readouterr()
    start, summary = (json.loads(x) for x in out.strip().splitlines())
    assert start["line_a"] == "{}:{}".format(*g["line_a"]) and start["session"] == "XDPFEED001"
    assert start["replay"].startswith("127.0.0.1:") and start["request"].startswith("127.0.0.1:")
    assert summary["published_messages"] == 5000 and summary["ended"]
    assert summary["lines"]["B"]["packets_lost"] > 0 == summary["lines"]["A"]["packets_lost"]
    assert "warning" not in err and "End of Session sent" in err


def test_simulate_day_file_text(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("XDPFEED_PASSWORD", raising=False)
    day = tmp_path / "day.itch"
    generate(3000, seed=5)[0].tofile(day)
    g = lines(5)
    argv = ["--day", str(day), "--linger", "0", "--session", "FILEDAY", "--burst-loss", "100",
            "--line-a", "{}:{}".format(*g["line_a"]), "--line-b", "{}:{}".format(*g["line_b"])]
    assert simulate.run(parse(argv)) == 0
    out, err = capsys.readouterr()
    first, *rest = out.strip().splitlines()
    assert first.startswith("venue session=FILEDAY messages=3000 ") and " replay=127.0.0.1:" in first
    assert rest[0] == "session FILEDAY: 3000 of 3000 messages published, End of Session sent"
    assert any(x.startswith("lost on both lines: ") and "none" not in x for x in rest)
    assert "warning: XDPFEED_PASSWORD is not set" in err
    cut = tmp_path / "cut.itch"
    cut.write_bytes(np.asarray(generate(3000, seed=5)[0][:-3]).tobytes())
    assert simulate.run(parse(["--day", str(cut)])) == 2
    assert "--day" in capsys.readouterr().err
