"""capture.dpdk: the `dpdk:` source on DPDK's poll-mode drivers.

In this process, where nothing reaches the EAL: URI and argument errors are one line naming what is
wrong; a build without DPDK says what to install; setup.py leaves the DPDK module out where pkg-config
finds no libdpdk. Everything that initialises an EAL (once per process) runs in a subprocess: net_pcap
gives exactly the decoded stream, the counters and the book that pcap: gives, for every bundled
capture and a large generated one; the EAL is shared by two ports and leaves nothing behind; frames
longer than an mbuf are counted. The CLI: `book` and `decode` take a dpdk: URI, and `run -a dpdk:...`
records exactly the day from a capture. Root (a veth pair between two namespaces): net_af_packet and
net_af_xdp receive the simulated venue's lossy feed, gaps recovered, the venue's day and book; SIGINT
ends a run with its summary, the XDP program detached and allmulti put back; `book` on a live port
ends at SIGINT with the book of what arrived.
"""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from xdpfeed.capture import dpdk, dpdk_eal
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.uri import open_source
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.exchange import synthetic

from conftest import PCAPS, REPO
from helpers import read_until

XDPFEED = [sys.executable, "-m", "xdpfeed.multicast.cli"]
WORKER = [sys.executable, os.path.join(REPO, "tests", "dpdk_worker.py")]
BUNDLED = sorted(glob.glob(os.path.join(PCAPS, "omi", "itch50*", "*.pcap")) +
                 glob.glob(os.path.join(PCAPS, "generated", "*.pcap*")))
ALL_TYPES = os.path.join(PCAPS, "generated", "all_types.pcap")
TWO_INTERFACES = os.path.join(PCAPS, "generated", "two_interfaces.pcapng")
needs_dpdk = pytest.mark.skipif(dpdk_eal.lib is None, reason="xdpfeed.native._dpdk is not built (no libdpdk: "
                                "apt-get install dpdk-dev, then pip install -e .)")


def env(password="pw12345"):
    e = dict(os.environ, XDPFEED_PASSWORD=password)
    e.pop("NUMBA_BOUNDSCHECK", None)  # the processes use the production build and cache
    e.pop("NUMBA_CACHE_DIR", None)
    return e


