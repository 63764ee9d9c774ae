"""The Ansible roles in ansible/ (issue 9): ansible-lint (production profile) and --syntax-check pass, and
site.yml runs for real against two feed hosts that are network namespaces on this machine with veth
NICs and a fake root for what veth and a shared kernel lack (tests/ansible_lab.py says what is real and
what is faked). On fresh hosts, --check --diff shows the planned changes and changes nothing; applying
writes the expected files and values; a second run changes nothing; the unit passes systemd-analyze
verify; the config passes `xdpfeed run --check-config` as the service user with the unit's
capabilities (and fails without them); the persisted NIC script restores the NIC after a "reboot".
"""

import json
import os
import re
import shutil
import subprocess

import ansible_lab as lab
import pytest

from xdpfeed.capture import netns

pytestmark = pytest.mark.skipif(lab.bin_path("ansible-playbook") is None,
                                reason="ansible is not installed (pip install -e '.[test]' installs it)")

GROUP_A, GROUP_B, PORT = "233.54.12.111", "233.49.196.111", 26477
FEED_QUEUE = 1  # veth has 2 receive queues once the role sets its channels


def _group_vars(wheel: str) -> dict:
    return {
        "cpu_isolation_cpus": "1",
        "hugepages_count": 64,
        "nic_tuning_channels": {"rx": 2, "tx": 2},
        "irq_affinity_feed_queues": [FEED_QUEUE],
        "irq_affinity_feed_cpus": "1",
        "irq_affinity_housekeeping_cpus": "0",
        "irq_affinity_isolated_cpus": "1",
        "irq_affinity_xps_cpus": {0: "1", 1: "2"},
        "xdpfeed_wheel": wheel,
        "xdpfeed_pip_extra_args": "--no-index",
        "xdpfeed_venv_system_site_packages": True,
        "xdpfeed_rerequest": ["127.0.0.1:26478"],
        "xdpfeed_cpu_affinity": "1",
    }


def _host_vars(iface: str, line_a: str, **more) -> dict:
    return {"feed_sysctl_interfaces": [iface],
            "nic_tuning_interfaces": [{"name": iface, "flows": [{"dst_ip": GROUP_A, "dst_port": PORT,
                                                                   "queue": FEED_QUEUE}]}],
            "irq_affinity_interface": iface, "xdpfeed_line_a": line_a, **more}


