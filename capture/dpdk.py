"""DPDK as a packet source (`dpdk:DEVICE[,devargs]`): frames from one RX queue of a DPDK port.

DEVICE is a PCI address (`0000:03:00.0`, a NIC bound to vfio-pci, huge pages reserved: production)
or a virtual device with its devargs, for tests and labs: `net_pcap0,rx_pcap=FILE` (a capture file,
read to its end), `net_af_packet0,iface=IF`, `net_af_xdp0,iface=IF`. The port gets its own mbuf
pool and one RX queue (one TX queue too, which some drivers insist on; nothing is sent). `recv`
bursts into a preallocated mbuf array (native/dpdk.c) and fills the FrameBatch with offsets into
the pool's memory, which `batch.data` views: the packet bytes are not copied. `release` frees the
mbufs. Frames start at Ethernet (net_pcap: at the capture file's link type). A capture file is
`exhausted` once net_pcap returns nothing without a new error; a record libpcap refuses (a damaged
file's last one, a pcapng interface of another link type) is counted in ierrors, not raised.

net_af_xdp loads our XDP filter (xdp_filter_dpdk.bpf.o, as `xdp_prog=`) unless the devargs name
another program; the source then tells the filter which `group=` feeds to redirect, so everything
else (ARP, recovery traffic, other UDP) still reaches the kernel. With an `iface`, the groups are
joined through the kernel (IGMP).

Timestamps: net_pcap's (the capture's, in microseconds); with `timestamp=pmd` the driver's rx
timestamp in ns where it gives one; otherwise one CLOCK_REALTIME reading per recv. Drops by reason,
from the port's counters: imissed, ierrors, rx_nombuf; ours: multiseg (a frame longer than one mbuf,
see mbuf_size), external (a frame outside the pool that no free mbuf could take); and for
net_af_packet, kernel: its ring's drops, which DPDK 22.11's PMD does not count (capture/dpdk_pmd.py
has that and the other things done around particular drivers).

The EAL (capture/dpdk_eal.py) is shared by every port of the process. The C calls all go through
these modules; errors are one-line SourceErrors.
"""

import errno
import os
import re
import socket
import threading
import time
import weakref

import numpy as np

from xdpfeed.capture import dpdk_eal as eal
from xdpfeed.capture import dpdk_pmd as pmd
from xdpfeed.capture import mcast
from xdpfeed.capture.batch import EMPTY, LINKTYPE_ETHERNET, FrameBatch
from xdpfeed.capture.dpdk_eal import EalOptions, errname, ffi, lib
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.source import SourceBase

PCI = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
MBUF_HEADROOM = 128  # RTE_PKTMBUF_HEADROOM
DEFAULT_MBUF_SIZE = 2048 + MBUF_HEADROOM  # RTE_MBUF_DEFAULT_BUF_SIZE: frames up to 2048 bytes
STEPS = {1: "attaching the device", 2: "finding its port", 3: "creating the mbuf pool", 4: "configuring the port",
         5: "setting up the RX queue", 6: "setting up the TX queue", 7: "starting the port"}
DROPS = ("imissed", "ierrors", "rx_nombuf", "multiseg", "external")
BUSY_WAIT_S = 1.0  # how long net_af_xdp retries a queue another socket held until just now


def parse_device(spec: str) -> tuple[str, str, dict[str, str], bool]:
    """(port name, devargs, devargs as a dict, is_pci) from what follows `dpdk:`."""
    name, _, rest = spec.partition(",")
    kv = dict(item.partition("=")[::2] for item in rest.split(",") if item) if rest else {}
    m = PCI.match(name)
    if m:
        name = f"{(m.group(1) or '0000').lower()}:{m.group(2).lower()}:{m.group(3).lower()}.{m.group(4)}"
        return name, name + ("," + rest if rest else ""), kv, True
    if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name):
        raise SourceError(f"dpdk: {name!r} is neither a PCI address (0000:03:00.0) nor a virtual device name "
                          "(net_pcap0, net_af_packet0, net_af_xdp0, ...)")
    return name, spec, kv, False


