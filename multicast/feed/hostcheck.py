"""`xdpfeed run --check-config`: is the config valid, and is this host ready for it? Without opening
anything: every line's source URI parses; its interface exists and is up, its AF_XDP queue exists, its
pcap file is readable; the process has the capabilities the source needs (AF_XDP: CAP_NET_ADMIN,
CAP_BPF or CAP_SYS_ADMIN, CAP_NET_RAW, and CAP_IPC_LOCK unless RLIMIT_MEMLOCK holds the UMEM; AF_PACKET:
CAP_NET_RAW); huge pages for the UMEM (a note: without them the UMEM uses normal pages); transparent huge
pages for the order book's storage (a note: capture.huge_arrays); and the metrics address parses. A bad
value is a ConfigError naming the key (exit 2); a host that is not ready gives one line per problem (exit 1).
"""

import ipaddress
import os
import resource
import socket

from xdpfeed.capture import uri as urimod
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.huge_arrays import THP_ENABLED, thp_mode
from xdpfeed.multicast.feed.config import ConfigError, FeedConfig

# Bit numbers in /proc/PID/status CapEff (linux/capability.h).
CAPS = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_SYS_ADMIN": 21, "CAP_BPF": 39}
AFXDP_FRAME_BYTES = 2048  # capture/afxdp.py's default frame size
IFF_UP = 0x1


def effective_caps(status: str = "/proc/self/status") -> set[str]:
    with open(status) as f:
        for line in f:
            if line.startswith("CapEff:"):
                bits = int(line.split()[1], 16)
                return {name for name, bit in CAPS.items() if bits >> bit & 1}
    return set()


def _interface(key: str, iface: str, problems: list[str]) -> bool:
    try:
        socket.if_nametoindex(iface)
    except OSError:
        problems.append(f"{key}: no interface {iface!r} on this host (ip link lists them)")
        return False
    try:
        with open(f"/sys/class/net/{iface}/flags") as f:
            if not int(f.read(), 16) & IFF_UP:
                problems.append(f"{key}: interface {iface} is down (ip link set {iface} up)")
    except (OSError, ValueError):
        pass
    return True


def _rx_queues(iface: str) -> int | None:
    try:
        return sum(1 for name in os.listdir(f"/sys/class/net/{iface}/queues") if name.startswith("rx-"))
    except OSError:
        return None


def _huge_pages() -> tuple[int, int]:
    """(free huge pages, their size in kB) of the default size."""
    free = size = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("HugePages_Free:"):
                    free = int(line.split()[1])
                elif line.startswith("Hugepagesize:"):
                    size = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return free, size


def _lines(cfg: FeedConfig):
    """(key, scheme, spec, options) of each configured line; a URI that does not parse is a ConfigError."""
    out = []
    for key, uri in (("feed.line_a", cfg.line_a), ("feed.line_b", cfg.line_b)):
        if not uri:
            continue
        try:
            scheme, spec, opts = urimod.parse(uri)
            groups = urimod._groups(uri, opts.get("group", [])) if scheme in ("afxdp", "packet") else []
            if scheme == "afxdp" and not groups:
                raise SourceError(f"bad source {uri!r}: afxdp needs at least one group=GROUP:PORT for its XDP filter")
        except SourceError as e:
            raise ConfigError(f"{key}: {e}") from None
        out.append((key, scheme, spec, opts))
    return out


def _need(key: str, what: str, wanted: list[str], have: set[str], problems: list[str]) -> None:
    missing = [c for c in wanted if c not in have]
    if missing:
        problems.append(f"{key}: {what} needs {' and '.join(missing)}: run as root, or grant it "
                        "(systemd: AmbientCapabilities=; the ansible xdpfeed role does)")


def check(cfg: FeedConfig, metrics_addr: str | None = None) -> tuple[list[str], list[str]]:
    """(problems, notes) for this host and config; raises ConfigError for a bad value."""
    from xdpfeed.multicast.feed import metrics

    lines = _lines(cfg)
    addr = metrics_addr or cfg.metrics_addr
    if addr and addr not in ("off", "auto"):
        try:
            metrics.parse_addr(addr)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    problems, notes, caps, bound = [], [], effective_caps(), {}
    for key, scheme, spec, opts in lines:
        notes.append(f"{key}: {scheme}:{spec}")
        if scheme == "pcap":
            if not os.access(spec, os.R_OK):
                problems.append(f"{key}: cannot read {spec}")
            continue
        if scheme == "udp":
            addr_part, _, iface = spec.partition("@")
            group = addr_part.rpartition(":")[0]
            try:
                ipaddress.ip_address(group)
            except ValueError:
                raise ConfigError(f"{key}: {group!r} is not a group address") from None
            try:
                ipaddress.ip_address(iface or "127.0.0.1")
            except ValueError:
                _interface(key, iface, problems)
            continue
        if scheme != "packet" and scheme != "afxdp":  # e.g. dpdk: its port is checked when it is opened
            notes.append(f"{key}: {scheme} sources are checked when they open, not here")
            continue
        if not _interface(key, spec, problems):
            continue
        if scheme == "packet":
            _need(key, "AF_PACKET", ["CAP_NET_RAW"], caps, problems)
            continue
        queue = int(opts.get("queue", ["0"])[-1] or 0)
        rx = _rx_queues(spec)
        if rx is not None and queue >= rx:
            problems.append(f"{key}: queue {queue} but {spec} has {rx} receive queue(s) (ethtool -L {spec} ...)")
        if (spec, queue) in bound:
            problems.append(f"{key}: {spec} queue {queue} is taken by {bound[spec, queue]} too (one AF_XDP socket "
                            "per queue)")
        bound[spec, queue] = key
        needed = ["CAP_NET_ADMIN", "CAP_NET_RAW"]
        if "CAP_BPF" not in caps and "CAP_SYS_ADMIN" in caps:
            needed.append("CAP_SYS_ADMIN")
        else:
            needed.append("CAP_BPF")
        umem = int(opts.get("frames", ["4096"])[-1] or 4096) * AFXDP_FRAME_BYTES
        soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
        if soft != resource.RLIM_INFINITY and soft < umem:
            needed.append("CAP_IPC_LOCK")
        _need(key, "AF_XDP", needed, caps, problems)
        free, size = _huge_pages()
        if free * size * 1024 >= umem:
            notes.append(f"{key}: {free} free huge pages of {size} kB for the {umem}-byte UMEM")
        else:
            notes.append(f"{key}: not enough free huge pages for the {umem}-byte UMEM ({free} of {size} kB): "
                         "it uses normal pages")
    if cfg.book:
        notes.append(_book_pages(thp_mode()))
    return problems, notes


def _book_pages(mode: str) -> str:
    if mode in ("always", "madvise"):
        return f"feed.book: its storage is on transparent huge pages ({THP_ENABLED}: {mode})"
    return (f"feed.book: transparent huge pages are {mode or 'not available'} ({THP_ENABLED}): the book's storage "
            "uses 4 KiB pages, a few percent slower (echo madvise > that file)")
