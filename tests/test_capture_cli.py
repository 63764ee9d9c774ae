"""The pcapng writer, pcap replay pacing, and `xdpfeed capture` / `xdpfeed replay`.

The writer's output is read back by capture.pcapfile and by tshark (the independent oracle). Replay
runs on loopback into kernel UDP sockets; pacing is checked with an injected clock and, loosely,
against the wall clock. Root tests run capture and replay across a veth pair between namespaces.
"""

import argparse
import io
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from xdpfeed.capture.batch import LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_UDP_PAYLOAD, FrameBatch
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.pcapfile import PcapSource
from xdpfeed.capture.pcapng_writer import PcapngWriter
from xdpfeed.capture.udp import UdpSource
from xdpfeed.multicast.cli import capture as cli_capture

from conftest import PCAPS
from helpers import frame

ALL_TYPES = os.path.join(PCAPS, "generated", "all_types.pcap")
GA, GB = ("233.54.12.111", 26477), ("233.54.12.112", 26478)
CLI = ("import sys, argparse\nfrom xdpfeed.multicast.cli import capture as c\np = argparse.ArgumentParser()\n"
       "c.add_{0}_arguments(p)\nsys.exit(c.run_{0}(p.parse_args(sys.argv[1:])))")


# ------------------------------------------------------------------------------------------ helpers


