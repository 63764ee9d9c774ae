"""The live handler with capabilities instead of root: each source gets exactly the capabilities the
README lists for it (a process of uid 0 stripped of every other capability, in the bounding, inheritable
and ambient sets), receives the simulated venue's feed across a veth pair with loss and recovery, and
delivers all of it. The tests that take one capability away at a time and check the error names it are
in test_afxdp.py (AF_XDP) and test_packet_source.py (AF_PACKET)."""

import json
import random
import shutil
import subprocess

import pytest
from test_cli_run import XDPFEED, day_file, env, lines_pair, venue_in_ns_a  # noqa: F401

from conftest import REPO

CAPS = {  # what README.md says each source needs
    "udp": "",
    "packet": "+net_raw",
    "afxdp": "+net_admin,+bpf,+net_raw,+ipc_lock",
}


@pytest.mark.root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv to drop capabilities")
@pytest.mark.parametrize("source", sorted(CAPS))
def test_handler_runs_with_only_the_capabilities_its_source_needs(day_file, source):  # noqa: F811
    from netns import veth_pair

    with veth_pair() as v:
        a, b = lines_pair()
        replay, request = 33000 + random.randrange(1000), 34000 + random.randrange(1000)
        line_a = {"udp": f"udp:{a}@{v.if_b}", "packet": f"packet:{v.if_b}?group={a}",
                  "afxdp": f"afxdp:{v.if_b}?group={a}"}[source]
        caps = "-all" + ("," + CAPS[source] if CAPS[source] else "")
        drop = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", f"--ambient-caps={caps}"]
        argv = ["run", "-a", line_a, "-b", f"udp:{b}@{v.addr_b}", "--replay", f"{v.addr_a}:{replay}", "--rerequest",
                f"{v.addr_a}:{request}", "--user", "TEST01", "--until-eos", "-T", "json", "--idle-timeout", "60",
                "--metrics-addr", "off"]
        h = subprocess.Popen(v.exec(v.ns_b) + drop + XDPFEED + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env(), cwd=REPO)
        seen = []
        for line in h.stderr:
            seen.append(line)
            if "ready: line A" in line or "error" in line:
                break
        code, out, err, vs = venue_in_ns_a(v, day_file, a, b, replay, request, h, seen)
        assert code == 0, err[-3000:]
        s = json.loads(out)
        assert s["delivered"] == vs["published_messages"] == 30_000 and s["lost"] == 0
        assert s["filled_replay"] + s["filled_rerequest"] >= 3000 and s["gaps"] > 0


@pytest.mark.root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv to drop capabilities")
@pytest.mark.parametrize("uri, needle", [
    ("packet:lo?group=239.1.2.3:5000", "CAP_NET_RAW"),
    ("afxdp:lo?group=239.1.2.3:5000", "CAP_"),
])
def test_missing_capability_is_one_line_naming_it_and_exit_2(uri, needle):
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"]
    r = subprocess.run(drop + XDPFEED + ["run", "-a", uri, "--metrics-addr", "off", "--idle-timeout", "5"],
                       capture_output=True, text=True, env=env(), cwd=REPO, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in r.stderr, r.stderr
