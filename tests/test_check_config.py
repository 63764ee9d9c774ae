"""`xdpfeed run --config FILE --check-config` (multicast/feed/hostcheck.py): a valid config on a ready host exits
0; a bad key or source URI exits 2 naming the key; a host that is not ready (no such interface, an AF_XDP
queue the NIC does not have, a capability missing) exits 1 with one line per problem; never a traceback,
and nothing is opened or joined.
"""

import shutil
import subprocess
import sys

import pytest
from netns import veth_pair

from xdpfeed.capture.huge_arrays import THP_ENABLED, thp_mode
from xdpfeed.multicast.feed import hostcheck

XDPFEED = [sys.executable, "-m", "xdpfeed.multicast.cli"]


def check(tmp_path, toml: str, *prefix: str) -> subprocess.CompletedProcess:
    path = tmp_path / "feed.toml"
    path.write_text(toml)
    p = subprocess.run([*prefix, *XDPFEED, "run", "--config", str(path), "--check-config"], capture_output=True,
                       text=True, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def test_ready_config_exits_0(tmp_path):
    pcap = tmp_path / "day.pcap"
    pcap.write_bytes(b"")
    p = check(tmp_path, f'[feed]\nline_a = "udp:233.54.12.111:26477@lo"\nline_b = "pcap:{pcap}"\n'
                        '[metrics]\naddr = "127.0.0.1:9464"\n')
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert p.stdout.splitlines()[-1].endswith("feed.toml: ready")
    mode = thp_mode()  # the book's pages: a note of what this kernel gives
    assert hostcheck._book_pages(mode) in p.stdout.splitlines()
    assert (f"on transparent huge pages ({THP_ENABLED}: {mode})" in p.stdout) == (mode in ("always", "madvise"))
    quiet = check(tmp_path, f'[feed]\nline_a = "pcap:{pcap}"\nbook = false\n')
    assert quiet.returncode == 0 and "feed.book" not in quiet.stdout


def test_book_pages_note_says_what_to_do_without_transparent_huge_pages():
    assert hostcheck._book_pages("never") == (f"feed.book: transparent huge pages are never ({THP_ENABLED}): the "
                                              "book's storage uses 4 KiB pages, a few percent slower (echo madvise "
                                              "> that file)")
    assert "are not available" in hostcheck._book_pages("")


@pytest.mark.parametrize("toml, needle", [
    ('[feed]\nline_a = "afxdp:lo?queue=0&bogus=1"\n', "feed.line_a: bad source"),
    ('[feed]\nline_a = "afxdp:lo?queue=0"\n', "feed.line_a: bad source 'afxdp:lo?queue=0': afxdp needs at least one"),
    ('[feed]\nline_a = "udp:notagroup:1@lo"\n', "feed.line_a: 'notagroup' is not a group address"),
    ('[feed]\nline_a = "udp:233.54.12.111:26477@lo"\nbogus = 1\n', "unknown key feed.bogus"),
    ('[feed]\nline_a = "udp:233.54.12.111:26477@lo"\n[metrics]\naddr = "nope"\n', "metrics.addr"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path, toml, needle):
    p = check(tmp_path, toml)
    assert p.returncode == 2 and needle in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_host_not_ready_exits_1_one_line_per_problem(tmp_path):
    p = check(tmp_path, '[feed]\nline_a = "packet:xfnosuch0"\nline_b = "pcap:/nonexistent/day.pcap"\n')
    assert p.returncode == 1
    assert p.stderr.splitlines() == [
        "xdpfeed run: error: feed.line_a: no interface 'xfnosuch0' on this host (ip link lists them)",
        "xdpfeed run: error: feed.line_b: cannot read /nonexistent/day.pcap"]


@pytest.mark.root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv to drop capabilities")
def test_afxdp_queue_and_capabilities(tmp_path):
    """On a veth with 1 receive queue: queue 0 is fine as root; queue 1 does not exist; without
    CAP_NET_ADMIN/CAP_BPF the check names them; two lines on one queue are refused."""
    with veth_pair() as pair:
        ns = ["ip", "netns", "exec", pair.ns_a]
        line = f"afxdp:{pair.if_a}?group=233.54.12.111:26477&queue="
        ok = check(tmp_path, f'[feed]\nline_a = "{line}0"\n', *ns)
        assert ok.returncode == 0, ok.stderr
        assert any("huge pages" in s for s in ok.stdout.splitlines())
        p = check(tmp_path, f'[feed]\nline_a = "{line}1"\n', *ns)
        assert p.returncode == 1 and f"feed.line_a: queue 1 but {pair.if_a} has 1 receive queue(s)" in p.stderr
        p = check(tmp_path, f'[feed]\nline_a = "{line}0"\nline_b = "{line}0"\n', *ns)
        assert p.returncode == 1 and "feed.line_b: " in p.stderr and "is taken by feed.line_a" in p.stderr
        caps = "-all,+net_raw,+ipc_lock"
        p = check(tmp_path, f'[feed]\nline_a = "{line}0"\n', *ns, "setpriv", f"--inh-caps={caps}",
                  f"--ambient-caps={caps}", f"--bounding-set={caps}")
        assert p.returncode == 1
        assert "feed.line_a: AF_XDP needs CAP_NET_ADMIN and CAP_BPF" in p.stderr, p.stderr


def test_check_config_opens_nothing(tmp_path):
    """The check does not bind the metrics port or open a source: a busy port and a busy group are fine."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = check(tmp_path, f'[feed]\nline_a = "udp:233.54.12.111:26477@lo"\n[metrics]\naddr = "127.0.0.1:{port}"\n')
    assert p.returncode == 0, p.stderr
