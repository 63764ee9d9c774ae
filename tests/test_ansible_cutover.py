"""Cutover with Ansible (ansible/canary.yml and rollback.yml, docs/golive.md), on two feed hosts that are
namespaces of this machine (tests/ansible_lab.py) receiving a simulated venue over a veth pair:

- a first canary installs release 1 in a virtualenv of its own, gates it on its metrics and makes it current;
- release 2 is installed beside it, run side by side with it by the gate (`xdpfeed canary`: identical,
  SYNCHRONIZED, nothing lost), and switched to, one host at a time (serial: 1), release 1 kept as previous;
- the same canary again changes nothing; another wheel under release 2's name is refused;
- a release that delivers different bytes fails its gate on the first host: that host keeps release 2 and the
  second host is not touched;
- rollback.yml returns both hosts to release 1 in one command, and a second run changes nothing.
"""

import json
import os
import subprocess
import sys

import ansible_lab as lab
import pytest

from xdpfeed.capture import netns
from xdpfeed.multicast.exchange import synthetic

from helpers import IPC_OFF_BY_ONE

# slow: seven plays with three releases gated on a live venue take 3-5 minutes (most of it the releases' first
# compile on a cold cache), which would take `make test` past its 15 minutes on this 2-core machine; `make
# test-slow` runs it. The gate itself is tested in `make test` by tests/test_canary.py.
pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(lab.bin_path("ansible-playbook") is None,
                                 reason="ansible is not installed (pip install -e '.[test]')")]

GROUP_A, GROUP_B, PORT = "239.77.1.1", "239.77.1.2", 31001
V1, V2, BAD = "0.1.0+lab1", "0.1.0+lab2", "0.1.0+lab3"
# The bad release's ipc: output changes the last byte of every batch it publishes: what it delivers differs. The
# change comes with the release (a module its interpreter imports at start, through a .pth file), so its package
# sources are the good releases' and share their compiled code (the lab would otherwise compile three times).
BAD_HOOK = """import importlib.abc
import importlib.util
import sys

PATCH = {patch!r}


class PatchIpc(importlib.abc.MetaPathFinder):  # the sink is patched when it is first imported
    def find_spec(self, name, path, target=None):
        if name != "xdpfeed.multicast.sinks.ipc":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            exec(PATCH, module.__dict__)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, PatchIpc())
"""
BAD_EXTRA = {"xdpfeed_lab_bug.py": BAD_HOOK.format(patch=IPC_OFF_BY_ONE),
             "xdpfeed_lab_bug.pth": "import xdpfeed_lab_bug\n"}