def cli(kind: str, argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    getattr(cli_capture, f"add_{kind}_arguments")(p)
    return getattr(cli_capture, f"run_{kind}")(p.parse_args(argv))


def read_all(path):
    """[(bytes, ts_ns, linktype)] of a capture file."""
    out = []
    with PcapSource(str(path)) as src:
        b = FrameBatch(1024)
        while src.recv(b):
            out += [(b.frame(i), int(b.timestamp_ns[i]), int(b.linktype[i])) for i in range(b.count)]
    return out


def batch_of(frames, ts, linktypes=None):
    b = FrameBatch(max(1, len(frames)))
    b.data = np.frombuffer(b"".join(frames), np.uint8)
    b.offset[: len(frames)] = np.cumsum([0] + [len(f) for f in frames[:-1]])
    b.length[: len(frames)] = [len(f) for f in frames]
    b.timestamp_ns[: len(frames)] = ts
    b.linktype[: len(frames)] = linktypes or [LINKTYPE_ETHERNET] * len(frames)
    b.count = len(frames)
    return b


def write_pcap(path, frames, ts_ns):
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]
    for f, t in zip(frames, ts_ns, strict=True):
        out.append(struct.pack("<IIII", t // 10**9, t % 10**9, len(f), len(f)) + f)
    with open(path, "wb") as fh:
        fh.write(b"".join(out))
    return str(path)


def tshark_fields(tshark, path, *fields):
    r = subprocess.run([tshark, "-r", str(path), "-T", "fields", *sum((["-e", f] for f in fields), [])],
                       capture_output=True, text=True, check=True)
    return [line.split("\t") for line in r.stdout.splitlines()]


def udp_payloads(path):
    return [bytes(Ether(f)[UDP].payload) for f, _, _ in read_all(path) if UDP in Ether(f)]


def drain_udp(*srcs):
    got = []
    for s in srcs:
        b = FrameBatch(256)
        while s.recv(b):
            got += [b.frame(i) for i in range(b.count)]
    return got


T0 = 1_700_000_000_123_456_789
FRAMES = [frame(bytes([i]) * n, port=26477 + i % 2) for i, n in enumerate((0, 1, 2, 3, 4, 5, 63, 1000, 1458))]
STAMPS = [T0 + i * 1_000_001 for i in range(len(FRAMES))]


# ------------------------------------------------------------------------------------------ pcapng writer


def test_writer_round_trip(tmp_path, tshark):
    out = tmp_path / "w.pcapng"
    with PcapngWriter(str(out), if_name="eth9") as w:
        w.write_batch(batch_of(FRAMES[:4], STAMPS[:4]))
        w.write_batch(batch_of(FRAMES[4:], STAMPS[4:]))
    assert read_all(out) == [(f, t, 1) for f, t in zip(FRAMES, STAMPS, strict=True)]
    rows = tshark_fields(tshark, out, "frame.len", "frame.time_epoch", "frame.interface_name")
    assert [int(r[0]) for r in rows] == [len(f) for f in FRAMES]
    assert [r[1] for r in rows] == [f"{t // 10**9}.{t % 10**9:09d}" for t in STAMPS]  # nanoseconds kept
    assert {r[2] for r in rows} == {"eth9"}
    assert w.frames == len(FRAMES) and w.bytes == sum(map(len, FRAMES))


def test_writer_stream_and_snaplen(tmp_path, tshark):
    buf = io.BytesIO()
    w = PcapngWriter(buf, snaplen=64)
    w.write_batch(batch_of(FRAMES, STAMPS))
    w.close()
    assert not buf.closed  # a stream it was given stays open
    path = tmp_path / "s.pcapng"
    path.write_bytes(buf.getvalue())
    assert [f for f, _, _ in read_all(path)] == [f[:64] for f in FRAMES]
    rows = tshark_fields(tshark, path, "frame.len", "frame.cap_len")
    assert rows == [[str(len(f)), str(min(len(f), 64))] for f in FRAMES]  # original length kept


def test_writer_to_stdout_piped_into_tshark(tshark):
    code = ("import numpy as np\nfrom xdpfeed.capture.pcapng_writer import PcapngWriter\n"
            "from xdpfeed.capture.batch import FrameBatch\nb = FrameBatch(5)\n"
            "b.data = np.arange(500, dtype=np.uint8)\nb.offset[:5] = [0, 60, 120, 180, 240]\nb.length[:5] = 60\n"
            "b.count = 5\nw = PcapngWriter('-')\nw.write_batch(b)\nw.close()\n")
    w = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    r = subprocess.run([tshark, "-r", "-", "-T", "fields", "-e", "frame.len"], stdin=w.stdout, capture_output=True,
                       text=True)
    assert w.wait() == 0 and r.stdout.split() == ["60"] * 5


def test_writer_link_types(tmp_path, tshark):
    raw = bytes(IP(dst="233.54.12.111") / UDP(dport=26477) / b"raw")
    out = tmp_path / "l.pcapng"
    with PcapngWriter(str(out)) as w:
        w.write_batch(batch_of([FRAMES[0], raw, FRAMES[1]], [1, 2, 3], [1, LINKTYPE_RAW, 1]))
        w.write_batch(batch_of([raw], [4], [LINKTYPE_RAW]))
        with pytest.raises(ValueError, match="UDP payloads"):
            w.write_batch(batch_of([b"x"], [5], [LINKTYPE_UDP_PAYLOAD]))
    assert [(lt, t) for _, t, lt in read_all(out)] == [(1, 1), (LINKTYPE_RAW, 2), (1, 3), (LINKTYPE_RAW, 4)]
    assert [r[0] for r in tshark_fields(tshark, out, "frame.interface_id")] == ["0", "1", "0", "1"]


def test_writer_empty_file_is_valid(tmp_path, tshark):
    out = tmp_path / "e.pcapng"
    PcapngWriter(str(out)).close()
    assert read_all(out) == [] and tshark_fields(tshark, out, "frame.len") == []


# ------------------------------------------------------------------------------------------ pacing


class FakeClock:
    def __init__(self):
        self.now, self.sleeps = 5_000_000_000, []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(round(s, 6))
        self.now += int(s * 1e9)


def test_pcap_source_paces_with_an_injected_clock(tmp_path):
    s = 10**9
    path = write_pcap(tmp_path / "p.pcap", FRAMES[:6], [T0, T0 + s // 2, T0 + s // 2, T0 + 2 * s, T0 + 2 * s,
                                                        T0 + 2 * s + 1])
    clock = FakeClock()
    sizes = []
    with PcapSource(path, speed=2.0, clock=clock, sleep=clock.sleep) as src:
        b = FrameBatch(2)  # smaller than what is due at t=1 s: the rest follows without a wait
        while (n := src.recv(b)):
            sizes.append(n)
            clock.now += 1000  # a little work between batches
        assert src.recv(b) == 0
    assert sizes == [1, 2, 2, 1] and clock.sleeps == [0.249999, 0.749999]


def test_pcap_source_pacing_real_time(tmp_path):
    path = write_pcap(tmp_path / "r.pcap", FRAMES * 3, [T0 + i * 12_000_000 for i in range(27)])  # 0.31 s
    for speed, low, high in ((1.0, 0.30, 3.0), (4.0, 0.07, 0.3), (None, 0, 0.05)):
        src = PcapSource(path, speed=speed)
        b, n, t = FrameBatch(64), 0, time.monotonic()
        while (k := src.recv(b)):
            n += k
        assert n == 27 and low <= time.monotonic() - t < high, speed


def test_pcap_source_speed_must_be_positive():
    with pytest.raises(SourceError, match="speed must be positive"):
        PcapSource(ALL_TYPES, speed=0)


# ------------------------------------------------------------------------------------------ capture (unprivileged)


def test_capture_from_a_file_source(tmp_path, tshark, capsys):
    out = tmp_path / "c.pcapng"
    assert cli("capture", ["--source", f"pcap:{ALL_TYPES}", "-w", str(out)]) == 0
    assert read_all(out) == read_all(ALL_TYPES)
    assert len(tshark_fields(tshark, out, "frame.len")) == 9
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("xdpfeed capture: 9 frames, 2,849 bytes in ")
    assert cli("capture", ["--source", f"pcap:{ALL_TYPES}", "-w", str(out), "-c", "4"]) == 0
    assert read_all(out) == read_all(ALL_TYPES)[:4]


@pytest.mark.parametrize("argv, needle", [
    (["-w", "x.pcapng"], "capture needs -i IFACE or --source URI"),
    (["--source", "packet:nope0", "-w", "x.pcapng"], "no such interface 'nope0'"),
    (["--source", "packet:lo?bogus=1", "-w", "x.pcapng"], "unknown option 'bogus'"),
    (["--source", "packet:lo?fanout=x", "-w", "x.pcapng"], "bad source"),
    (["--source", f"pcap:{ALL_TYPES}", "--group", "233.1.1.1:1", "-w", "x.pcapng"], "--group applies to"),
    (["-i", "nope0", "-w", "x.pcapng"], "nope0"),  # AF_XDP missing from the build, or no such interface
    (["--source", f"pcap:{ALL_TYPES}", "-w", "/nonexistent/dir/x.pcapng"], "No such file or directory"),
])
def test_capture_errors_are_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("capture", argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xdpfeed capture: error: ") and needle in err, err


@pytest.mark.parametrize("argv", [["-c", "0", "-w", "x"], ["--group", "1.2.3:4", "-w", "x"], ["-m", "zc", "-w", "x"],
                                  []])
def test_capture_bad_flags_exit_2(argv, capsys):
    p = argparse.ArgumentParser()
    cli_capture.add_capture_arguments(p)
    with pytest.raises(SystemExit) as e:
        p.parse_args(argv)
    assert e.value.code == 2


# ------------------------------------------------------------------------------------------ replay on loopback


@pytest.fixture
def receivers():
    a, b = UdpSource(*GA, "lo"), UdpSource(*GB, "lo")
    yield a, b
    a.close()
    b.close()


def test_replay_sends_the_payloads_to_their_groups(receivers, capsys):
    assert cli("replay", [ALL_TYPES, "-i", "lo", "--topspeed", "--loop", "2"]) == 0
    a, b = receivers
    frames = [Ether(f) for f, _, _ in read_all(ALL_TYPES)]
    want = {g: [bytes(f[UDP].payload) for f in frames if (f[IP].dst, f[UDP].dport) == g] for g in (GA, GB)}
    assert drain_udp(a) == want[GA] * 2 and drain_udp(b) == want[GB] * 2
    err = capsys.readouterr().err
    assert err.startswith("xdpfeed replay: 18 packets, 4,886 bytes in ") and "0 frames skipped" in err


def test_replay_unicast_and_skipped_frames(tmp_path, capsys):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frames = [bytes(l2 / IP(dst="127.0.0.1") / UDP(dport=port) / (b"uni%d" % i)) for i in range(3)]
    frames += [bytes(l2 / ARP()), bytes(l2 / IP(dst="127.0.0.1") / TCP(dport=port))]
    path = write_pcap(tmp_path / "u.pcap", frames, [T0] * 5)
    assert cli("replay", [path, "-i", "lo"]) == 0
    rx.settimeout(2)
    assert [rx.recv(100) for _ in range(3)] == [b"uni0", b"uni1", b"uni2"]
    rx.close()
    err = capsys.readouterr().err
    assert "3 packets" in err and "2 frames skipped (not IPv4 UDP)" in err


def test_replay_pacing(tmp_path, receivers):
    frames = [frame(b"%04d" % i) for i in range(40)]
    path = write_pcap(tmp_path / "p.pcap", frames, [T0 + i * 10_000_000 for i in range(40)])  # 0.39 s
    for argv, low, high in ((["--pps", "200"], 0.18, 2.0), ([], 0.35, 3.0), (["--speed", "4"], 0.08, 0.35),
                            (["--topspeed"], 0, 0.1)):
        t = time.monotonic()
        assert cli("replay", [path, "-i", "lo", *argv]) == 0
        assert low <= time.monotonic() - t < high, argv
        assert drain_udp(receivers[0]) == [b"%04d" % i for i in range(40)]


def test_replay_damaged_file_sends_what_precedes_the_damage(tmp_path, receivers, capsys):
    path = write_pcap(tmp_path / "d.pcap", [frame(b"ok1"), frame(b"ok2")], [T0, T0])
    with open(path, "ab") as f:
        f.write(b"\x00" * 10)
    assert cli("replay", [path, "-i", "lo", "--topspeed"]) == 1
    assert drain_udp(receivers[0]) == [b"ok1", b"ok2"]
    assert "truncated record header" in capsys.readouterr().err


def test_replay_stops_on_sigterm_inside_a_long_gap(tmp_path, receivers):
    path = write_pcap(tmp_path / "g.pcap", [frame(b"now"), frame(b"in a minute")], [T0, T0 + 60 * 10**9])
    p = subprocess.Popen([sys.executable, "-c", CLI.format("replay"), path, "-i", "lo"], stderr=subprocess.PIPE,
                         text=True)
    select.select([receivers[0]], [], [], 30)  # the first datagram is out: the replay waits for the second
    assert drain_udp(receivers[0]) == [b"now"]
    time.sleep(0.2)
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0 and time.monotonic() - t < 1.0
    assert err.startswith("xdpfeed replay: 1 packets, 3 bytes in ")


@pytest.mark.parametrize("argv, needle", [
    (["/nonexistent.pcap", "-i", "lo"], "No such file or directory"),
    ([ALL_TYPES, "-i", "nope0"], "no such interface 'nope0'"),
])
def test_replay_errors_are_one_line(argv, needle, capsys):
    assert cli("replay", argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xdpfeed replay: error: ") and needle in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------ root: namespaces


def start_capture(v, argv):
    """`xdpfeed capture` in namespace A; returns once it says it is listening."""
    p = subprocess.Popen(v.exec(v.ns_a) + [sys.executable, "-c", CLI.format("capture"), *argv],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, _, _ = select.select([p.stderr], [], [], 30)
    line = p.stderr.readline().decode() if ready else ""
    assert line.startswith("xdpfeed capture: listening on"), line
    return p


def read_packets(pipe, want: int, timeout: float = 30.0) -> bytes:
    """Bytes of a pcapng stream read from `pipe` until it holds `want` Enhanced Packet Blocks."""
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        pos = blocks = 0
        while pos + 8 <= len(data):
            btype, blen = struct.unpack_from("<II", data, pos)
            if pos + blen > len(data):
                break
            blocks += btype == 6
            pos += blen
        if blocks >= want:
            return data
        if select.select([pipe], [], [], 1.0)[0]:
            chunk = os.read(pipe.fileno(), 65536)
            assert chunk, "the capture ended early"
            data += chunk
    raise AssertionError(f"fewer than {want} packets written in {timeout} s")


def send_from_b(v, payloads, dst):
    from test_packet_source import sender

    with sender(v) as tx:
        for pl in payloads:
            tx.sendto(pl, dst)
            tx.sendto(b"noise", (dst[0], dst[1] + 1))


@pytest.mark.root
def test_capture_packet_source_in_a_namespace(tmp_path, tshark):
    from netns import veth_pair

    n = 300
    out = tmp_path / "ns.pcapng"
    with veth_pair() as v:
        p = start_capture(v, ["--source", f"packet:{v.if_a}?group={GA[0]}:{GA[1]}", "-c", str(n), "-w", str(out),
                              "--duration", "60"])
        send_from_b(v, [b"%05d" % i for i in range(n + 50)], GA)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        p = start_capture(v, ["--source", f"packet:{v.if_a}", "--group", f"{GA[0]}:{GA[1]}", "-w", "-"])
        send_from_b(v, [b"stdout%d" % i for i in range(7)], GA)
        head = read_packets(p.stdout, 7)  # written and flushed as they come
        p.send_signal(signal.SIGTERM)
        stdout, err2 = p.communicate(timeout=30)
        stdout = head + stdout
        assert p.returncode == 0, err2
    rows = tshark_fields(tshark, out, "udp.dstport", "ip.dst")
    assert len(rows) == n and {tuple(r) for r in rows} == {(str(GA[1]), GA[0])}
    assert udp_payloads(out) == [b"%05d" % i for i in range(n)]
    assert err.decode().splitlines()[-1].startswith(f"xdpfeed capture: {n} frames, ")
    assert "source tpacket_v3: " in err.decode() and "drops: kernel 0, freeze 0" in err.decode()
    (tmp_path / "o.pcapng").write_bytes(stdout)
    assert udp_payloads(tmp_path / "o.pcapng") == [b"stdout%d" % i for i in range(7)]
    assert err2.decode().splitlines()[-1].startswith("xdpfeed capture: 7 frames, ")


@pytest.mark.root
def test_replay_across_a_veth_into_a_packet_source(tmp_path):
    from netns import veth_pair
    from test_packet_source import drain, inside, payloads

    from xdpfeed.capture.packet import PacketSource

    want = [bytes(Ether(f)[UDP].payload) for f, _, _ in read_all(ALL_TYPES) if Ether(f)[IP].dst == GA[0]]
    with veth_pair() as v:
        with inside(v.ns_b):
            rx = PacketSource(v.if_b, groups=[GA])
        with rx:
            with inside(v.ns_a):
                assert cli("replay", [ALL_TYPES, "-i", v.if_a, "--pps", "1000", "--loop", "3", "--ttl", "4"]) == 0
            got = drain(rx, 3 * len(want))
        assert payloads(got) == want * 3
        assert {Ether(f)[IP].ttl for f, _ in got} == {4}


@pytest.mark.root
@pytest.mark.parametrize("mode", ["native", "skb"])
def test_capture_with_af_xdp_in_a_namespace(tmp_path, tshark, mode):
    """The default source: AF_XDP on -i with our XDP filter; tshark reads the expected frames, and the
    program is gone once the capture ends."""
    from netns import veth_pair

    n = 200
    out = tmp_path / "xdp.pcapng"
    with veth_pair() as v:
        p = start_capture(v, ["-i", v.if_a, "-m", mode, "--group", f"{GA[0]}:{GA[1]}", "-c", str(n), "-w", str(out),
                              "--duration", "60"])
        send_from_b(v, [b"%05d" % i for i in range(n + 20)], GA)  # plus "noise" to the next port: not captured
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        links = subprocess.run(v.exec(v.ns_a) + ["ip", "-d", "link", "show", v.if_a], capture_output=True,
                               text=True).stdout
        assert "prog/xdp" not in links and "xdpgeneric" not in links and "xdpdrv" not in links, links
    rows = tshark_fields(tshark, out, "udp.dstport", "ip.dst")
    assert len(rows) == n and {tuple(r) for r in rows} == {(str(GA[1]), GA[0])}
    assert udp_payloads(out) == [b"%05d" % i for i in range(n)]
    assert f"{mode} copy" in err.decode()