class _Port:
    """What an open source holds, released in order by close() (or the finalizer, or the exit cleanup)."""

    def __init__(self):
        self.ptr = ffi.NULL
        self.lock = threading.Lock()
        self.prog = None  # (afxdp lib, adopted program): net_af_xdp's XDP filter
        self.joins: list[socket.socket] = []
        self.last_stats = None
        self.name = ""
        self.netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)  # where it was opened
        self.packet_socks: list[socket.socket] = []  # net_af_packet's sockets (dups), for their drop counts
        self.xsk_fds: list[tuple[int, int, int]] = []  # net_af_xdp's AF_XDP sockets: (fd, family, inode)
        self.kernel_drops = 0  # PACKET_STATISTICS tp_drops so far (reading them resets them)

    def stats(self) -> dict:
        with self.lock:
            if self.ptr == ffi.NULL:
                return self.last_stats
            st = ffi.new("struct dpdk_stats *")
            err = lib.dpdk_port__stats(self.ptr, st)
            if err:
                raise SourceError(f"dpdk {self.name}: reading the port's stats: {errname(err)}")
            drops = {k: int(getattr(st, k)) for k in DROPS}
            if self.packet_socks:  # DPDK 22.11's af_packet PMD does not count its ring's drops: we do
                self.kernel_drops += pmd.packet_drops(self.packet_socks)
                drops["kernel"] = self.kernel_drops
            return {"packets": int(st.packets), "bytes": int(st.bytes), "drops": drops}

    def close(self) -> None:
        if self.ptr != ffi.NULL:
            self.last_stats = self.stats()
        with self.lock, pmd.netns(self.netns):
            if self.prog is not None:  # detaches the XDP filter the af_xdp PMD attached
                self.prog[0].afxdp_prog__close(self.prog[1])
                self.prog = None
            if self.ptr != ffi.NULL:
                lib.dpdk_port__close(self.ptr)  # stop, close, detach the vdev
                self.ptr = ffi.NULL
            pmd.close_xsks(self.xsk_fds)  # the af_xdp PMD leaves its socket open
            self.xsk_fds = []
            for s in self.joins + self.packet_socks:
                s.close()
            self.joins, self.packet_socks = [], []
        os.close(self.netns)
        self.netns = -1
        eal.untrack(id(self))