def _snapshot(h: lab.Host) -> dict:
    """Everything a run could change on a host: the fake root's files, and the real veth's state."""
    files = {}
    for top in ("upper", "proc", "sys_hugepages"):
        for d, _, names in os.walk(h.path(top)):
            for n in names:
                p = os.path.join(d, n)
                if top == "upper" and os.path.relpath(p, h.path("upper")).startswith("root"):
                    continue  # ansible's own temporary files
                with open(p, "rb") as f:
                    files[os.path.relpath(p, h.root)] = f.read()
    files["nic.json"] = json.dumps(h.nic(), sort_keys=True).encode()
    q = f"/sys/class/net/{h.iface}/queues"
    real = h.run("sh", "-c", f"ethtool -l {h.iface} | tail -4; /usr/sbin/ethtool -k {h.iface} | grep receive-offload; "
                 f"cat {q}/rx-0/rps_cpus {q}/tx-0/xps_cpus /proc/sys/net/ipv4/conf/{h.iface}/rp_filter; "
                 "id xdpfeed || true; grep hugetlbfs /proc/mounts || true").stdout
    files["real"] = real.encode()
    return files


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """Hosts feed-a (kernel arguments through GRUB, AF_XDP + udp lines, persisted by udev) and feed-b
    (tuned, AF_PACKET line, persisted by a systemd unit), on the two ends of one veth pair."""
    why = lab.unavailable()
    if why:
        pytest.skip(why)
    tmp = str(tmp_path_factory.mktemp("ansible"))
    wheel = lab.build_wheel(os.path.join(tmp, "wheel"))
    try:
        cm = netns.veth_pair()
        pair = cm.__enter__()
    except netns.Unavailable as e:
        pytest.skip(str(e))
    a = lab.Host("feed-a", pair.ns_a, pair.if_a, os.path.join(tmp, "feed-a"))
    b = lab.Host("feed-b", pair.ns_b, pair.if_b, os.path.join(tmp, "feed-b"), tuned=True)
    a.vars = _host_vars(a.iface, f"afxdp:{a.iface}?group={GROUP_A}:{PORT}&queue={FEED_QUEUE}",
                        xdpfeed_line_b=f"udp:{GROUP_B}:{PORT}@{a.iface}", xdpfeed_replay=["127.0.0.1:26479"],
                        xdpfeed_replay_user="XDPF01", xdpfeed_replay_password="s3cret",
                        xdpfeed_nats_servers=["10.1.0.1:4222", "10.1.0.2:4222", "10.1.0.3:4222"],
                        xdpfeed_nats_stream="ITCH", xdpfeed_nats_user="feeda", xdpfeed_nats_password="n4ts-s3cret",
                        xdpfeed_nats_options={"replicas": 3, "buffer_mb": 512},
                        xdpfeed_outputs=["ipc:totalview"])
    b.vars = _host_vars(b.iface, f"packet:{b.iface}?group={GROUP_A}:{PORT}", nic_tuning_persist="systemd")
    try:
        for h in (a, b):
            lab.start(h)
            # Start from what the roles must change on the real veth: GRO on, RPS on.
            h.run("/usr/sbin/ethtool", "-K", h.iface, "gro", "on")
            h.run("sh", "-c", f"echo 3 > /sys/class/net/{h.iface}/queues/rx-0/rps_cpus")
        inventory = os.path.join(tmp, "inventory", "hosts.yml")
        lab.write_inventory(inventory, [a, b], _group_vars(wheel))
        yield {"a": a, "b": b, "inventory": inventory, "home": os.path.join(tmp, "ansible-home"),
               "release": os.path.basename(wheel).split("-")[1]}
    finally:
        for h in (a, b):
            lab.stop(h)
        cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def runs(hosts):
    """--check --diff on the fresh hosts, then two real runs, with snapshots around the check run."""
    a, b = hosts["a"], hosts["b"]
    before = {h.name: _snapshot(h) for h in (a, b)}
    check = lab.run_playbook(hosts["inventory"], hosts["home"], "--check", "--diff")
    after_check = {h.name: _snapshot(h) for h in (a, b)}
    calls_after_check = {h.name: h.calls() for h in (a, b)}
    first = lab.run_playbook(hosts["inventory"], hosts["home"], "--diff")
    calls_after_first = {h.name: h.calls() for h in (a, b)}
    second = lab.run_playbook(hosts["inventory"], hosts["home"])
    return {"check": check, "first": first, "second": second, "before": before, "after_check": after_check,
            "calls_after_check": calls_after_check, "calls_after_first": calls_after_first}


