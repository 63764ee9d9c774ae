"""`xdpfeed run`, `xdpfeed simulate` and `xdpfeed demo` as a user runs them: separate processes on
loopback, flags, credentials from the environment, exit codes, JSON summaries, the --record file."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.exchange import synthetic

from conftest import REPO
from helpers import read_until

XDPFEED = [sys.executable, "-m", "xdpfeed.multicast.cli"]


def lines_pair():
    r = random.Random()
    port = r.randrange(20000, 60000)
    return (f"239.253.{r.randrange(1, 255)}.{r.randrange(1, 255)}:{port}",
            f"239.253.{r.randrange(1, 255)}.{r.randrange(1, 255)}:{port + 1}")


def env(password="pw12345"):
    e = dict(os.environ, XDPFEED_PASSWORD=password)
    e.pop("NUMBA_BOUNDSCHECK", None)  # the processes use the production build and cache
    e.pop("NUMBA_CACHE_DIR", None)
    return e


@pytest.fixture(scope="module")
def day_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("day") / "day.itch")
    synthetic.generate_to_file(path, 30_000, seed=21)
    return path


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_handler(argv, password="pw12345"):
    """`xdpfeed run` in the background, returned once its lines are joined."""
    p = subprocess.Popen(XDPFEED + ["run", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env(password), cwd=REPO)
    seen = []
    for line in p.stderr:
        seen.append(line)
        if "ready: line A" in line:
            return p, seen
    raise AssertionError("".join(seen))


def finish(p, seen, timeout=300):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, "".join(seen) + err


def start_venue(day, a, b, *extra, password="pw12345"):
    cmd = XDPFEED + ["simulate", "--day", day, "--line-a", a, "--line-b", b, "--user", "TEST01", "--linger", "120",
                     "--start-delay", "1.0", "-T", "json", *extra]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(password), cwd=REPO)
    first = p.stdout.readline()
    assert first.startswith("{"), p.stderr.read()
    return p, json.loads(first)


def venue_in_ns_a(v, day_file, a, b, replay, request, handler, seen):
    """The simulated venue in namespace A (5% loss per line, a burst of 3,000 on both) until the handler
    started in namespace B ends: (its exit code, stdout, stderr, the venue's summary)."""
    cmd = XDPFEED + ["simulate", "--day", day_file, "--line-a", a, "--line-b", b, "--user", "TEST01",
                     "--linger", "120", "--start-delay", "0.5", "-T", "json", "--iface-addr", v.addr_a,
                     "--bind", v.addr_a, "--replay-port", str(replay), "--request-port", str(request),
                     "--loss-a", "0.05", "--loss-b", "0.05", "--burst-loss", "3000", "--rate", "200000"]
    venue = subprocess.Popen(v.exec(v.ns_a) + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env(), cwd=REPO)
    try:
        code, out, err = finish(handler, seen)
    finally:
        vs = stop_venue(venue)
    return code, out, err, vs


def stop_venue(p):
    p.send_signal(2)
    out, err = p.communicate(timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def test_run_until_eos_records_exactly_the_venues_day(day_file, tmp_path):
    a, b = lines_pair()
    replay, request = free_port(), free_port(socket.SOCK_DGRAM)
    record = tmp_path / "out.itch"
    cfg = tmp_path / "feed.toml"
    cfg.write_text("[feed]\nname = 'itch'\n[recovery]\nrerequest_max = 1000\n[sequencer]\nhold_messages = 65536\n")
    h, seen = start_handler(["-a", f"udp:{a}@lo", "-b", f"udp:{b}@127.0.0.1", "--replay", f"127.0.0.1:{replay}",
                             "--rerequest", f"127.0.0.1:{request}", "--user", "TEST01", "--record", str(record),
                             "--until-eos", "-T", "json", "--idle-timeout", "60", "-c", str(cfg)])
    venue, addr = start_venue(day_file, a, b, "--loss-a", "0.05", "--loss-b", "0.05", "--burst-loss", "3000",
                              "--rate", "200000", "--replay-port", str(replay), "--request-port", str(request))
    try:
        code, out, err = finish(h, seen)
    finally:
        vs = stop_venue(venue)
    assert code == 0, err[-2000:]
    s = json.loads(out)
    for key in ("delivered", "duplicates", "gaps", "filled_rerequest", "filled_replay", "lost", "stale", "lines"):
        assert key in s
    assert s["delivered"] == 30_000 == vs["published_messages"] and s["lost"] == 0 and s["stale"] is False
    assert s["filled_replay"] >= 3000 and s["filled_rerequest"] > 0 and s["gaps"] > 0 and s["exit"] == "complete"
    assert set(s["lines"]) == {"A", "B"} and s["lines"]["A"]["packets"] > 0 and s["lines"]["B"]["packets"] > 0
    assert record.read_bytes() == open(day_file, "rb").read()
    book = OrderBook()
    book.apply_stream(__import__("numpy").fromfile(day_file, dtype="uint8"))
    assert s["book_checksum"] == book.checksum()
    assert "pw12345" not in err + out  # the password is never printed


def test_run_stale_exits_1(day_file):
    a, b = lines_pair()
    replay = free_port()
    # a wrong password: replay is refused, and no re-request server is given
    h, seen = start_handler(["-a", f"udp:{a}@lo", "-b", f"udp:{b}@lo", "--replay", f"127.0.0.1:{replay}",
                             "--user", "TEST01", "--until-eos", "-T", "json", "-c", str(_cfg(day_file))],
                            password="wrongpw")
    venue, addr = start_venue(day_file, a, b, "--burst-loss", "2000", "--rate", "200000", "--replay-port",
                              str(replay))
    try:
        code, out, err = finish(h, seen)
    finally:
        stop_venue(venue)
    assert code == 1, err[-2000:]
    s = json.loads(out)
    assert s["stale"] is True and s["lost"] >= 2000 and s["exit"] == "stale"
    assert "login rejected: not authorized" in err and "feed STALE" in err


def _cfg(day_file):
    path = os.path.join(os.path.dirname(day_file), "feed.toml")
    with open(path, "w") as f:
        f.write("[recovery]\ndeadline = 1.0\nbackoff = 0.05\nmax_backoff = 0.2\nserver_timeout = 1.0\n")
    return path


@pytest.mark.parametrize("argv, message", [
    (["run"], "no line to read"),
    (["run", "-a", "udp:239.1.1.1:5000@nosuchif0"], "no such interface 'nosuchif0'"),
    (["run", "-a", "udp:239.1.1.1:5000@lo", "--replay", "127.0.0.1:1"], "--replay needs --user"),
    (["run", "-a", "udp:239.1.1.1:5000@lo", "--replay", "nohostport"], "--replay: expected HOST:PORT"),
    (["run", "-a", "bogus:x"], "unknown source scheme 'bogus'"),
    (["run", "-a", "udp:239.1.1.1:5000@lo", "--password", "x"], "unrecognized arguments: --password"),
    (["simulate", "--loss-a", "2"], "--loss-a"),
    (["demo", "--messages", "10"], "--messages must be at least 5000"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message):
    e = env()
    e.pop("XDPFEED_PASSWORD")
    r = subprocess.run(XDPFEED + argv, capture_output=True, text=True, env=e, cwd=REPO, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if "error" in ln]) == 1


def test_config_file_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    for body, message in [
        ("[feed]\nline_c = 'x'\n", "unknown key feed.line_c"),
        ("[recovery]\ndeadline = -1\n", "recovery.deadline must be a number of seconds"),
        ("[sequencer]\nhold_messages = 1\n", "sequencer.hold_messages: expected an integer in 2.."),
        ("[recovery]\nreplay = ['x']\n", "recovery.replay: expected HOST:PORT"),
        ("[nope]\n", "unknown section [nope]"),
        ("[feed\n", "not valid TOML"),
    ]:
        path.write_text(body)
        r = subprocess.run(XDPFEED + ["run", "-c", str(path), "-a", "udp:239.1.1.1:5000@lo"], capture_output=True,
                           text=True, env=env(), cwd=REPO, timeout=120)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (body, r.stderr)


def test_password_file_must_be_private(tmp_path):
    from xdpfeed.multicast.feed import config

    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o644)
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f"[recovery]\nuser = 'TEST01'\npassword_file = '{pw}'\n")
    r = subprocess.run([sys.executable, "-c", f"from xdpfeed.multicast.feed import config; "
                        f"print(config.load({str(cfg)!r}).password)"], capture_output=True, text=True, env=env())
    assert r.stdout.strip() == "s3cret" and "readable by others" in r.stderr
    pw.chmod(0o600)
    assert config.load(str(cfg)).password == "s3cret"


def test_demo_json_summary():
    r = subprocess.run(XDPFEED + ["demo", "--messages", "30000", "--rate", "300000", "--burst-loss", "3000",
                                  "--loss-a", "0.1", "--loss-b", "0.1", "--rerequest-max", "1000", "--json"],
                       capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout)
    assert set(s) >= {"published", "delivered", "duplicates", "gaps", "filled_rerequest", "filled_replay", "lost",
                      "stale", "book_matches"}
    assert s["published"] == s["delivered"] == 30_000 and s["lost"] == 0 and s["book_matches"] is True
    assert s["filled_replay"] >= 6000 and s["filled_rerequest"] > 0 and s["gaps"] > 0 and s["stale"] is False


def ignore_sigint():
    """preexec_fn: start the child with SIGINT ignored, as `nohup`, a script's background job and some CI
    runners do."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_demo_with_sigint_ignored_stops_its_venue_and_vouches_for_its_summary():
    """Started with SIGINT ignored (inherited by the venue it starts), the demo still stops its venue
    promptly and prints the summary a user reads: what was published, all of it delivered."""
    t0 = time.monotonic()
    r = subprocess.run(XDPFEED + ["demo", "--messages", "30000", "--rate", "300000", "--burst-loss", "3000",
                                  "--metrics-addr", "off"], capture_output=True, text=True, env=env(), cwd=REPO,
                       timeout=300, preexec_fn=ignore_sigint)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "  published 30,000  delivered 30,000  " in r.stdout
    assert "  lost 0  stale False  book matches the venue's: True" in r.stdout
    assert took < 60, f"{took:.1f} s: the venue was not stopped, it lingered"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_simulate_with_sigint_ignored_stops_on_a_signal_with_its_summary(day_file, sig):
    a, b = lines_pair()
    p = subprocess.Popen(XDPFEED + ["simulate", "--day", day_file, "--line-a", a, "--line-b", b, "--linger", "120",
                                    "-T", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env(), cwd=REPO, preexec_fn=ignore_sigint)
    seen = []
    assert read_until(p, seen, "End of Session sent"), "".join(seen)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 128 + sig, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["published_messages"] == 30_000 and summary["ended"] is True


def test_run_with_sigint_ignored_stops_on_sigint_with_its_summary():
    a, b = lines_pair()
    p = subprocess.Popen(XDPFEED + ["run", "-a", f"udp:{a}@lo", "-b", f"udp:{b}@lo", "-T", "json", "--metrics-addr",
                                    "off"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                         cwd=REPO, preexec_fn=ignore_sigint)
    seen = []
    assert read_until(p, seen, "ready: line A"), "".join(seen)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert json.loads(out)["exit"] == "stopped"


@pytest.mark.root
@pytest.mark.parametrize("source", ["udp", "packet", "afxdp-native", "afxdp-skb"])
def test_run_across_a_veth_pair_between_namespaces(day_file, tmp_path, source):
    """The venue in one namespace, the handler in another, real multicast over the veth (IGMP join,
    IP_MULTICAST_IF), loss on both lines and a burst on both: recovered across the link. Line A comes
    through the source under test; line B through a kernel UDP socket on the same interface (with
    AF_XDP, its packets must pass the XDP filter on to the kernel)."""
    from netns import veth_pair

    with veth_pair() as v:
        a, b = lines_pair()
        record = tmp_path / "veth.itch"
        replay, request = 31000 + random.randrange(1000), 32000 + random.randrange(1000)
        cfg = tmp_path / "feed.toml"
        cfg.write_text("[recovery]\nrerequest_max = 1000\n")
        line_a = {"udp": f"udp:{a}@{v.if_b}", "packet": f"packet:{v.if_b}?group={a}",
                  "afxdp-native": f"afxdp:{v.if_b}?group={a}&mode=native",
                  "afxdp-skb": f"afxdp:{v.if_b}?group={a}&mode=skb"}[source]
        argv = ["-a", line_a, "-b", f"udp:{b}@{v.addr_b}", "--replay", f"{v.addr_a}:{replay}",
                "--rerequest", f"{v.addr_a}:{request}", "--user", "TEST01", "--record", str(record), "--until-eos",
                "-T", "json", "--idle-timeout", "60", "-c", str(cfg)]
        h = subprocess.Popen(v.exec(v.ns_b) + XDPFEED + ["run", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
        seen = []
        for line in h.stderr:
            seen.append(line)
            if "ready: line A" in line:
                break
        code, out, err, vs = venue_in_ns_a(v, day_file, a, b, replay, request, h, seen)
        assert code == 0, err[-3000:]
        s = json.loads(out)
        assert s["delivered"] == vs["published_messages"] == 30_000 and s["lost"] == 0
        assert s["filled_replay"] >= 3000 and s["filled_rerequest"] > 0
        assert s["lines"]["A"]["packets"] > 0 and s["lines"]["B"]["packets"] > 0
        assert s["lines"]["A"]["source"]["packets"] >= s["lines"]["A"]["packets"]
        mode = s["lines"]["A"]["source"]["mode"]
        assert {"udp": "socket", "packet": "tpacket_v3", "afxdp-native": "native", "afxdp-skb": "skb"}[source] in mode
        assert record.read_bytes() == open(day_file, "rb").read()
        book = OrderBook()
        book.apply_stream(__import__("numpy").fromfile(day_file, dtype="uint8"))
        assert s["book_checksum"] == book.checksum()


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_on_af_xdp_ends_cleanly_on_a_signal(day_file, sig):
    """Mid-feed, SIGTERM or SIGINT ends `xdpfeed run` with its summary and the XDP program detached."""
    from netns import veth_pair

    with veth_pair() as v:
        a, b = lines_pair()
        h = subprocess.Popen(v.exec(v.ns_b) + XDPFEED + ["run", "-a", f"afxdp:{v.if_b}?group={a}", "-T", "json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
        seen = []
        for line in h.stderr:
            seen.append(line)
            if "ready: line A" in line:
                break
        venue = subprocess.Popen(v.exec(v.ns_a) + XDPFEED + [
            "simulate", "--day", day_file, "--line-a", a, "--line-b", b, "--user", "TEST01", "--linger", "120",
            "-T", "json", "--iface-addr", v.addr_a, "--bind", v.addr_a, "--rate", "20000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
        try:
            read_until(h, seen, "following session")  # the feed is flowing
            time.sleep(0.2)
            h.send_signal(sig)
            code, out, err = finish(h, seen, timeout=60)
        finally:
            stop_venue(venue)
        links = subprocess.run(v.exec(v.ns_b) + ["ip", "-d", "link", "show", v.if_b], capture_output=True,
                               text=True).stdout
    assert code == 0, err[-2000:]
    s = json.loads(out)
    assert s["exit"] == "stopped" and 0 < s["delivered"] < 30_000
    assert s["lines"]["A"]["source"]["mode"].startswith(("native", "skb"))
    assert "xdp" not in links.split("link/ether")[0] and "prog/xdp" not in links, links