class DpdkSource(SourceBase):
    """Frames from one DPDK port: `device` as in a `dpdk:` URI (PCI address or vdev with devargs).

    groups: [(group, port)] the handler keeps (and net_af_xdp redirects, and a kernel interface joins);
    rxd: RX descriptors; mbufs: pool size; mbuf_size: data room per mbuf (headroom included: a frame
    may be mbuf_size - 128 bytes long); burst: most frames held per recv() (256: with 1024, 22.11's
    af_xdp PMD let its fill ring run dry on a veth at 100 kpps); timestamp: auto|pmd|host;
    promisc: promiscuous mode; eal: EAL options, used if this is the process's first DPDK port.
    """


    @property
    def timestamp_source(self) -> dict:
        """Where receive timestamps come from (multicast.latency)."""
        if self.driver == "net_pcap":
            return {"source": "capture", "reason": "net_pcap gives the capture's time (microseconds)"}
        if self.info.get("pmd_timestamps"):
            return {"source": "hardware", "reason": f"the {self.driver} PMD's rx timestamp"}
        return {"source": "software", "reason": f"one CLOCK_REALTIME reading per burst (the {self.driver} PMD has "
                "no rx timestamp, or timestamp=host)"}

    def __init__(self, device: str, groups=(), rxd: int = 1024, mbufs: int = 8191,
                 mbuf_size: int = DEFAULT_MBUF_SIZE, burst: int = 256, timestamp: str = "auto",
                 promisc: bool = False, eal_options: EalOptions | None = None):
        name, devargs, kv, is_pci = parse_device(device)
        where = self.where = f"dpdk {name}"
        if timestamp not in ("auto", "pmd", "host"):
            raise SourceError(f"{where}: timestamp={timestamp!r}; expected auto, pmd or host")
        if not (64 <= rxd <= 32768 and 0 < burst <= 65535 and mbufs > rxd + burst
                and MBUF_HEADROOM + 64 <= mbuf_size <= 65535):
            raise SourceError(f"{where}: need 64 <= rxd <= 32768, 0 < burst <= 65535, mbufs > rxd + burst and "
                              f"{MBUF_HEADROOM + 64} <= mbuf_size <= 65535")
        self.name, self.groups, self.burst = name, [(str(g), int(p)) for g, p in groups], burst
        self.linktype, self.file = LINKTYPE_ETHERNET, None
        iface = kv.get("iface") or kv.get("rx_iface") or kv.get("rx_iface_in")
        if iface:
            try:
                ifindex = socket.if_nametoindex(iface)
            except OSError:
                raise SourceError(f"{where}: no such interface {iface!r} (ip link lists them)") from None
        if name.startswith("net_pcap") and "rx_pcap" in kv:
            self.file = kv["rx_pcap"]
            if not os.path.isfile(self.file):
                raise SourceError(f"{where}: rx_pcap={self.file}: no such file")
            self.linktype = pmd.capture_linktype(self.file)
        adopt = name.startswith("net_af_xdp") and "xdp_prog" not in kv
        if adopt:
            if not iface:
                raise SourceError(f"{where}: net_af_xdp needs iface=INTERFACE")
            if not self.groups:
                raise SourceError(f"{where}: net_af_xdp needs at least one group=GROUP:PORT for its XDP filter")
            devargs += f",xdp_prog={pmd.bpf_object()}"
        if lib is None:  # every argument was checked first
            raise SourceError(eal.missing())
        ts_mode = lib.DPDK_TS_HOST if timestamp == "host" else lib.DPDK_TS_PMD_US if name.startswith(
            "net_pcap") else lib.DPDK_TS_PMD_NS if timestamp == "pmd" else lib.DPDK_TS_HOST

        first = not eal.initialised()
        eal.init(eal_options or EalOptions(), pci=devargs if is_pci and first else None, where=where)
        if is_pci and not first and not eal.pci_allowed():
            raise SourceError(f"{where}: the EAL of this process was initialised for virtual devices only "
                              "(--no-pci): open the PCI ports first")
        port = self._port = _Port()
        port.name = name
        self._finalizer = weakref.finalize(self, port.close)
        eal.track(id(port), self._finalizer)
        try:
            deadline, pause = time.monotonic() + BUSY_WAIT_S, 0.005
            while not self._open(devargs, name, probe=not (is_pci and first), rxd=rxd, mbufs=mbufs,
                                 mbuf_size=mbuf_size, ts_mode=ts_mode, promisc=promisc,
                                 last_try=time.monotonic() + pause > deadline):
                time.sleep(pause)  # an AF_XDP socket closed just now frees its queue a little later
                pause *= 2
            if adopt:
                port.prog = pmd.steer(where, ifindex, int(kv.get("start_queue", 0)), self.groups)
            if iface and self.groups:
                self._join(ifindex)
        except BaseException:
            self._finalizer()
            raise
        self._held, self._batch, self._stops, self._exhausted = 0, None, (0, 0), False

    def _open(self, devargs, name, probe, rxd, mbufs, mbuf_size, ts_mode, promisc, last_try) -> bool:
        """Open the port; False when net_af_xdp could not set up its socket and it is worth another try."""
        opts, info = ffi.new("struct dpdk_port_opts *"), ffi.new("struct dpdk_port_info *")
        keep = (ffi.new("char[]", devargs.encode()), ffi.new("char[]", name.encode()))
        opts.sz, opts.devargs, opts.name, opts.probe = ffi.sizeof(opts[0]), keep[0], keep[1], int(probe)
        opts.rx_desc, opts.mbufs, opts.mbuf_size, opts.burst = rxd, mbufs, mbuf_size, self.burst
        opts.timestamp, opts.promisc = ts_mode, int(promisc)
        out = ffi.new("struct dpdk_port **")
        lib.dpdk_log__reset()
        before = pmd.sockets()
        err = lib.dpdk_port__open(out, opts, info)
        opened = [s for s in pmd.sockets() if s not in before]  # the PMD's, opened just now
        if err:
            pmd.close_xsks(opened)  # a failed af_xdp port leaves its socket open too
        if err and info.step == lib.DPDK_STEP_RXQ and name.startswith("net_af_xdp") and not last_try:
            return False  # the PMD says EINVAL for every failure, the queue's EBUSY among them
        if err:
            raise SourceError(self._explain(info.step, err, devargs, mbufs, mbuf_size))
        self._port.ptr = out[0]
        self._port.packet_socks = pmd.packet_sockets(opened)
        self._port.xsk_fds = [s for s in opened if s[1] == pmd.AF_XDP]
        self.driver = ffi.string(info.driver).decode()
        self._view = np.frombuffer(ffi.buffer(ffi.cast("char *", info.base), int(info.span)), dtype=np.uint8)
        self.mode = f"dpdk {self.driver}"
        self.info = {"mode": self.mode, "driver": self.driver, "port_id": int(info.port_id),
                     "rx_desc": int(info.rx_desc), "mbufs": mbufs, "mbuf_size": mbuf_size,
                     "pmd_timestamps": bool(info.rx_timestamp), "eal": eal.arguments_in_force()}
        return True

    def _explain(self, step: int, err: int, devargs: str, mbufs: int, mbuf_size: int) -> str:
        log, where = eal.log_tail(), self.where
        tail = f" [{log}]" if log else ""
        if step == lib.DPDK_STEP_PROBE:
            if -err == errno.EEXIST:
                return f"{where}: already attached in this process: give each port its own name (net_pcap1, ...)"
            return (f"{where}: DPDK cannot attach {devargs!r}: {errname(err)}{tail}; check the driver "
                    "(net_pcap, net_af_packet, net_af_xdp, or a PCI address) and its devargs")
        if step == lib.DPDK_STEP_PORT and PCI.match(self.name):
            return (f"{where}: no DPDK port for this PCI device: bind it to vfio-pci first "
                    f"(dpdk-devbind.py -b vfio-pci {self.name}; dpdk-devbind.py --status lists devices){tail}")
        if step == lib.DPDK_STEP_POOL:
            return (f"{where}: cannot allocate {mbufs} mbufs of {mbuf_size} bytes: {errname(err)}{tail}; "
                    "raise mem= or reserve huge pages, or ask for fewer mbufs")
        return f"{where}: {STEPS.get(step, 'opening the port')}: {errname(err)}{tail}"

    def _join(self, ifindex: int) -> None:
        import ipaddress

        for group, _ in self.groups:
            if ipaddress.IPv4Address(group).is_multicast:
                try:
                    self._port.joins.append(mcast.join(group, ifindex))
                except OSError as e:
                    raise SourceError(f"{self.where}: cannot join {group}: {e.strerror}") from None

    def recv(self, batch: FrameBatch) -> int:
        """Frames waiting now (up to batch.capacity and `burst`); 0 when none. Never blocks. batch.data
        views the mbuf pool; the frames stay valid, and ours, until release(batch)."""
        if self._held:
            raise RuntimeError("dpdk: recv() called again before release() of the previous batch")
        port = self._port
        if port.ptr == ffi.NULL:
            raise SourceError(f"{self.where}: the source is closed")
        if batch is not self._batch:  # cache the C views of the batch's arrays
            self._batch = batch
            self._c = (ffi.from_buffer("int64_t[]", batch.offset), ffi.from_buffer("uint32_t[]", batch.length),
                       ffi.from_buffer("int64_t[]", batch.timestamp_ns))
        n = lib.dpdk_port__recv(port.ptr, min(batch.capacity, self.burst), *self._c)
        if n < 0:
            raise SourceError(f"{self.where}: receiving: {errname(n)}")
        if n:
            batch.linktype[:n] = self.linktype
            self._held = n
        elif self.file is not None and not self._exhausted:
            d = port.stats()["drops"]  # net_pcap stops early without an mbuf or at a record it refuses
            self._exhausted, self._stops = (d["rx_nombuf"], d["ierrors"]) == self._stops, (d["rx_nombuf"], d["ierrors"])
        batch.data = self._view
        batch.count = n
        return n

    @property
    def exhausted(self) -> bool:
        """True once a capture file (net_pcap rx_pcap=) has been read to its end; live ports never are."""
        return self._exhausted

    def release(self, batch: FrameBatch) -> None:
        """Free the mbufs of the last recv() back to the pool."""
        if self._held and self._port.ptr != ffi.NULL:
            lib.dpdk_port__release(self._port.ptr)
        self._held = 0

    def stats(self) -> dict:
        """packets and bytes handed out; drops by reason (imissed, ierrors, rx_nombuf from the port,
        multiseg and external from us); mode, e.g. "dpdk net_af_xdp". Still answers after close()."""
        return {**(self._port.stats() or {"packets": 0, "bytes": 0, "drops": {}}), "mode": self.mode}

    def close(self) -> None:
        """Stop and close the port, detach a virtual device, leave the groups. The EAL stays (until exit)."""
        self._held = 0
        self._finalizer()
        self._view = EMPTY

    def describe(self) -> str:
        state = "closed" if self._port.ptr == ffi.NULL else self.mode
        return f"{self.name} {state} groups={self.groups}"