def worker(*args, timeout=600) -> dict:
    r = subprocess.run(WORKER + [str(a) for a in args], capture_output=True, text=True, env=env(), cwd=REPO,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A generated day of 1M messages as an ITCH file and as a capture (about 21,000 frames: the
    mbuf pool of 8191 goes round more than twice)."""
    d = tmp_path_factory.mktemp("big")
    itch, pcap = str(d / "big.itch"), str(d / "big.pcap")
    meta = synthetic.generate_to_file(itch, 1_000_000, seed=8, pcap_path=pcap)
    return itch, pcap, meta


# ------------------------------------------------------------------------------- in this process


@pytest.mark.parametrize("uri, message", [
    ("dpdk:net_pcap0,rx_pcap=x.pcap?bogus=1", "unknown option 'bogus'"),
    ("dpdk:net_pcap0,rx_pcap=x.pcap?rxd=12", "rxd='12' must be an integer in 64..32768"),
    ("dpdk:net_pcap0,rx_pcap=x.pcap?huge=maybe", "huge='maybe'; expected one of auto, on, off"),
    ("dpdk:net_pcap0,rx_pcap=x.pcap?cores=two", "cores='two' must be a CPU list"),
    ("dpdk:net_pcap0,rx_pcap=x.pcap?timestamp=nic", "timestamp='nic'; expected one of auto, pmd, host"),
    ("dpdk:net_pcap0,rx_pcap=x.pcap?eal=%22--no-huge", "eal=: No closing quotation"),
    ("dpdk:net_pcap0,rx_pcap=/nonexistent/x.pcap", "rx_pcap=/nonexistent/x.pcap: no such file"),
    ("dpdk:../x.pcap", "is neither a PCI address (0000:03:00.0) nor a virtual device name"),
    ("dpdk:net_af_xdp0,iface=lo", "net_af_xdp needs at least one group=GROUP:PORT"),
    ("dpdk:net_af_xdp0?group=239.1.1.1:5000", "net_af_xdp needs iface=INTERFACE"),
    ("dpdk:net_af_packet0,iface=nosuchif0", "no such interface 'nosuchif0'"),
    ("dpdk:net_pcap0,rx_pcap=x.pcap?mbufs=300&rxd=256&burst=64", "mbufs > rxd + burst"),
    ("dpdk:", "nothing after 'dpdk:'"),
])
def test_bad_uris_are_one_line_naming_what_is_wrong(uri, message):
    with pytest.raises(SourceError) as e:
        open_source(uri)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not dpdk_eal.initialised()  # refused before the EAL was touched


def test_without_dpdk_the_source_says_what_to_install(monkeypatch):
    monkeypatch.setattr(dpdk, "lib", None)
    monkeypatch.setattr(dpdk_eal, "lib", None)
    with pytest.raises(SourceError) as e:
        open_source(f"dpdk:net_pcap0,rx_pcap={ALL_TYPES}")
    assert "built without DPDK: apt-get install dpdk-dev pkg-config, then reinstall xdpfeed" in str(e.value)


def test_setup_lists_the_dpdk_module_only_where_pkg_config_finds_libdpdk(tmp_path):
    """The package still builds without libdpdk: setup.py leaves the module out."""
    code = ("import json, setuptools; setuptools.setup = lambda **kw: print(json.dumps(kw['cffi_modules'])); "
            "exec(open('setup.py').read())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env=dict(os.environ, PKG_CONFIG_LIBDIR=str(tmp_path), PKG_CONFIG_PATH=str(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == ["native/build_udp.py:ffibuilder", "native/build_afxdp.py:ffibuilder"]
    if dpdk_eal.lib is not None:  # this build found it
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
        assert json.loads(r.stdout)[-1] == "native/build_dpdk.py:ffibuilder"


def test_device_names():
    assert dpdk.parse_device("03:00.1") == ("0000:03:00.1", "0000:03:00.1", {}, True)
    assert dpdk.parse_device("0000:AF:00.0,rxq_cqe_comp_en=0") == (
        "0000:af:00.0", "0000:af:00.0,rxq_cqe_comp_en=0", {"rxq_cqe_comp_en": "0"}, True)
    assert dpdk.parse_device("net_af_packet1,iface=eth1,framecnt=4096") == (
        "net_af_packet1", "net_af_packet1,iface=eth1,framecnt=4096", {"iface": "eth1", "framecnt": "4096"}, False)


def test_eal_arguments_leave_nothing_behind(monkeypatch):
    monkeypatch.setattr(dpdk_eal, "free_hugepages", lambda: 0)
    argv = dpdk_eal.arguments(dpdk_eal.EalOptions())
    assert argv[:4] == ["xdpfeed", "--file-prefix", f"xdpfeed-{os.getpid()}", "--no-telemetry"]
    assert {"--no-huge", "--no-shconf", "--no-pci"} <= set(argv) and argv[argv.index("-m") + 1] == "256"
    assert argv[argv.index("--lcores") + 1].startswith("0@(")  # not pinned to one CPU
    monkeypatch.setattr(dpdk_eal, "free_hugepages", lambda: 512)
    argv = dpdk_eal.arguments(dpdk_eal.EalOptions(cores="2-3", mem=1024, extra=("--log-level", "8")),
                              pci="0000:03:00.0,rxq_cqe_comp_en=0")
    assert {"--in-memory", "--huge-unlink"} <= set(argv) and "--no-huge" not in argv
    assert argv[argv.index("-l") + 1] == "2-3" and argv[argv.index("-m") + 1] == "1024"
    assert argv[argv.index("-a") + 1] == "0000:03:00.0,rxq_cqe_comp_en=0" and "--no-pci" not in argv
    assert argv[-2:] == ["--log-level", "8"]


# ------------------------------------------------------------------------------ in subprocesses


@needs_dpdk
def test_net_pcap_gives_the_same_stream_counters_and_book_as_pcap(big):
    itch, pcap, meta = big
    files = [f for f in BUNDLED if f != TWO_INTERFACES] + [pcap]
    out = worker("streams", *files)["files"]
    assert [f["file"] for f in out] == files
    for f in out:
        assert f["dpdk"] == f["pcap"], f["file"]
        assert f["stats"]["packets"] == f["pcap"]["counters"]["frames"], f["file"]
        assert f["stats"]["bytes"] == f["pcap"]["counters"]["frame_bytes"], f["file"]
        assert set(f["stats"]["drops"].values()) == {0} and f["stats"]["mode"] == "dpdk net_pcap"
    assert out[-1]["pcap"]["messages"] == 1_000_000 and out[-1]["stats"]["packets"] == meta["pcap"]["packets"] > 20000
    book = OrderBook()
    book.apply_stream(__import__("numpy").fromfile(itch, dtype="uint8"))
    assert out[-1]["dpdk"]["book"] == book.checksum()


@needs_dpdk
def test_a_pcapng_of_several_link_types_is_not_lost_silently():
    """libpcap (under net_pcap) reads only the first interface's link type: the two Ethernet frames
    (23 messages, then End of Session) arrive, the two Linux SLL frames between them are refused and
    counted in ierrors (libpcap's reader errs once more at the end), and reading goes on past them."""
    f = worker("streams", TWO_INTERFACES)["files"][0]
    st, c = f["stats"], f["dpdk"]["counters"]
    assert f["pcap"]["counters"]["frames"] == 4 and st["packets"] == c["frames"] == 2
    assert c["messages"] == 23 and c["end_of_session"] == 1
    assert st["drops"]["ierrors"] >= 2


@needs_dpdk
def test_one_eal_two_ports_and_nothing_left_behind():
    r = worker("eal", ALL_TYPES)
    assert r["affinity_after"] == r["affinity_before"]  # the EAL pinned nothing
    assert "--no-shconf" in r["eal"] and "--no-pci" in r["eal"] and not r["runtime_dir_left"]
    assert "already initialised with --file-prefix xdpfeed-" in r["conflict"] and "same EAL options" in r["conflict"]
    assert "already attached in this process" in r["same_name"]
    assert r["a_first"] == r["b_first"] == 9 and r["a_bytes_equal_b"] and r["a_second"] == 0
    assert "recv() called again before release()" in r["recv_twice"] and "closed" in r["recv_closed"]
    assert r["stats_after_close"]["packets"] == 9 and r["stats_after_close"]["bytes"] == 2849
    assert r["reopened_first"] == 9


@needs_dpdk
def test_frames_longer_than_an_mbuf_are_counted_not_lost():
    r = worker("drops", ALL_TYPES, 512)  # 384 bytes of room: 3 of the 9 frames do not fit
    assert r["lengths"] == [66, 309, 98, 62, 62, 66]
    assert r["stats"]["drops"]["multiseg"] == 3 and r["stats"]["packets"] == 6


def same_output(argv) -> None:
    """`xdpfeed ARGV` prints the same from the capture as from a dpdk: URI of it ('{}' in argv)."""
    want = subprocess.run(XDPFEED + [a.format(ALL_TYPES) for a in argv], capture_output=True, text=True,
                          env=env(), cwd=REPO)
    uri = f"dpdk:net_pcap0,rx_pcap={ALL_TYPES}"
    got = subprocess.run(XDPFEED + [a.format(uri) for a in argv], capture_output=True, text=True, env=env(),
                         cwd=REPO)
    assert want.returncode == got.returncode == 0, got.stderr
    if argv[-1] == "summary":  # the input line names the input; the rate differs
        want.stdout, got.stdout = ([x for x in o.splitlines() if not x.startswith(("input:", "rate:"))]
                                   for o in (want.stdout, got.stdout))
    assert got.stdout == want.stdout and got.stdout, argv


@needs_dpdk
def test_cli_book_takes_a_dpdk_uri():
    group = "233.54.12.111:26477"
    same_output(["book", "{}", "-T", "json"])
    same_output(["book", "{}", "-T", "json", "--group", group])
    r = subprocess.run(XDPFEED + ["book", f"dpdk:net_pcap0,rx_pcap={ALL_TYPES}?group={group}", "-T", "json"],
                       capture_output=True, text=True, env=env(), cwd=REPO)
    want = subprocess.run(XDPFEED + ["book", ALL_TYPES, "-T", "json", "--group", group], capture_output=True,
                          text=True, env=env(), cwd=REPO)
    assert r.stdout == want.stdout  # the URI's group= filters as --group does
    r = subprocess.run(XDPFEED + ["book", f"dpdk:net_pcap0,rx_pcap={ALL_TYPES}?bogus=1"], capture_output=True,
                       text=True, env=env(), cwd=REPO)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown option 'bogus'" in r.stderr


@needs_dpdk
def test_cli_capture_from_a_dpdk_port_writes_every_frame(tmp_path):
    out = tmp_path / "cap.pcapng"
    r = subprocess.run(XDPFEED + ["capture", "--source", f"dpdk:net_pcap0,rx_pcap={ALL_TYPES}", "-w", str(out)],
                       capture_output=True, text=True, env=env(), cwd=REPO, timeout=120)
    assert r.returncode == 0 and "9 frames, 2,849 bytes" in r.stderr, r.stderr
    decoded = [subprocess.run(XDPFEED + ["decode", str(f)], capture_output=True, text=True, env=env(),
                              cwd=REPO).stdout for f in (out, ALL_TYPES)]
    assert decoded[0] == decoded[1] and decoded[0].count("\n") == 81


@needs_dpdk
def test_cli_decode_takes_a_dpdk_uri():
    same_output(["decode", "{}"])
    same_output(["decode", "{}", "-T", "summary"])
    same_output(["decode", "--source", "{}", "-c", "20"])


@needs_dpdk
def test_run_records_exactly_the_day_from_a_dpdk_capture(big, tmp_path):
    itch, pcap, _ = big
    record = tmp_path / "rec.itch"
    r = subprocess.run(XDPFEED + ["run", "-a", f"dpdk:net_pcap0,rx_pcap={pcap}", "--record", str(record), "-T",
                                  "json", "--metrics-addr", "off", "-q"], capture_output=True, text=True, env=env(),
                       cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout)
    assert s["exit"] == "sources exhausted" and s["delivered"] == 1_000_000 and s["lost"] == 0
    assert s["lines"]["A"]["source"]["mode"] == "dpdk net_pcap"
    assert record.read_bytes() == open(itch, "rb").read()


# --------------------------------------------------------------------------------- root + netns


def lines_pair():
    r = random.Random()
    port = r.randrange(20000, 60000)
    return (f"239.252.{r.randrange(1, 255)}.{r.randrange(1, 255)}:{port}",
            f"239.252.{r.randrange(1, 255)}.{r.randrange(1, 255)}:{port + 1}")


@pytest.fixture(scope="module")
def day_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("day") / "day.itch")
    synthetic.generate_to_file(path, 30_000, seed=21)
    return path


def start_in(v, ns, argv, ready: str):
    """A process in namespace `ns`, returned once a line containing `ready` reached its stderr."""
    p = subprocess.Popen(v.exec(ns) + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                         cwd=REPO)
    seen = []
    for line in p.stderr:
        seen.append(line)
        if ready in line:
            return p, seen
    p.wait()
    raise AssertionError("".join(seen))


def venue_cmd(v, day, a, b, *extra):
    return XDPFEED + ["simulate", "--day", day, "--line-a", a, "--line-b", b, "--user", "TEST01", "--linger", "120",
                      "-T", "json", "--iface-addr", v.addr_a, "--bind", v.addr_a, *extra]


def stop(p, timeout=60):
    p.send_signal(signal.SIGINT)
    return p.communicate(timeout=timeout)


def link(v) -> str:
    return subprocess.run(v.exec(v.ns_b) + ["ip", "-d", "link", "show", v.if_b], capture_output=True,
                          text=True).stdout


@needs_dpdk
@pytest.mark.root
@pytest.mark.parametrize("pmd", ["net_af_packet", "net_af_xdp"])
def test_run_on_a_vdev_across_a_veth_pair_recovers_the_venues_day(day_file, tmp_path, pmd):
    """The venue in one namespace, `xdpfeed run` in the other; line A through DPDK on the veth, line B
    through a kernel UDP socket on the same interface (with af_xdp its packets must pass the XDP filter
    on to the kernel, as must the re-request answers). Loss on both lines and a burst on both: filled by
    re-request and TCP replay; the record is the venue's day, byte for byte, and so is the book."""
    from netns import veth_pair

    with veth_pair() as v:
        a, b = lines_pair()
        record = tmp_path / "veth.itch"
        replay, request = 33000 + random.randrange(1000), 34000 + random.randrange(1000)
        cfg = tmp_path / "feed.toml"
        cfg.write_text("[recovery]\nrerequest_max = 1000\n")
        h, seen = start_in(v, v.ns_b, XDPFEED + [
            "run", "-a", f"dpdk:{pmd}0,iface={v.if_b}?group={a}", "-b", f"udp:{b}@{v.addr_b}",
            "--replay", f"{v.addr_a}:{replay}", "--rerequest", f"{v.addr_a}:{request}", "--user", "TEST01",
            "--record", str(record), "--until-eos", "-T", "json", "--idle-timeout", "60", "-c", str(cfg),
            "--metrics-addr", "off"], "ready: line A")
        venue = subprocess.Popen(v.exec(v.ns_a) + venue_cmd(
            v, day_file, a, b, "--start-delay", "0.5", "--replay-port", str(replay), "--request-port", str(request),
            "--loss-a", "0.05", "--loss-b", "0.05", "--burst-loss", "3000", "--rate", "200000"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
        try:
            out, err = h.communicate(timeout=300)
        finally:
            stop(venue)
        after = link(v)
    assert h.returncode == 0, "".join(seen)[-2000:] + err[-3000:]
    s = json.loads(out)
    assert s["delivered"] == 30_000 and s["lost"] == 0 and s["exit"] == "complete"
    assert s["filled_replay"] >= 3000 and s["filled_rerequest"] > 0
    la, lb = s["lines"]["A"], s["lines"]["B"]
    assert la["source"]["mode"] == f"dpdk {pmd}" and la["packets"] > 0 and lb["packets"] > 0
    assert la["source"]["packets"] >= la["packets"] and set(la["source"]["drops"].values()) == {0}
    if pmd == "net_af_xdp":  # the filter redirected line A's group and nothing else
        assert la["source"]["packets"] == la["packets"] + sum(la.get("skipped", {}).values())
    assert record.read_bytes() == open(day_file, "rb").read()
    book = OrderBook()
    book.apply_stream(__import__("numpy").fromfile(day_file, dtype="uint8"))
    assert s["book_checksum"] == book.checksum()
    assert "prog/xdp" not in after, after


@needs_dpdk
@pytest.mark.root
def test_sigint_ends_a_dpdk_run_cleanly(day_file):
    """Mid-feed, SIGINT ends `xdpfeed run` on net_af_xdp with its summary: port stopped and closed, the
    XDP program the PMD attached detached again, the EAL cleaned up (exit 0)."""
    from netns import veth_pair

    with veth_pair() as v:
        a, b = lines_pair()
        h, seen = start_in(v, v.ns_b, XDPFEED + ["run", "-a", f"dpdk:net_af_xdp0,iface={v.if_b}?group={a}", "-T",
                                                  "json", "--metrics-addr", "off"], "ready: line A")
        during = link(v)
        venue = subprocess.Popen(v.exec(v.ns_a) + venue_cmd(v, day_file, a, b, "--rate", "20000"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
        try:
            read_until(h, seen, "following session")  # the feed is flowing
            time.sleep(0.2)
            out, err = stop(h)
        finally:
            stop(venue)
        after = link(v)
    assert h.returncode == 0, "".join(seen)[-2000:] + err[-2000:]
    s = json.loads(out)
    assert s["exit"] == "stopped" and 0 < s["delivered"] < 30_000
    assert s["lines"]["A"]["source"]["mode"] == "dpdk net_af_xdp" and s["lines"]["A"]["source"]["packets"] > 0
    assert "prog/xdp" in during and "prog/xdp" not in after, after


@needs_dpdk
@pytest.mark.root
def test_book_on_a_live_port_ends_at_sigint_with_what_arrived(day_file):
    """`xdpfeed book dpdk:net_af_packet0,...?promisc=1` receives a lossless line until SIGINT, then
    prints the book: the same as the book of the venue's day. The interface is promiscuous while the
    port runs, and no longer after."""
    from netns import veth_pair

    with veth_pair() as v:
        a, b = lines_pair()
        before = link(v)
        h = subprocess.Popen(v.exec(v.ns_b) + XDPFEED + [
            "book", f"dpdk:net_af_packet0,iface={v.if_b}?group={a}&promisc=1", "-T", "json", "--depth", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
        deadline = time.monotonic() + 60
        while "promiscuity 1" not in (during := link(v)) and time.monotonic() < deadline and h.poll() is None:
            time.sleep(0.1)  # the port is up once the interface is promiscuous
        venue, seen = start_in(v, v.ns_a, venue_cmd(v, day_file, a, b, "--rate", "50000"), "End of Session sent")
        try:
            time.sleep(1.0)
            out, err = stop(h)
        finally:
            stop(venue)
        after = link(v)
    assert "promiscuity 0" in before and "promiscuity 1" in during and "promiscuity 0" in after, (during, after)
    want = subprocess.run(XDPFEED + ["book", day_file, "-T", "json", "--depth", "3"], capture_output=True, text=True,
                          env=env(), cwd=REPO)
    assert h.returncode == 0, err[-2000:]
    got, exp = json.loads(out), json.loads(want.stdout)
    assert got == exp and exp["stats"]["adds"] > 0


@needs_dpdk
@pytest.mark.root
def test_af_packet_ring_drops_are_counted():
    """DPDK 22.11's af_packet PMD does not count what its ring drops; the source does (`kernel`, from
    PACKET_STATISTICS): a burst of 3000 datagrams into a 64-frame ring nobody reads yet ends up as
    frames received + kernel drops, none missing."""
    import socket

    from netns import veth_pair
    from pyroute2 import netns

    with veth_pair() as v:
        w = subprocess.Popen(v.exec(v.ns_b) + WORKER + ["drain", f"dpdk:net_af_packet0,iface={v.if_b},framecnt=64"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env(), cwd=REPO)
        assert w.stdout.readline().strip() == "ready", w.stderr.read()
        netns.pushns(v.ns_a)
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        finally:
            netns.popns()
        with s:
            for i in range(3000):
                s.sendto(i.to_bytes(4, "big") * 16, (v.addr_b, 5001))
        out, err = w.communicate("go\n", timeout=120)
    assert w.returncode == 0, err[-2000:]
    r = json.loads(out)
    kernel = r["stats"]["drops"]["kernel"]
    assert kernel > 2000 and 0 < r["feed"] < 1000  # the ring held a few dozen
    assert r["stats"]["packets"] == r["frames"] and r["feed"] + kernel >= 3000
    assert r["frames"] + kernel - 3000 <= 20  # anything else on the link: ARP, IPv6 neighbour discovery