def test_syntax_check(tmp_path):
    p = subprocess.run([lab.bin_path("ansible-playbook"), "--syntax-check", "-i", "inventory.example.ini", "site.yml"],
                       cwd=lab.ANSIBLE_DIR, env=lab.ansible_env(str(tmp_path)), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_ansible_lint_production_profile(tmp_path):
    lint = lab.bin_path("ansible-lint")
    if lint is None:
        pytest.skip("ansible-lint is not installed (pip install -e '.[test]' installs it)")
    env = lab.ansible_env(str(tmp_path))
    env.pop("ANSIBLE_STDOUT_CALLBACK")
    p = subprocess.run([lint, "--offline", "--profile", "production", "--nocolor"], cwd=lab.ANSIBLE_DIR, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Profile 'production' was required, and it passed" in p.stdout + p.stderr, p.stdout + p.stderr
    assert "Unable to parse documentation" not in p.stdout + p.stderr, p.stderr


@pytest.mark.root
def test_check_mode_plans_changes_and_changes_nothing(hosts, runs):
    check = runs["check"]
    assert check.rc == 0, check.failures() or check.output
    for h in (hosts["a"], hosts["b"]):
        assert check.stats[h.name]["changed"] > 0 and check.stats[h.name]["failures"] == 0
        changed = set(check.changed_tasks(h.name))
        assert {"Tune the feed NICs", "Kernel settings for the feed (file and running kernel)",
                "Feed config (checked by xdpfeed before it is put in place)", "Service unit"} <= changed, changed
        before, after = runs["before"][h.name], runs["after_check"][h.name]
        assert before.keys() == after.keys() and [k for k in before if before[k] != after[k]] == []
        assert runs["calls_after_check"][h.name] == []
    # The diff shows what would change, e.g. the ring size and the flow rule on feed-a.
    nic = runs["check"].result("feed-a", "Tune the feed NICs")["results"][0]
    assert "rings.rx: 1024" in nic["diff"]["before"] and "rings.rx: 4096" in nic["diff"]["after"]
    assert f"flows.{GROUP_A}:{PORT}: absent" in nic["diff"]["before"]
    assert ["-G", hosts["a"].iface, "rx", "4096"] in nic["commands"]


@pytest.mark.root
def test_apply_writes_expected_files_and_values(hosts, runs):
    first = runs["first"]
    assert first.rc == 0, first.failures() or first.output
    for h in (hosts["a"], hosts["b"]):
        # sysctls: the file, the faked global ones, and the real per-namespace rp_filter
        conf = h.read("/etc/sysctl.d/60-xdpfeed.conf")
        assert "net.core.rmem_max=268435456" in conf.replace(" ", "")
        assert f"net.ipv4.conf.{h.iface}.rp_filter=2" in conf.replace(" ", "")
        assert h.read("/proc/sys/net/core/busy_poll").strip() == "50"
        assert h.read(f"/proc/sys/net/ipv4/conf/{h.iface}/rp_filter").strip() == "2"
        assert h.read("/proc/sys/net/ipv4/igmp_max_memberships").strip() == "1024"
        # huge pages and the hugetlbfs mount
        assert h.read("/proc/sys/vm/nr_hugepages").strip() == "64"
        assert "vm.nr_hugepages=64" in h.read("/etc/sysctl.d/60-xdpfeed-hugepages.conf").replace(" ", "")
        assert re.search(r"^hugetlbfs /mnt/huge hugetlbfs .*pagesize=2M", h.read("/proc/mounts"), re.M)
        assert "/mnt/huge" in h.read("/etc/fstab")
        # the NIC: real channels and GRO on the veth, faked rings/coalescing/ntuple
        ch = h.run("ethtool", "-l", h.iface).stdout.split("Current hardware settings:")[1]
        assert re.search(r"RX:\s+2", ch) and re.search(r"TX:\s+2", ch)
        assert "generic-receive-offload: off" in h.run("/usr/sbin/ethtool", "-k", h.iface).stdout
        nic = h.nic()
        assert nic["rings"]["rx"] == 4096 and nic["coalesce"]["adaptive-rx"] is False
        assert nic["coalesce"]["rx-usecs"] == 0 and nic["ntuple"] is True
        assert [(r["dst_ip"], r["dst_port"], r["queue"]) for r in nic["rules"]] == [(GROUP_A, PORT, FEED_QUEUE)]
        # IRQs: the feed queue's on CPU 1, all others on CPU 0; RPS off, XPS as asked (real sysfs)
        for irq in lab.OTHER_IRQS:
            assert h.read(f"/proc/irq/{irq}/smp_affinity_list").strip() == "0"
        for q in range(lab.NIC_QUEUES):
            want = "1" if q == FEED_QUEUE else "0"
            assert h.read(f"/proc/irq/{40 + q}/smp_affinity_list").strip() == want
        assert h.read("/proc/irq/default_smp_affinity").strip() == "1"
        assert int(h.read(f"/sys/class/net/{h.iface}/queues/rx-0/rps_cpus"), 16) == 0
        assert int(h.read(f"/sys/class/net/{h.iface}/queues/tx-1/xps_cpus"), 16) == 2
        irqbalance = h.read("/etc/default/irqbalance")
        assert 'IRQBALANCE_BANNED_CPULIST="1"' in irqbalance
        assert f'IRQBALANCE_ARGS="--banirq={40 + FEED_QUEUE}"' in irqbalance
        # the deployment: user, venv, config, unit
        assert h.run("id", "-u", "xdpfeed").returncode == 0
        release = hosts["release"]  # one virtualenv per release, the unit runs the `current` link
        assert os.readlink(h.upper("/opt/xdpfeed/current")) == f"/opt/xdpfeed/releases/{release}"
        assert os.access(h.upper(f"/opt/xdpfeed/releases/{release}/bin/xdpfeed"), os.X_OK)
        assert not os.path.lexists(h.upper("/opt/xdpfeed/previous"))
        unit = h.read("/etc/systemd/system/xdpfeed.service")
        assert "User=xdpfeed" in unit and "CPUAffinity=1" in unit and "LimitMEMLOCK=infinity" in unit
        assert "Restart=on-failure" in unit and "ExecStart=/opt/xdpfeed/current/bin/xdpfeed run" in unit
    a, b = hosts["a"], hosts["b"]
    unit_a, unit_b = a.read("/etc/systemd/system/xdpfeed.service"), b.read("/etc/systemd/system/xdpfeed.service")
    assert "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_IPC_LOCK" in unit_a
    assert "AmbientCapabilities=CAP_NET_RAW\n" in unit_b and "CapabilityBoundingSet=CAP_NET_RAW\n" in unit_b
    config = a.read("/etc/xdpfeed/feed.toml")
    assert f'line_a = "afxdp:{a.iface}?group={GROUP_A}:{PORT}&queue={FEED_QUEUE}"' in config
    assert 'password_file = "/etc/xdpfeed/password"' in config and "s3cret" not in config
    st = os.stat(a.upper("/etc/xdpfeed/password"))
    assert st.st_mode & 0o777 == 0o600
    # outputs: the nats: URI names the password's file, never the password; the file is 0600, the service user's
    assert ('outputs = ["ipc:totalview", "nats://feeda@10.1.0.1:4222,10.1.0.2:4222,10.1.0.3:4222/ITCH?'
            'password_file=/etc/xdpfeed/nats-password&buffer_mb=512&replicas=3"]') in config
    assert "n4ts-s3cret" not in config and a.read("/etc/xdpfeed/nats-password") == "n4ts-s3cret\n"
    st = os.stat(a.upper("/etc/xdpfeed/nats-password"))
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == int(a.run("id", "-u", "xdpfeed").stdout)
    assert not os.path.exists(a.upper("/etc/xdpfeed/nats.creds"))  # only what is given is deployed
    assert "outputs" not in b.read("/etc/xdpfeed/feed.toml")
    # CPU isolation: kernel arguments through GRUB on feed-a, tuned on feed-b; no reboot, but the fact says so
    dropin = a.read("/etc/default/grub.d/60-xdpfeed-cpu-isolation.cfg")
    assert 'GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} isolcpus=managed_irq,domain,1 nohz_full=1 rcu_nocbs=1"' in dropin
    assert runs["calls_after_first"]["feed-a"] == ["update-grub"]
    assert runs["calls_after_first"]["feed-b"] == ["tuned-adm profile cpu-partitioning"]
    assert "isolated_cores=1" in b.read("/etc/tuned/cpu-partitioning-variables.conf")
    for h in (a, b):
        fact = first.result(h.name, "Decide whether a reboot is needed")["ansible_facts"]
        assert fact["cpu_isolation_reboot_required"] is True
    # persistence: the udev rule on feed-a, the oneshot unit on feed-b, the script on both
    assert f'KERNEL=="{a.iface}", RUN+="/usr/local/sbin/xdpfeed-nic-tuning {a.iface}"' in \
        a.read("/etc/udev/rules.d/70-xdpfeed-nic-tuning.rules")
    assert "ExecStart=/usr/local/sbin/xdpfeed-nic-tuning" in b.read("/etc/systemd/system/xdpfeed-nic-tuning.service")
    # no systemd here: said so instead of failing
    no_systemd = first.result("feed-a", "Say that the service cannot be started without systemd")
    assert "has no systemd" in no_systemd["msg"]


@pytest.mark.root
def test_second_run_changes_nothing(hosts, runs):
    second = runs["second"]
    assert second.rc == 0, second.failures() or second.output
    for h in (hosts["a"], hosts["b"]):
        assert second.stats[h.name]["changed"] == 0, second.changed_tasks(h.name)
        assert runs["calls_after_first"][h.name] == h.calls()


@pytest.mark.root
def test_units_pass_systemd_analyze_verify(hosts, runs):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    assert runs["first"].rc == 0
    for h, unit in ((hosts["a"], "xdpfeed.service"), (hosts["b"], "xdpfeed.service"),
                    (hosts["b"], "xdpfeed-nic-tuning.service")):
        p = h.run("systemd-analyze", "verify", f"/etc/systemd/system/{unit}", check=False)
        assert p.returncode == 0 and p.stderr == "", (unit, p.stderr)


def _check_config_as_service(h: lab.Host, caps: str) -> subprocess.CompletedProcess:
    return h.run("setpriv", "--reuid", "xdpfeed", "--regid", "xdpfeed",
                 "--init-groups", f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}",
                 "/opt/xdpfeed/current/bin/xdpfeed", "run", "--config", "/etc/xdpfeed/feed.toml", "--check-config",
                 check=False, env=dict(os.environ, NUMBA_CACHE_DIR="/var/cache/xdpfeed/numba"))


@pytest.mark.root
def test_deployed_config_passes_check_config_with_the_units_capabilities(hosts, runs):
    assert runs["first"].rc == 0
    a, b = hosts["a"], hosts["b"]
    ok = _check_config_as_service(a, "-all,+net_admin,+net_raw,+bpf,+ipc_lock")
    assert ok.returncode == 0 and ok.stdout.rstrip().endswith("/etc/xdpfeed/feed.toml: ready"), ok.stdout + ok.stderr
    assert _check_config_as_service(b, "-all,+net_raw").returncode == 0
    # the same check without the unit's capabilities fails and names them
    bare = _check_config_as_service(a, "-all")
    assert bare.returncode == 1 and "AF_XDP needs CAP_NET_ADMIN and CAP_NET_RAW and CAP_BPF" in bare.stderr, bare.stderr
    assert "Traceback" not in bare.stderr


@pytest.mark.root
def test_persisted_script_restores_the_nic_after_a_reboot(hosts, runs):
    """A "reboot": the NIC comes back with its defaults and no rules; the udev rule's command puts the
    tuning back, and running it again adds no second rule."""
    assert runs["first"].rc == 0
    a = hosts["a"]
    with open(a.path("nic.json"), "w") as f:
        json.dump({}, f)
    a.run("/usr/sbin/ethtool", "-L", a.iface, "rx", "1", "tx", "1")
    a.run("/usr/sbin/ethtool", "-K", a.iface, "gro", "on")
    for _ in range(2):
        p = a.run("/usr/local/sbin/xdpfeed-nic-tuning", a.iface, check=False)
        assert p.returncode == 0, p.stderr
    nic = a.nic()
    assert nic["rings"]["rx"] == 4096 and nic["coalesce"]["rx-usecs"] == 0 and nic["ntuple"] is True
    assert [(r["dst_ip"], r["dst_port"], r["queue"]) for r in nic["rules"]] == [(GROUP_A, PORT, FEED_QUEUE)]
    assert "generic-receive-offload: off" in a.run("/usr/sbin/ethtool", "-k", a.iface).stdout
    assert re.search(r"RX:\s+2", a.run("ethtool", "-l", a.iface).stdout.split("Current hardware settings:")[1])
    assert a.run("/usr/local/sbin/xdpfeed-nic-tuning", "eth9", check=False).returncode == 2


def test_example_inventory_and_group_vars_template(tmp_path):
    """inventory.example.ini with group_vars.example/ resolve to the values the roles expect (templated on
    the controller by the debug action: no host is contacted)."""
    inv = tmp_path / "inventory"
    shutil.copytree(os.path.join(lab.ANSIBLE_DIR, "group_vars.example"), inv / "group_vars")
    shutil.copy(os.path.join(lab.ANSIBLE_DIR, "inventory.example.ini"), inv / "hosts.ini")
    import yaml

    with open(os.path.join(lab.ANSIBLE_DIR, "roles", "irq_affinity", "defaults", "main.yml")) as f:
        pattern_default = yaml.safe_load(f)["irq_affinity_feed_irq_pattern"]  # templated with these group_vars
    names = ["xdpfeed_line_a", "xdpfeed_line_b", "nic_tuning_interfaces", "test_pattern", "cpu_isolation_cpus"]
    env = lab.ansible_env(str(tmp_path))
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    p = subprocess.run([lab.bin_path("ansible"), "-i", str(inv / "hosts.ini"), "feed-a", "-m", "ansible.builtin.debug",
                        "-a", "msg={{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}",
                        "-e", json.dumps({"test_pattern": pattern_default})],
                       cwd=lab.ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    got = json.loads(json.loads(p.stdout)["plays"][0]["tasks"][0]["hosts"]["feed-a"]["msg"])
    assert got["xdpfeed_line_a"] == "afxdp:ens1f0?group=233.54.12.111:26477&queue=2"
    assert got["xdpfeed_line_b"] == "afxdp:ens1f0?group=233.49.196.111:26477&queue=3"
    flows = got["nic_tuning_interfaces"][0]["flows"]
    assert [(f["dst_ip"], int(f["dst_port"]), int(f["queue"])) for f in flows] == [
        ("233.54.12.111", 26477, 2), ("233.49.196.111", 26477, 3)]
    pattern = re.compile(got["test_pattern"].strip())
    assert pattern.search("PCI-MSI 524290-edge      ens1f0-TxRx-2") and pattern.search("ice-ens1f0-TxRx-3")
    assert not pattern.search("ens1f0-TxRx-1") and not pattern.search("ens1f0-TxRx-12")
    assert got["cpu_isolation_cpus"] == "2-3"