@pytest.fixture(scope="module")
def lab_hosts(tmp_path_factory):
    why = lab.unavailable()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("cutover")
    wheel = lab.build_wheel(str(tmp / "wheel"))
    wheels = {v: lab.rewheel(wheel, v, str(tmp / "wheels")) for v in (V1, V2)}
    wheels[BAD] = lab.rewheel(wheel, BAD, str(tmp / "wheels"), extra=BAD_EXTRA)
    wheels["v2-rebuilt"] = lab.rewheel(wheel, V2, str(tmp / "rebuilt"), {"xdpfeed/__init__.py": "\n# rebuilt\n"})
    day = str(tmp / "day.itch")
    synthetic.generate_to_file(day, 1_500_000, seed=9)
    cache = tmp / "numba-cache"  # the hosts share one compiled-code cache, seeded with this tree's
    (cache / "numba").mkdir(parents=True)
    lab.seed_numba_cache(str(cache / "numba"))
    try:
        cm = netns.veth_pair()
        pair = cm.__enter__()
    except netns.Unavailable as e:
        pytest.skip(str(e))
    hosts, venue = [], None
    try:
        venue = subprocess.Popen(
            ["ip", "netns", "exec", pair.ns_b, sys.executable, "-m", "xdpfeed.multicast.cli", "simulate", "--day", day,
             "--line-a", f"{GROUP_A}:{PORT}", "--line-b", f"{GROUP_B}:{PORT + 1}", "--iface-addr", pair.addr_b,
             "--bind", pair.addr_b, "--rate", "3000", "--user", "LAB01", "--linger", "60", "-T", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=lab.REPO,
            env=dict(os.environ, XDPFEED_PASSWORD="lab-s3cret"))
        info = json.loads(venue.stdout.readline() or "{}")
        assert "replay" in info, venue.stderr.read()
        for name in ("feed-a", "feed-b"):  # both in namespace A: each receives the venue on the veth
            h = lab.Host(name, pair.ns_a, pair.if_a, str(tmp / name), binds={str(cache): "/var/cache/xdpfeed"})
            lab.start(h)
            hosts.append(h)
        inventory = str(tmp / "inventory" / "hosts.yml")
        lab.write_inventory(inventory, hosts, {
            "xdpfeed_pip_extra_args": "--no-index", "xdpfeed_venv_system_site_packages": True,
            "xdpfeed_line_a": f"udp:{GROUP_A}:{PORT}@{pair.if_a}",
            "xdpfeed_line_b": f"udp:{GROUP_B}:{PORT + 1}@{pair.if_a}",
            "xdpfeed_replay": [info["replay"]], "xdpfeed_replay_user": "LAB01", "xdpfeed_replay_password": "lab-s3cret",
            "xdpfeed_canary_seconds": 3, "xdpfeed_canary_min_messages": 1000, "xdpfeed_metrics_addr": "off"})
        yield {"hosts": hosts, "inventory": inventory, "home": str(tmp / "ansible-home"), "wheels": wheels}
    finally:
        for h in hosts:
            lab.stop(h)
        if venue is not None:
            venue.kill()
            venue.wait()
        cm.__exit__(None, None, None)


def play(lab_hosts, playbook: str, wheel: str | None = None) -> lab.Run:
    extra = ["-e", json.dumps({"xdpfeed_wheel": lab_hosts["wheels"][wheel]})] if wheel else []
    return lab.run_playbook(lab_hosts["inventory"], lab_hosts["home"], *extra, playbook=playbook)


@pytest.fixture(scope="module")
def runs(lab_hosts):
    """The whole go-live, in order; each step's result, and which release each host ran after it."""
    out, current, previous = {}, {}, {}

    def step(name, playbook, wheel=None):
        out[name] = play(lab_hosts, playbook, wheel)
        current[name] = {h.name: _link(h, "current") for h in lab_hosts["hosts"]}
        previous[name] = {h.name: _link(h, "previous") for h in lab_hosts["hosts"]}

    step("first", "canary.yml", V1)
    step("canary", "canary.yml", V2)
    step("again", "canary.yml", V2)
    step("rebuilt", "canary.yml", "v2-rebuilt")
    step("bad", "canary.yml", BAD)
    step("rollback", "rollback.yml")
    step("rollback_again", "rollback.yml")
    return {"runs": out, "current": current, "previous": previous}


def _link(h: lab.Host, name: str) -> str | None:
    path = h.upper(f"/opt/xdpfeed/{name}")
    return os.path.basename(os.readlink(path)) if os.path.islink(path) else None


def _gate(run: lab.Run, host: str) -> dict:
    return json.loads(run.result(host, "Run the current and the new release side by side (xdpfeed canary)")["stdout"])


def test_a_first_install_is_gated_on_its_metrics_and_made_current(lab_hosts, runs):
    r = runs["runs"]["first"]
    assert r.rc == 0, r.failures() or r.output
    assert runs["current"]["first"] == {"feed-a": V1, "feed-b": V1}
    assert runs["previous"]["first"] == {"feed-a": None, "feed-b": None}
    for h in lab_hosts["hosts"]:
        g = _gate(r, h.name)
        assert g["pass"] and g["compare"] is None and "current" not in g
        assert g["new"]["metrics"]["state"] == "SYNCHRONIZED" and g["new"]["metrics"]["lost"] == 0
        assert os.access(h.upper(f"/opt/xdpfeed/releases/{V1}/bin/xdpfeed"), os.X_OK)
        assert "ExecStart=/opt/xdpfeed/current/bin/xdpfeed run" in h.read("/etc/systemd/system/xdpfeed.service")
        canary = h.read("/etc/xdpfeed/canary.toml")  # the feed's config without outputs or metrics
        assert f'line_a = "udp:{GROUP_A}:{PORT}@{h.iface}"' in canary and 'addr = "off"' in canary


def test_a_new_release_is_gated_against_the_current_one_and_switched_one_host_at_a_time(lab_hosts, runs):
    r = runs["runs"]["canary"]
    assert r.rc == 0, r.failures() or r.output
    assert runs["current"]["canary"] == {"feed-a": V2, "feed-b": V2}
    assert runs["previous"]["canary"] == {"feed-a": V1, "feed-b": V1}
    for h in lab_hosts["hosts"]:
        g = _gate(r, h.name)
        assert g["pass"] and g["current"]["command"] == f"/opt/xdpfeed/releases/{V1}/bin/xdpfeed"
        assert g["new"]["command"] == f"/opt/xdpfeed/releases/{V2}/bin/xdpfeed"
        c = g["compare"]
        assert c["identical"] and c["compared"] >= 3000 and c["different"] == c["missing"] == c["extra"] == 0
        assert g["new"]["metrics"]["state"] == "SYNCHRONIZED" and g["new"]["metrics"]["lost"] == 0
        assert {"Switch the current release", "Keep the current release as the previous one"} <= set(
            r.changed_tasks(h.name))
    # serial: 1: feed-a was gated and switched before anything ran on feed-b
    order = [(name, host) for name, host, _ in r.tasks]
    switch_a = order.index(("Switch the current release", "feed-a"))
    assert switch_a < min(i for i, (_, host) in enumerate(order) if host == "feed-b")


def test_the_same_release_again_changes_nothing(runs):
    r = runs["runs"]["again"]
    assert r.rc == 0, r.failures() or r.output
    for host in ("feed-a", "feed-b"):
        assert r.stats[host]["changed"] == 0, r.changed_tasks(host)
    assert not any(name == "Run the current and the new release side by side (xdpfeed canary)" and "rc" in res
                   for name, _, res in r.tasks)  # a current release is not gated again


def test_another_wheel_under_an_installed_releases_name_is_refused(runs):
    r = runs["runs"]["rebuilt"]
    assert r.rc != 0
    assert f"release {V2} is installed on feed-a from another wheel: give the new build a version of its own" in \
        r.failures()
    assert runs["current"]["rebuilt"] == {"feed-a": V2, "feed-b": V2}


def test_a_release_that_delivers_differently_fails_its_gate_and_stops_the_rollout(lab_hosts, runs):
    r = runs["runs"]["bad"]
    assert r.rc != 0
    g = _gate(r, "feed-a")
    assert not g["pass"] and g["compare"]["different"] > 0 and g["compare"]["missing"] == 0
    assert f"canary gate of {BAD} on feed-a failed: the releases differ: missing 0, extra 0, different" in r.failures()
    assert runs["current"]["bad"] == {"feed-a": V2, "feed-b": V2}  # feed-a still runs release 2
    a, b = lab_hosts["hosts"]
    assert os.path.isdir(a.upper(f"/opt/xdpfeed/releases/{BAD}"))  # installed, gated, never current
    assert not os.path.exists(b.upper(f"/opt/xdpfeed/releases/{BAD}"))  # the rollout stopped at feed-a
    assert not [t for t in r.tasks if t[1] == "feed-b"]


def test_rollback_returns_to_the_previous_release_and_a_second_run_changes_nothing(runs):
    r = runs["runs"]["rollback"]
    assert r.rc == 0, r.failures() or r.output
    assert runs["current"]["rollback"] == {"feed-a": V1, "feed-b": V1}
    for host in ("feed-a", "feed-b"):
        assert r.changed_tasks(host) == ["Return to the previous release"]
        assert r.result(host, "Say which release runs")["msg"] == f"{host} runs {V1}"
    again = runs["runs"]["rollback_again"]
    assert again.rc == 0 and all(again.stats[h]["changed"] == 0 for h in ("feed-a", "feed-b"))
    assert runs["current"]["rollback_again"] == {"feed-a": V1, "feed-b": V1}
