"""Feed hosts for the Ansible tests: each is a network namespace on this machine with one end of a
veth pair as its feed NIC, entered by the community.docker.nsenter connection plugin through a holder
process that also owns a private mount namespace. In that mount namespace:

- /etc, /opt, /usr/local, /mnt, /root and /var are overlays: the host's files show through, and what the
  playbook writes lands in upper/ here (a fake root: nothing reaches this machine's own files);
- what veth lacks is faked: /proc/interrupts and /proc/irq (the NIC's queue IRQs), ring sizes,
  coalescing and ntuple rules (tests/fake_ethtool.py as /usr/local/sbin/ethtool), GRUB
  (/etc/default/grub and an update-grub that logs its calls), optionally tuned-adm; and so is what is
  global to the machine: /proc/sys/vm, /proc/sys/net/core and /sys/kernel/mm/hugepages;
- what veth has is real: channels, GRO, RPS/XPS masks, the per-namespace net.ipv4 sysctls, the
  hugetlbfs mount, the xdpfeed user, venv and unit files.
The handler's dependencies (numpy, numba, …) come from this test interpreter's site-packages, linked
into /usr/local/lib/pythonX.Y/dist-packages of the host, as a host image with them installed site-wide
would have them; xdpfeed itself is installed from a wheel built from this tree.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
import zipfile
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSIBLE_DIR = os.path.join(REPO, "ansible")
FAKE_ETHTOOL = os.path.join(REPO, "tests", "fake_ethtool.py")
OVERLAYS = ("etc", "opt", "usr/local", "mnt", "root", "var")
NIC_QUEUES = 4  # IRQs the fake NIC has in /proc/interrupts
OTHER_IRQS = {24: "IO-APIC 2-edge      timer", 25: "PCI-MSI 512000-edge      ahci[0000:00:1f.2]",
              26: "PCI-MSI 65536-edge      virtio0-input.0"}
NET_CORE = {"rmem_max": 212992, "rmem_default": 212992, "wmem_max": 212992, "wmem_default": 212992,
            "netdev_max_backlog": 1000, "busy_poll": 0, "busy_read": 0, "somaxconn": 4096}


def bin_path(name: str) -> str | None:
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.access(path, os.X_OK) else shutil.which(name)


def ansible_env(home: str) -> dict:
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=os.path.join(ANSIBLE_DIR, "ansible.cfg"), ANSIBLE_HOME=home,
               ANSIBLE_LOCAL_TEMP=os.path.join(home, "tmp"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_SYSTEM_WARNINGS="0",
               PATH=os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/sbin", "/usr/local/bin",
                                     "/usr/sbin", "/usr/bin", "/sbin", "/bin"]))
    return env


def unavailable() -> str | None:
    """Why the lab's hosts cannot be made on this machine, or None."""
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        return "needs root and util-linux nsenter: the test hosts are namespaces"
    if bin_path("ansible-playbook") is None:
        return "ansible is not installed"
    sysver = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
                            capture_output=True, text=True).stdout.strip()
    if sysver != str(tuple(sys.version_info[:2])):
        return (f"the hosts' /usr/bin/python3 is {sysver}, this interpreter {sys.version_info[:2]}: the deployed venv "
                "could not use this interpreter's packages")
    return None


def build_wheel(out: str) -> str:
    """A wheel of this tree (a copy, so the build leaves the tree alone)."""
    src = os.path.join(out, "src")
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache",
        "*.so", "bench", "pcaps", "tests", "ansible", "monitoring"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", os.path.join(out, "dist"), src], check=True, capture_output=True, timeout=300)
    (wheel,) = [os.path.join(out, "dist", n) for n in os.listdir(os.path.join(out, "dist"))]
    return wheel


def rewheel(wheel: str, version: str, out: str, patch: dict | None = None, extra: dict | None = None) -> str:
    """`wheel` as another release: its version set to `version` (file name, .dist-info folder, METADATA), each
    file in `patch` (its path in the wheel → text appended to it) changed, and the files in `extra` (path → text)
    added, as a differently built release."""
    name, old = os.path.basename(wheel).split("-")[:2]
    dest = os.path.join(out, os.path.basename(wheel).replace(f"-{old}-", f"-{version}-"))
    os.makedirs(out, exist_ok=True)
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            path = item.filename.replace(f"{name}-{old}.dist-info/", f"{name}-{version}.dist-info/")
            if path.endswith(".dist-info/METADATA"):
                data = data.replace(f"\nVersion: {old}\n".encode(), f"\nVersion: {version}\n".encode())
            if patch and item.filename in patch:
                data += patch[item.filename].encode()
            if path.endswith(".dist-info/RECORD"):  # hashes of the changed files are left out (allowed by PEP 376)
                lines = data.decode().replace(f"{name}-{old}.dist-info/", f"{name}-{version}.dist-info/").splitlines()
                data = "\n".join(ln if ln.split(",")[0] not in (patch or {}) else ln.split(",")[0] + ",,"
                                 for ln in lines).encode() + b"\n"
            if path.endswith(".dist-info/RECORD") and extra:
                data += "".join(f"{name},,\n" for name in extra).encode()
            info = zipfile.ZipInfo(path, item.date_time)
            info.external_attr = item.external_attr
            dst.writestr(info, data)
        for name, text in (extra or {}).items():
            dst.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), text)
    return dest


