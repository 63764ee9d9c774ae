"""The go-live gate (`xdpfeed canary`): two releases (each a bin/xdpfeed) run side by side on a live simulated
venue. Identical releases pass; a release that changes one byte of what it delivers fails with the first
divergence; one that does not start, or loses messages, fails and says why; a first install (no current
release) is judged on its metrics; bad input is one line and exit 2. Also `compare ipc:A ipc:B --overlap`,
the same comparison from the command line."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from test_cli_run import REPO, XDPFEED, env, lines_pair, start_venue, stop_venue

from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.sinks.subscriber import Subscriber, SubscriberError

from helpers import IPC_OFF_BY_ONE, eventually

pytestmark = pytest.mark.root  # iceoryx2 services and multicast on loopback

BAD_RELEASE = f"""\
import sys

from xdpfeed.multicast.cli.main import main
from xdpfeed.multicast.sinks import ipc

exec({IPC_OFF_BY_ONE!r}, ipc.__dict__)
sys.exit(main())
"""


def release(tmp_path, name: str, body: str | None = None, script: str | None = None) -> str:
    """A release folder's bin/xdpfeed: this tree's handler, optionally run through `body` (a Python program)."""
    bindir = tmp_path / name / "bin"
    bindir.mkdir(parents=True)
    if body is not None:
        (tmp_path / name / "release.py").write_text(body)
        script = f'exec {sys.executable} {tmp_path / name / "release.py"} "$@"'
    elif script is None:
        script = f'exec {sys.executable} -m xdpfeed.multicast.cli "$@"'
    path = bindir / "xdpfeed"
    path.write_text(f"#!/bin/sh\ncd {REPO}\n{script}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    """A venue publishing for about 90 s (10k msg/s), with its replay server."""
    d = tmp_path_factory.mktemp("canary")
    day = str(d / "day.itch")
    synthetic.generate_to_file(day, 900_000, seed=5)
    a, b = lines_pair()
    p, info = start_venue(day, a, b, "--rate", "10000")
    try:
        yield {"a": a, "b": b, "replay": info["replay"], "dir": d}
    finally:
        stop_venue(p)


def config(venue, path, recovery: bool = True, extra: str = "") -> str:
    text = textwrap.dedent(f"""\
        [feed]
        name = "canary"
        line_a = "udp:{venue['a']}@lo"
        line_b = "udp:{venue['b']}@lo"
        start = "one"
        {extra}
        """)
    if recovery:
        text += f'[recovery]\nreplay = ["{venue["replay"]}"]\nuser = "TEST01"\n'
    path.write_text(text)
    return str(path)


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def gate(*args, timeout=300):
    p = subprocess.run(XDPFEED + ["canary", *map(str, args)], capture_output=True, text=True, env=env(), cwd=REPO,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test_identical_releases_pass(venue, tmp_path):
    cur, new = release(tmp_path, "r1"), release(tmp_path, "r2")
    code, out, err = gate("--new", new, "--current", cur, "-c", config(venue, tmp_path / "c.toml"), "--seconds", 2,
                          "-T", "json")
    r = json.loads(out)
    assert code == 0 and r["pass"] and r["reasons"] == [], (r["reasons"], err)
    c = r["compare"]
    assert c["identical"] and c["compared"] > 5_000 and c["missing"] == c["extra"] == c["different"] == 0
    assert c["book"]["identical"]
    o = c["overlap"]
    assert o["last_seq"] - o["first_seq"] + 1 == c["compared"]
    for role in ("current", "new"):
        m = r[role]["metrics"]
        assert m["state"] == "SYNCHRONIZED" and m["lost"] == 0 and m["delivered"] >= o["last_seq"], m
        s = r[role]["summary"]  # each stopped cleanly with its JSON summary
        assert r[role]["exit"] == 0 and s["state"] == "SYNCHRONIZED" and s["lost"] == 0, r[role]


def test_a_release_that_changes_what_it_delivers_fails_at_the_first_divergence(venue, tmp_path):
    cur, bad = release(tmp_path, "r1"), release(tmp_path, "bad", body=BAD_RELEASE)
    code, out, err = gate("--new", bad, "--current", cur, "-c", config(venue, tmp_path / "c.toml"), "--seconds", 2,
                          "-T", "json")
    r = json.loads(out)
    assert code == 1 and not r["pass"], err
    c = r["compare"]
    assert c["different"] > 0 and c["missing"] == c["extra"] == 0 and not c["identical"]
    f = c["first_divergence"]
    assert f["a"] != f["b"] and f["seq"] >= c["overlap"]["first_seq"]
    assert any(why.startswith("the releases differ: missing 0, extra 0, different ") for why in r["reasons"])
    # its metrics were fine: only the comparison failed it
    assert r["new"]["metrics"]["state"] == "SYNCHRONIZED" and len(r["reasons"]) == 1
    code, out, _ = gate("--new", bad, "--current", cur, "-c", tmp_path / "c.toml", "--seconds", 1)
    assert code == 1 and out.startswith("FAIL: canary gate over 1 s") and "first divergence at sequence" in out


def test_a_release_that_does_not_start_fails_and_says_why(venue, tmp_path):
    broken = release(tmp_path, "broken", script='echo "ImportError: libfoo.so.1: cannot open" >&2; exit 3')
    code, out, _ = gate("--new", broken, "--current", release(tmp_path, "r1"), "-c", config(venue, tmp_path / "c.toml"),
                        "-T", "json")
    r = json.loads(out)
    assert code == 1 and r["compare"] is None
    assert r["reasons"] == ["the new release exited with 3 before the window ended: ImportError: libfoo.so.1: "
                            "cannot open"]


def test_a_first_install_is_judged_on_its_metrics(venue, tmp_path):
    new = release(tmp_path, "r1")
    code, out, _ = gate("--new", new, "-c", config(venue, tmp_path / "c.toml"), "--seconds", 1, "-T", "json")
    r = json.loads(out)
    assert code == 0 and r["compare"] is None and "current" not in r and r["new"]["metrics"]["lost"] == 0
    # without recovery servers the handler cannot fill the day before it joined: lost, and the gate says so
    code, out, _ = gate("--new", new, "-c", config(venue, tmp_path / "n.toml", recovery=False), "--seconds", 1,
                        "--min-messages", 1000, "-T", "json")
    r = json.loads(out)
    assert code == 1 and r["new"]["metrics"]["lost"] > 0
    assert f"the new release lost {r['new']['metrics']['lost']:,} messages" in r["reasons"]


@pytest.mark.parametrize("make, message", [
    (lambda d, v: str(d / "none.toml"), "none.toml: no such config"),
    (lambda d, v: config(v, d / "o.toml", extra='outputs = ["itch:/tmp/x.itch"]'),
     "has outputs (itch:/tmp/x.itch): a canary must not write the production outputs a second time"),
    (lambda d, v: write(d / "u.toml", '[feed]\nline_a = "udp:239.1.1.1:5000@lo"\n'
                        '[recovery]\nreplay = ["127.0.0.1:1"]\n'),
     "recovery.replay needs recovery.user"),
])
def test_bad_input_is_one_line_and_exit_2(venue, tmp_path, make, message):
    code, out, err = gate("--new", release(tmp_path, "r1"), "-c", make(tmp_path, venue))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == "", err


def test_a_release_that_is_not_there_is_bad_input(venue, tmp_path):
    code, _, err = gate("--new", tmp_path / "nope" / "bin" / "xdpfeed", "-c", config(venue, tmp_path / "c.toml"))
    assert code == 2 and "not an executable (a release's bin/xdpfeed)" in err


def test_compare_two_live_handlers_over_their_overlap(venue, tmp_path):
    """`compare ipc:A ipc:B --overlap --seconds S`: both subscriptions are read side by side."""
    cfg = config(venue, tmp_path / "c.toml")
    tag = f"cmp-{os.getpid()}"
    procs = [subprocess.Popen(XDPFEED + ["run", "-c", cfg, "--out", f"ipc:{tag}-{k}", "--metrics-addr", "off", "-q"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
             for k in (1, 2)]
    try:
        def publishing(name):
            try:
                Subscriber(name).close()
                return True
            except SubscriberError:
                return False

        eventually(lambda: all(publishing(f"ipc:{tag}-{k}") for k in (1, 2)), 60)
        p = subprocess.run(XDPFEED + ["compare", f"ipc:{tag}-1", f"ipc:{tag}-2", "--overlap", "--seconds", "2", "-T",
                                      "json"], capture_output=True, text=True, env=env(), cwd=REPO, timeout=120)
    finally:
        for q in procs:
            q.terminate()
            q.wait(timeout=30)
    r = json.loads(p.stdout)
    assert p.returncode == 0 and r["identical"] and r["compared"] > 5_000, p.stderr
    assert r["overlap"]["last_seq"] - r["overlap"]["first_seq"] + 1 == r["compared"]
    assert r["latency"]["messages"] == r["compared"]  # both carry receive times
