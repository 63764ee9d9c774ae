"""DPDK's EAL for the `dpdk:` source: its arguments, its one initialisation per process, its cleanup.

The EAL can be initialised once per process; every `dpdk:` port of the process then shares it. The
first port to open initialises it with the EAL options of its URI (or, before any port, a program
calls `init()` itself); a later port whose URI asks for different EAL options is refused with the
options in force. Defaults, chosen so that nothing outlives the process and nothing else is touched:

- `--file-prefix xdpfeed-PID`: unique per process; its runtime directory is removed again at once
  (with no shared config nothing is ever written there);
- huge pages when the machine has free ones (`huge=auto`): `--in-memory --huge-unlink`, no hugepage
  file left behind even after SIGKILL; without them `--no-huge --no-shconf -m 256` (ordinary memory);
- `--lcores 0@(CPUS)`: the main lcore may run on every CPU the process may run on now, so the EAL
  does not pin the calling thread to one CPU (`cores=LIST` pins it: `-l LIST`);
- `--no-telemetry`; `--no-pci` unless the first port is a PCI device, which is then allowed with
  `-a ADDRESS[,devargs]` (so no other NIC bound to DPDK is taken).

DPDK's log goes to a buffer; an error names its last line. XDPFEED_DPDK_LOG=1 echoes it to stderr.
At exit every open port is closed, then rte_eal_cleanup runs.
"""

import atexit
import contextlib
import errno
import os
import re
import shlex
import threading
from dataclasses import dataclass, field

from xdpfeed.capture.errors import SourceError

try:
    from xdpfeed.native._dpdk import ffi, lib
except ImportError:  # built where pkg-config found no libdpdk
    ffi = lib = None

PACKAGES = "dpdk-dev pkg-config"
DEFAULT_MEM_MB = 256  # -m without huge pages
RUNTIME_DIRS = ("/var/run/dpdk", os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "dpdk"))


@dataclass(frozen=True)
class EalOptions:
    """The EAL options a `dpdk:` URI may carry: huge auto|on|off, mem (MB), cores (an -l list), extra."""

    huge: str = "auto"
    mem: int | None = None
    cores: str | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)

    @property
    def given(self) -> bool:
        return self != EalOptions()


def missing() -> str:
    """The one line saying what to install, when the DPDK module was not built."""
    return (f"dpdk: xdpfeed was built without DPDK: apt-get install {PACKAGES}, then reinstall xdpfeed "
            "(pip install -e .)")


def errname(err: int) -> str:
    """-errno as text: 'Device or resource busy (EBUSY)'."""
    return f"{os.strerror(-err)} ({errno.errorcode.get(-err, str(-err))})"


def log_tail() -> str:
    """The line DPDK logged last since the last reset, its last complaint if it made one ("" when none)."""
    lines = [x.strip() for x in ffi.string(lib.dpdk__log()).decode(errors="replace").splitlines() if x.strip()]
    bad = [x for x in lines if re.search(r"fail|error|invalid|cannot|unable|not found|no such", x, re.I)]
    return (bad or lines or [""])[-1]


def free_hugepages() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("HugePages_Free:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_list() -> str:
    cpus, runs = sorted(os.sched_getaffinity(0)), []
    for c in cpus:
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def arguments(opts: EalOptions, pci: str | None = None) -> list[str]:
    """argv for rte_eal_init (argv[0] included); `pci`: the devargs of a PCI port to allow."""
    huge = opts.huge == "on" or (opts.huge == "auto" and free_hugepages() > 0)
    argv = ["xdpfeed", "--file-prefix", f"xdpfeed-{os.getpid()}", "--no-telemetry"]
    argv += ["-l", opts.cores] if opts.cores else ["--lcores", f"0@({_cpu_list()})"]
    if huge:
        argv += ["--in-memory", "--huge-unlink"] + (["-m", str(opts.mem)] if opts.mem else [])
    else:
        argv += ["--no-huge", "--no-shconf", "-m", str(opts.mem or DEFAULT_MEM_MB)]
    argv += ["-a", pci] if pci else ["--no-pci"]
    return argv + list(opts.extra)


class _State:
    lock = threading.Lock()
    argv: list[str] | None = None  # as initialised
    opts: EalOptions | None = None  # the URI's options it was initialised with
    pci: bool = False
    closers: dict[int, object] = {}  # id -> callable closing an open port (run before the cleanup)


def initialised() -> bool:
    return _State.argv is not None


def init(opts: EalOptions = EalOptions(), pci: str | None = None, where: str = "dpdk") -> list[str]:
    """Initialise the EAL once (later calls check that they ask for nothing different); returns its argv."""
    if lib is None:
        raise SourceError(missing())
    with _State.lock:
        if _State.argv is not None:
            if opts.given and opts != _State.opts:
                raise SourceError(f"{where}: the EAL of this process was already initialised with "
                                  f"{shlex.join(_State.argv[1:])}; give every dpdk: source the same EAL options "
                                  "(huge, mem, cores, eal) or none")
            return _State.argv
        argv = arguments(opts, pci)
        lib.dpdk_log__open(1 if os.environ.get("XDPFEED_DPDK_LOG") == "1" else 0)
        lib.dpdk_log__reset()
        keep = [ffi.new("char[]", a.encode()) for a in argv]
        err = lib.dpdk_eal__init(len(keep), ffi.new("char *[]", keep))
        if err:
            raise SourceError(_explain(err, argv, where))
        _remove_runtime_dir(argv)
        _State.argv, _State.opts, _State.pci = argv, opts, pci is not None
        atexit.register(_cleanup)
        return argv


def pci_allowed() -> bool:
    return _State.pci


def arguments_in_force() -> list[str]:
    """The EAL's arguments (without argv[0]); [] before init."""
    return list(_State.argv[1:]) if _State.argv else []


def _explain(err: int, argv: list[str], where: str) -> str:
    log = log_tail()
    why = {errno.EACCES: "not permitted: run as root (DPDK needs CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW, "
                         "CAP_IPC_LOCK)",
           errno.EPERM: "not permitted: run as root",
           errno.ENOMEM: "not enough memory: free huge pages (HugePages_Free in /proc/meminfo), or huge=off, or "
                         "a larger mem=",
           errno.EALREADY: "the EAL was initialised already by other code in this process"}.get(-err)
    text = why or f"rte_eal_init failed ({errname(err)})"
    return f"{where}: EAL: {text}" + (f" [{log}]" if log else "") + f"; arguments: {shlex.join(argv[1:])}"


def _remove_runtime_dir(argv: list[str]) -> None:
    """With --no-shconf/--in-memory nothing is written to the runtime directory: remove it now, so
    even a killed process leaves nothing in /var/run/dpdk."""
    prefix = argv[argv.index("--file-prefix") + 1]
    for d in RUNTIME_DIRS:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(d, prefix))


def track(key: int, closer) -> None:
    """closer() closes one open port; the exit cleanup runs it before rte_eal_cleanup."""
    _State.closers[key] = closer


def untrack(key: int) -> None:
    _State.closers.pop(key, None)


def _cleanup() -> None:
    for closer in list(_State.closers.values()):
        with contextlib.suppress(Exception):
            closer()
    _State.closers.clear()
    if _State.argv is not None:
        lib.dpdk_eal__cleanup()