def seed_numba_cache(dest: str) -> None:
    """Copy this interpreter's compiled-code cache for this tree (numba's CACHE_DIR, named by the source digest)
    into `dest` (a hosts' NUMBA_CACHE_DIR): a release built from the same sources finds its code compiled."""
    import numba

    import xdpfeed.capture.jit  # noqa: F401 (sets numba's CACHE_DIR)

    src = numba.config.CACHE_DIR
    if os.path.isdir(src):
        shutil.copytree(src, os.path.join(dest, os.path.basename(src)), dirs_exist_ok=True)


@dataclass
class Host:
    name: str
    ns: str
    iface: str
    root: str  # this host's fake-root folder
    tuned: bool = False
    proc: subprocess.Popen | None = None
    vars: dict = field(default_factory=dict)
    binds: dict = field(default_factory=dict)  # a folder of this machine → where the host sees it (shared by hosts)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def path(self, *parts) -> str:
        return os.path.join(self.root, *parts)

    def upper(self, path: str) -> str:
        """Where a file the playbook wrote to `path` (under an overlay) really is."""
        for top in sorted(OVERLAYS, key=len, reverse=True):
            if path.startswith("/" + top + "/"):
                return self.path("upper", top.replace("/", "_"), path[len(top) + 2:])
        raise ValueError(f"{path} is not under an overlay")

    def run(self, *cmd: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the host (its network, mount and UTS namespaces)."""
        return subprocess.run(["nsenter", "--mount", "--net", "--uts", f"--target={self.pid}", "--", *cmd],
                              capture_output=True, text=True, timeout=120, check=check, env=env)

    def read(self, path: str) -> str:
        return self.run("cat", path).stdout

    def nic(self) -> dict:
        with open(self.path("nic.json")) as f:
            return json.load(f).get(self.iface, {})

    def calls(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError), open(self.path("calls.log")) as f:
            return f.read().splitlines()
        return []


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _site_packages_layer(dest: str) -> None:
    """This interpreter's packages, minus xdpfeed itself, as links in the host's site-wide dist-packages."""
    site = sysconfig.get_paths()["purelib"]
    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(site):
        if "xdpfeed" in name or name.startswith(("__editable__", "pip", "_distutils_hack", "distutils-")):
            continue
        os.symlink(os.path.join(site, name), os.path.join(dest, name))


def _fake_root(h: Host) -> None:
    for top in OVERLAYS:
        os.makedirs(h.path("upper", top.replace("/", "_")))
        os.makedirs(h.path("work", top.replace("/", "_")))
    _write(h.path("lower", "etc", "default", "grub"),
           'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n')
    sbin = h.path("lower", "usr_local", "sbin")
    _write(os.path.join(sbin, "ethtool"),
           f'#!/bin/sh\nexec /usr/bin/python3 {FAKE_ETHTOOL} --state {h.path("nic.json")} -- "$@"\n', 0o755)
    _write(os.path.join(sbin, "update-grub"), f'#!/bin/sh\necho update-grub >> {h.path("calls.log")}\n', 0o755)
    if h.tuned:  # tuned installed: its folder in /etc and tuned-adm
        os.makedirs(h.path("lower", "etc", "tuned"))
        _write(h.path("tuned.profile"), "virtual-guest\n")
        _write(os.path.join(sbin, "tuned-adm"), textwrap.dedent(f"""\
            #!/bin/sh
            case "$1" in
              active) echo "Current active profile: $(cat {h.path("tuned.profile")})" ;;
              --version) echo "tuned-adm 2.19.0" ;;
              profile) echo "$2" > {h.path("tuned.profile")}; echo "tuned-adm profile $2" >> {h.path("calls.log")} ;;
              *) exit 1 ;;
            esac
            """), 0o755)
    py = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    _site_packages_layer(h.path("lower", "usr_local", "lib", py, "dist-packages"))
    _write(h.path("nic.json"), "{}\n")
    for name, value in NET_CORE.items():
        _write(h.path("proc", "net_core", name), f"{value}\n")
    _write(h.path("proc", "vm", "nr_hugepages"), "0\n")
    for kb in (2048, 1048576):
        for name in ("nr_hugepages", "free_hugepages", "resv_hugepages", "surplus_hugepages"):
            _write(h.path("sys_hugepages", f"hugepages-{kb}kB", name), "0\n")
    irqs = dict(OTHER_IRQS) | {40 + q: f"PCI-MSI {524288 + q}-edge      {h.iface}-TxRx-{q}" for q in range(NIC_QUEUES)}
    lines = ["           CPU0       CPU1"]
    lines += [f"{irq:4d}:{1000 * irq:11d}{7 * irq:11d}   {desc}" for irq, desc in sorted(irqs.items())]
    lines += ["NMI:          0          0   Non-maskable interrupts",
              "LOC:     123456     654321   Local timer interrupts"]
    _write(h.path("proc", "interrupts"), "\n".join(lines) + "\n")
    _write(h.path("proc", "irq", "default_smp_affinity"), "3\n")
    for irq in irqs:
        _write(h.path("proc", "irq", str(irq), "smp_affinity_list"), "0-1\n")
        _write(h.path("proc", "irq", str(irq), "smp_affinity"), "3\n")


def _holder_script(h: Host) -> str:
    """Mounts of the host's private mount namespace, then sleep (the process nsenter targets)."""
    mounts = []
    for top in OVERLAYS:
        key = top.replace("/", "_")
        lower = f"/{top}"
        if os.path.isdir(h.path("lower", key)):
            lower = f"{h.path('lower', key)}:/{top}"
        mounts.append(f"mount -t overlay overlay -o lowerdir={lower},upperdir={h.path('upper', key)},"
                      f"workdir={h.path('work', key)} /{top}")
    for src, dst in (("proc/net_core", "/proc/sys/net/core"), ("proc/vm", "/proc/sys/vm"),
                     ("proc/irq", "/proc/irq"), ("proc/interrupts", "/proc/interrupts"),
                     ("sys_hugepages", "/sys/kernel/mm/hugepages")):
        mounts.append(f"mount --bind {h.path(src)} {dst}")
    for src, dst in h.binds.items():
        mounts.append(f"mkdir -p {dst} && mount --bind {src} {dst}")
    return "set -e\n" + f"hostname {h.name}\n" + "\n".join(mounts) + "\necho ready\nexec sleep 3600\n"


def start(h: Host) -> None:
    _fake_root(h)
    h.proc = subprocess.Popen(["ip", "netns", "exec", h.ns, "unshare", "--uts", "--", "/bin/sh", "-c",
                               _holder_script(h)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = h.proc.stdout.readline()
    if line.strip() != "ready":
        stop(h)
        raise RuntimeError(f"test host {h.name} did not start: {line}{h.proc.stderr.read()}")


def stop(h: Host) -> None:
    if h.proc is not None and h.proc.poll() is None:
        h.proc.send_signal(signal.SIGKILL)
        h.proc.wait(timeout=10)


def write_inventory(path: str, hosts: list[Host], group_vars: dict) -> None:
    inv = {"feed_hosts": {"hosts": {h.name: {"ansible_nsenter_pid": h.pid, **h.vars} for h in hosts},
                          "vars": {"ansible_connection": "community.docker.nsenter",
                                   "ansible_python_interpreter": "/usr/bin/python3", "ansible_become": False,
                                   **group_vars}}}
    _write(path, json.dumps(inv, indent=1))  # JSON is YAML


@dataclass
class Run:
    rc: int
    stats: dict  # host -> {"changed": n, "ok": n, "failures": n, ...}
    tasks: list  # [(task name, host, result)]
    output: str

    def changed_tasks(self, host: str) -> list[str]:
        return [name for name, h, r in self.tasks if h == host and r.get("changed")]

    def result(self, host: str, task: str) -> dict:
        for name, h, r in self.tasks:
            if h == host and name == task:
                return r
        raise KeyError(f"no task {task!r} ran on {host}")

    def failures(self) -> str:
        return "\n".join(f"{h}: {name}: {r.get('msg') or r.get('stderr') or r}"
                         for name, h, r in self.tasks if r.get("failed") and not r.get("ignore_errors"))


def run_playbook(inventory: str, home: str, *extra: str, playbook: str = "site.yml") -> Run:
    cmd = [bin_path("ansible-playbook"), "-i", inventory, playbook, *extra]
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=ANSIBLE_DIR, env=ansible_env(home), capture_output=True, text=True, timeout=900)
    print(f"ansible-playbook {playbook} {' '.join(extra)}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        return Run(p.returncode, {}, [], p.stdout + p.stderr)
    tasks = []
    for play in doc.get("plays", []):
        for t in play.get("tasks", []):
            for host, r in t.get("hosts", {}).items():
                tasks.append((t["task"]["name"].rpartition(" : ")[2], host, r))  # without "role : "
    return Run(p.returncode, doc.get("stats", {}), tasks, p.stderr)
