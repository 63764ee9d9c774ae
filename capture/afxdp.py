"""AF_XDP packet source (`afxdp:IFACE?group=G:P&queue=0&mode=auto|native|skb&zerocopy=auto|on|off`).

Our XDP program (native/xdp_filter.bpf.c) is attached to the interface through a bpf_link, so the
kernel detaches it when the process ends, however it ends. It sends UDP to the configured
(group, port) pairs arriving on the bound queue to an AF_XDP socket, and everything else (ARP,
ICMP, SSH, other UDP) on to the kernel. Frames land in the socket's UMEM; `recv` hands out a numpy
view of the UMEM itself (no copy), and `release` gives the frames back to the FILL ring.

Timestamps: AF_XDP in copy mode carries no per-packet receive time, so every frame of one `recv`
gets the same CLOCK_REALTIME reading, taken when `recv` found them.

The program is shared by the sources of one process on one interface (one per queue); another
process cannot attach its own to the same interface. Every C call goes through this module (the
thin layer over xdpfeed.native._afxdp); errors become one-line SourceErrors that say what to do.
"""

import errno
import ipaddress
import os
import resource
import socket
import struct
import threading
import time
import weakref

import numpy as np

from xdpfeed.capture import mcast
from xdpfeed.capture.batch import EMPTY, LINKTYPE_ETHERNET, FrameBatch
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.jit import njit
from xdpfeed.capture.source import SourceBase

try:
    from xdpfeed.native._afxdp import ffi, lib
except ImportError:  # built without libxdp/libbpf/clang
    ffi = lib = None

PACKAGES = "libxdp-dev libbpf-dev clang llvm pkg-config"
BUSY_WAIT_S = 1.0  # how long a busy queue is retried (a socket closed just now frees it ~50 ms later)
COUNTERS = ("redirected", "passed", "no_socket", "other_queue", "rx_timestamp", "no_rx_timestamp")  # XDPFEED_CNT_*


STAMP_MAGIC = lib.XDPFEED_STAMP_MAGIC


@njit(cache=True)
def _rx_times(umem, offset, n, ts):
    """The driver's RX time our XDP program wrote over each frame's MAC addresses (struct xdpfeed_stamp),
    where it did. Returns how many frames carried one."""
    got = 0
    for i in range(n):
        p = np.int64(offset[i])
        magic = np.uint32(0)
        t = np.uint64(0)
        for k in range(4):
            magic |= np.uint32(umem[p + k]) << np.uint32(8 * k)
        for k in range(8):
            t |= np.uint64(umem[p + 4 + k]) << np.uint64(8 * k)
        if magic == STAMP_MAGIC:
            ts[i] = np.int64(t)
            got += 1
    return got


def _bpf_object(name: str = "xdp_filter.bpf.o") -> str:
    import xdpfeed.native

    return os.path.join(os.path.dirname(xdpfeed.native.__file__), name)


def _errname(err: int) -> str:
    name = "EOPNOTSUPP" if -err == errno.EOPNOTSUPP else errno.errorcode.get(-err, str(-err))  # not ENOTSUP
    return f"{os.strerror(-err)} ({name})"


def _explain(iface: str, queue: int, step: int, err: int, frames_bytes: int) -> str:
    """One line for a failed open: what failed, and what to do about it."""
    e, where = -err, f"afxdp {iface} queue {queue}"
    log = ffi.string(lib.afxdp__log()).decode(errors="replace").strip()
    if step == lib.AFXDP_STEP_LOAD and e == errno.EACCES:  # EPERM would be a missing capability
        return (f"{where}: the kernel's verifier refused the XDP program (kernel too old?): "
                f"{log or _errname(err)}")
    if e in (errno.EPERM, errno.EACCES):
        need = {lib.AFXDP_STEP_LOAD: "CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN) to load the XDP program",
                lib.AFXDP_STEP_ATTACH: "CAP_NET_ADMIN to attach the XDP program",
                lib.AFXDP_STEP_SOCKET: "CAP_NET_RAW to open an AF_XDP socket",
                lib.AFXDP_STEP_UMEM: "CAP_IPC_LOCK (or a larger RLIMIT_MEMLOCK) to pin the UMEM",
                lib.AFXDP_STEP_MAP: "CAP_NET_ADMIN to update the XDP program's maps"}.get(step, "root")
        return f"{where}: not permitted: run as root or grant {need}"
    if step == lib.AFXDP_STEP_SOCKET and e == errno.EAFNOSUPPORT:
        return f"{where}: this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS): use a packet: or udp: source"
    if step == lib.AFXDP_STEP_UMEM and e in (errno.ENOBUFS, errno.ENOMEM):
        soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
        limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
        return (f"{where}: cannot pin the {frames_bytes}-byte UMEM (RLIMIT_MEMLOCK is {limit}): raise it "
                "(ulimit -l, LimitMEMLOCK=), grant CAP_IPC_LOCK, or ask for fewer frames")
    if step == lib.AFXDP_STEP_ATTACH and e in (errno.EBUSY, errno.EEXIST):
        return (f"{where}: {iface} already has an XDP program (another process?): see `ip link show dev {iface}`; "
                f"`ip link set dev {iface} xdp off` detaches one that is not held by a bpf_link")
    if step == lib.AFXDP_STEP_ATTACH and e == errno.EINVAL:
        return (f"{where}: attaching the XDP program: {_errname(err)}: the driver refused this mode (try mode=skb), "
                "or the kernel predates XDP bpf_links (Linux 5.9)")
    if step == lib.AFXDP_STEP_BIND and e == errno.EBUSY:
        return f"{where}: queue busy: another AF_XDP socket is bound to it (still busy after {BUSY_WAIT_S:g} s)"
    if step == lib.AFXDP_STEP_BIND and e == errno.EINVAL:
        return f"{where}: cannot bind: no such rx queue? (`ethtool -l {iface}` lists the channels)"
    if step == lib.AFXDP_STEP_BIND and e == errno.EOPNOTSUPP:
        return f"{where}: the driver has no AF_XDP zero-copy: use zerocopy=auto or zerocopy=off"
    if step == lib.AFXDP_STEP_OPEN:
        return f"{where}: cannot open the XDP program {_bpf_object()}: {_errname(err)}: reinstall xdpfeed"
    steps = {lib.AFXDP_STEP_LOAD: "loading the XDP program", lib.AFXDP_STEP_ATTACH: "attaching the XDP program",
             lib.AFXDP_STEP_SOCKET: "opening the AF_XDP socket", lib.AFXDP_STEP_UMEM: "registering the UMEM",
             lib.AFXDP_STEP_BIND: "binding the AF_XDP socket", lib.AFXDP_STEP_MAP: "updating the XDP maps"}
    return f"{where}: {steps.get(step, 'failed')}: {_errname(err)}" + (f" [{log}]" if log else "")


class _Program:
    """Our XDP program on one interface, shared by this process's sources there (one per queue)."""

    _open: dict[tuple[int, int], "_Program"] = {}  # (network namespace inode, ifindex) -> program
    _lock = threading.Lock()

    @classmethod
    def acquire(cls, iface: str, ifindex: int, mode: str, queue: int, frames_bytes: int) -> "_Program":
        key = (os.stat("/proc/thread-self/ns/net").st_ino, ifindex)
        with cls._lock:
            prog = cls._open.get(key)
            if prog is None:
                prog = cls._open[key] = _Program(iface, ifindex, mode, queue, frames_bytes, key)
            elif mode != "auto" and mode != prog.mode:
                raise SourceError(f"afxdp {iface} queue {queue}: the XDP program is already attached in "
                                  f"{prog.mode} mode by another source of this process: use mode={prog.mode}")
            prog.refs += 1
            return prog

    def __init__(self, iface, ifindex, mode, queue, frames_bytes, key):
        flags = {"auto": 0, "native": lib.XDP_FLAGS_DRV_MODE, "skb": lib.XDP_FLAGS_SKB_MODE}[mode]
        self.rx_timestamps, self.rx_timestamp_reason = False, "skb mode: the RX timestamp kfunc needs native mode"
        out, info = ffi.new("struct afxdp_prog **"), ffi.new("struct afxdp_prog_info *")
        err = -1
        if mode != "skb":  # first the program that copies the driver's RX timestamp (device-bound, native only)
            err = self._load(out, info, "xdp_filter_ts.bpf.o", ifindex, lib.XDP_FLAGS_DRV_MODE, dev_bound=True)
            if err:
                said = (ffi.string(lib.afxdp__verifier()) or ffi.string(lib.afxdp__log())).decode(errors="replace")
                self.rx_timestamp_reason = (f"the device-bound XDP program with bpf_xdp_metadata_rx_timestamp did not "
                                            f"{'load' if info.step == lib.AFXDP_STEP_LOAD else 'attach'}: "
                                            f"{_errname(err)}" + (f" ({said})" if said else ""))
            else:
                self.rx_timestamps = True
        if err:
            err = self._load(out, info, "xdp_filter.bpf.o", ifindex, flags)
        if err:
            raise SourceError(_explain(iface, queue, info.step, err, frames_bytes))
        self.ptr, self.key, self.refs = out[0], key, 0
        self.mode = "native" if info.xdp_flags == lib.XDP_FLAGS_DRV_MODE else "skb"
        self.native_fallback = _errname(info.native_err) if info.native_err else None

    @staticmethod
    def _load(out, info, obj: str, ifindex: int, flags: int, dev_bound: bool = False) -> int:
        opts = ffi.new("struct afxdp_prog_opts *")
        path = ffi.new("char[]", os.fsencode(_bpf_object(obj)))
        opts.sz, opts.obj_path, opts.ifindex, opts.xdp_flags = ffi.sizeof(opts[0]), path, ifindex, flags
        opts.dev_bound = int(dev_bound)
        return lib.afxdp_prog__open(out, opts, info)

    def release(self) -> None:
        with self._lock:
            self.refs -= 1
            if self.refs == 0:
                del self._open[self.key]
                lib.afxdp_prog__close(self.ptr)  # closes the link: the program is detached
                self.ptr = ffi.NULL

    def counters(self) -> dict[str, int]:
        out = ffi.new("uint64_t[]", lib.XDPFEED_CNT_MAX)
        n = lib.afxdp_prog__counters(self.ptr, out, lib.XDPFEED_CNT_MAX)
        if n < 0:
            raise SourceError(f"afxdp: reading the XDP counters: {_errname(n)}")
        return {name: int(out[i]) for i, name in enumerate(COUNTERS[:n])}


class _Resources:
    """Everything a source holds in the kernel, torn down in order by close() (or the finalizer)."""

    def __init__(self):
        self.prog: _Program | None = None
        self.sock = ffi.NULL
        self.area = None  # ffi.gc'd: unmapped only when no numpy view of it is left
        self.queue = 0
        self.feeds: list[tuple[int, int]] = []
        self.in_xsks = False
        self.joins: list[socket.socket] = []
        self.last_stats = None

    def close(self) -> None:
        if self.sock != ffi.NULL:
            self.last_stats = _read_stats(self.sock)
        if self.prog is not None:
            for daddr, dport in self.feeds:
                lib.afxdp_prog__set_feed(self.prog.ptr, daddr, dport, self.queue, 0)
            if self.in_xsks:
                lib.afxdp_prog__set_sock(self.prog.ptr, self.queue, ffi.NULL)
        self.feeds, self.in_xsks = [], False
        if self.sock != ffi.NULL:
            lib.afxdp_sock__close(self.sock)
            self.sock = ffi.NULL
        if self.prog is not None:
            self.prog.release()
            self.prog = None
        for s in self.joins:  # the kernel leaves the groups (IGMP leave) as each closes
            s.close()
        self.joins = []


def _read_stats(sock) -> dict:
    st = ffi.new("struct afxdp_stats *")
    err = lib.afxdp_sock__stats(sock, st)
    if err:
        raise SourceError(f"afxdp: XDP_STATISTICS: {_errname(err)}")
    return {"packets": int(st.packets), "bytes": int(st.bytes),
            "drops": {"rx_dropped": int(st.rx_dropped), "ring_full": int(st.rx_ring_full),
                      "fill_empty": int(st.rx_fill_ring_empty_descs), "invalid": int(st.rx_invalid_descs),
                      "bad_descriptor": int(st.bad_descs)}}


def _parse_groups(groups) -> list[tuple[ipaddress.IPv4Address, int]]:
    out = []
    for group, port in groups:
        try:
            addr = ipaddress.IPv4Address(group)
        except ValueError:
            raise SourceError(f"afxdp: group {group!r} is not an IPv4 address") from None
        if not isinstance(port, int) or not 0 < port < 65536:
            raise SourceError(f"afxdp: port {port!r} of group {group} is not in 1..65535")
        out.append((addr, port))
    return out


class AfXdpSource(SourceBase):
    """Ethernet frames from one rx queue of `iface` through AF_XDP, for the UDP `groups` [(group, port)].

    mode: "native" (driver XDP), "skb" (generic XDP, any driver) or "auto" (native, else skb; the
    reason is in `info`). zerocopy: "on", "off" or "auto" (zero-copy where the driver can, else copy).
    frames x frame_size bytes of UMEM (frame_size a power of two, 2048 to the page size; a frame holds
    frame_size - 256 bytes of packet); `batch`: most frames per recv(); busy_poll_us > 0 turns on
    SO_PREFER_BUSY_POLL / SO_BUSY_POLL / SO_BUSY_POLL_BUDGET (=batch) where the kernel has them.
    """


    @property
    def timestamp_source(self) -> dict:
        """Where receive timestamps come from (multicast.latency): the driver's RX timestamp, which our XDP
        program writes into each frame (bpf_xdp_metadata_rx_timestamp), or one CLOCK_REALTIME reading per
        recv() and why."""
        if self._hw_frames:
            return {"source": "hardware", "reason": f"the driver's RX timestamp, copied by the XDP program "
                    f"({self._hw_frames} frames so far)", "hardware_packets": self._hw_frames}
        prog = self._res.prog
        why = prog.rx_timestamp_reason if prog is not None and not prog.rx_timestamps else (
            "the driver gives no RX timestamp (bpf_xdp_metadata_rx_timestamp: none in "
            f"{self.xdp_counters().get('no_rx_timestamp', 0)} frames)")
        return {"source": "software", "reason": f"one CLOCK_REALTIME reading per recv(): {why}"}

    def __init__(self, iface: str, queue: int = 0, mode: str = "auto", zerocopy: str = "auto",
                 groups=(), frames: int = 4096, frame_size: int = 2048, batch: int = 256, busy_poll_us: int = 0):
        where = f"afxdp {iface} queue {queue}"
        if mode not in ("auto", "native", "skb"):
            raise SourceError(f"{where}: mode={mode!r}; expected auto, native or skb")
        if zerocopy not in ("auto", "on", "off"):
            raise SourceError(f"{where}: zerocopy={zerocopy!r}; expected auto, on or off")
        if not 0 <= queue < 1024:
            raise SourceError(f"{where}: queue must be in 0..1023")
        page = os.sysconf("SC_PAGESIZE")
        if frame_size < 2048 or frame_size > page or frame_size & (frame_size - 1):
            raise SourceError(f"{where}: frame_size={frame_size} must be a power of two from 2048 to {page}")
        if not 0 < frames <= 1 << 20 or not 0 < batch <= frames or busy_poll_us < 0:
            raise SourceError(f"{where}: need 0 < batch <= frames <= {1 << 20} and busy_poll_us >= 0")
        feeds = _parse_groups(groups)
        if lib is None:
            raise SourceError(f"{where}: xdpfeed was built without AF_XDP: apt-get install {PACKAGES}, "
                              "then reinstall xdpfeed (pip install -e .)")
        try:
            ifindex = socket.if_nametoindex(iface)
        except OSError:
            raise SourceError(f"afxdp: no such interface {iface!r} (ip link lists them)") from None
        self.iface, self.queue, self.groups, self.batch_size = iface, queue, [(str(a), p) for a, p in feeds], batch
        self._held, self._batch = 0, None
        res = self._res = _Resources()
        self._finalizer = weakref.finalize(self, res.close)
        try:
            self._open(ifindex, mode, zerocopy, feeds, frames, frame_size, busy_poll_us)
        except BaseException:
            self._finalizer()
            raise

    def _open(self, ifindex, mode, zerocopy, feeds, frames, frame_size, busy_poll_us):
        res, where, size = self._res, f"afxdp {self.iface} queue {self.queue}", frames * frame_size
        length, huge = ffi.new("uint64_t *"), ffi.new("int *")
        area = lib.afxdp_area__alloc(size, length, huge)
        if area == ffi.NULL:
            raise SourceError(f"{where}: cannot allocate {size} bytes of UMEM: {os.strerror(ffi.errno)}")
        n = int(length[0])
        res.area = ffi.gc(area, lambda p: lib.afxdp_area__free(p, n), size=n)
        self._view = np.frombuffer(ffi.buffer(res.area, n), dtype=np.uint8)
        res.queue = self.queue
        res.prog = prog = _Program.acquire(self.iface, ifindex, mode, self.queue, size)

        if zerocopy == "on" and prog.mode == "skb":
            raise SourceError(f"{where}: zerocopy=on needs mode=native (skb mode always copies)")
        bind = {"on": lib.XDP_ZEROCOPY, "off": lib.XDP_COPY, "auto": 0}[zerocopy]
        if zerocopy == "auto" and prog.mode == "skb":
            bind = lib.XDP_COPY
        opts = ffi.new("struct afxdp_sock_opts *")
        opts.sz, opts.ifindex, opts.queue, opts.area, opts.area_len = ffi.sizeof(opts[0]), ifindex, self.queue, area, n
        opts.frames, opts.frame_size, opts.bind_flags = frames, frame_size, bind
        opts.busy_poll_us, opts.busy_poll_budget = busy_poll_us, self.batch_size
        out, info = ffi.new("struct afxdp_sock **"), ffi.new("struct afxdp_sock_info *")
        deadline, pause = time.monotonic() + BUSY_WAIT_S, 0.005
        while True:
            err = lib.afxdp_sock__open(out, opts, info)
            if err != -errno.EBUSY or time.monotonic() + pause > deadline:
                break
            time.sleep(pause)  # a socket closed just now releases its queue a little later
            pause = min(pause * 2, 0.2)
        if err:
            raise SourceError(_explain(self.iface, self.queue, info.step, err, size))
        res.sock = out[0]
        err = lib.afxdp_prog__set_sock(prog.ptr, self.queue, res.sock)
        if err:
            raise SourceError(_explain(self.iface, self.queue, lib.AFXDP_STEP_MAP, err, size))
        res.in_xsks = True
        for addr, port in feeds:
            daddr, dport = struct.unpack("@I", addr.packed)[0], struct.unpack("@H", struct.pack("!H", port))[0]
            err = lib.afxdp_prog__set_feed(prog.ptr, daddr, dport, self.queue, 1)
            if err:
                raise SourceError(_explain(self.iface, self.queue, lib.AFXDP_STEP_MAP, err, size))
            res.feeds.append((daddr, dport))
        self._join(ifindex, [a for a, _ in feeds if a.is_multicast])

        self._rx_ts, self._hw_frames = prog.rx_timestamps, 0
        self._addr = np.zeros(self.batch_size, dtype=np.uint64)
        self._c_addr = ffi.from_buffer("uint64_t[]", self._addr)
        self.mode = f"{prog.mode} {'zero-copy' if info.zerocopy else 'copy'}"
        busy = {name: bool(info.busy_poll & bit) for name, bit in (
            ("prefer", lib.AFXDP_BUSY_PREFER), ("usecs", lib.AFXDP_BUSY_USECS), ("budget", lib.AFXDP_BUSY_BUDGET))}
        self.info = {
            "mode": self.mode, "xdp": prog.mode, "native_fallback": prog.native_fallback,
            "zerocopy": bool(info.zerocopy),
            "zerocopy_fallback": (_errname(info.zerocopy_err) if info.zerocopy_err
                                  else "skb mode copies" if prog.mode == "skb" and zerocopy == "auto" else None),
            "hugepages": huge[0] == 1, "hugepages_fallback": None if huge[0] == 1 else _errname(huge[0]),
            "busy_poll": ({"usecs": busy_poll_us, "budget": self.batch_size, "accepted": busy,
                           "error": _errname(info.busy_poll_err) if info.busy_poll_err else None}
                          if busy_poll_us else None),
            "frames": frames, "frame_size": frame_size, "umem_bytes": n,
        }

    def _join(self, ifindex: int, groups) -> None:
        """IGMP joins through the kernel, so switches forward the groups and the NIC accepts their MACs."""
        for group in groups:
            try:
                self._res.joins.append(mcast.join(str(group), ifindex))
            except OSError as e:
                raise SourceError(f"afxdp {self.iface}: cannot join {group}: {e.strerror}") from None

    def _check_open(self):
        if self._res.sock == ffi.NULL:
            raise SourceError(f"afxdp {self.iface} queue {self.queue}: the source is closed")

    def recv(self, batch: FrameBatch) -> int:
        """Frames waiting now (up to batch.capacity and `batch`); 0 when none. Never blocks.
        batch.data is the UMEM; the frames stay valid, and ours, until release(batch)."""
        if self._held:
            raise RuntimeError("afxdp: recv() called again before release() of the previous batch")
        self._check_open()
        if batch is not self._batch:  # cache the C view of the batch's arrays
            self._batch, self._c_len = batch, ffi.from_buffer("uint32_t[]", batch.length)
        n = lib.afxdp_sock__recv(self._res.sock, min(batch.capacity, self.batch_size), self._c_addr, self._c_len)
        if n:
            batch.offset[:n] = self._addr[:n]
            batch.timestamp_ns[:n] = time.time_ns()  # one reading per call, unless the driver's time is in the frame
            if self._rx_ts:
                self._hw_frames += int(_rx_times(self._view, batch.offset, n, batch.timestamp_ns))
            batch.linktype[:n] = LINKTYPE_ETHERNET
            self._held = n
        batch.data = self._view
        batch.count = n
        return n

    def release(self, batch: FrameBatch) -> None:
        """Give the frames of the last recv() back to the kernel (the FILL ring)."""
        if self._held and self._res.sock != ffi.NULL:
            err = lib.afxdp_sock__release(self._res.sock, self._c_addr, self._held)
            if err < 0:
                raise SourceError(f"afxdp {self.iface} queue {self.queue}: FILL ring: {_errname(err)}")
        self._held = 0

    def fileno(self) -> int:
        """The AF_XDP socket: poll()/select() report it readable when frames are waiting."""
        self._check_open()
        return lib.afxdp_sock__fd(self._res.sock)

    def stats(self) -> dict:
        """packets and bytes received; drops, from the kernel's XDP_STATISTICS: "fill_empty" (no free
        frame: the reader fell behind, every frame waiting in the RX ring or not yet released),
        "ring_full" (RX ring full), "rx_dropped" (other reasons, e.g. a frame longer than
        frame_size - 256 bytes), "invalid" (bad descriptors); and mode, e.g. "native copy"."""
        st = self._res.last_stats if self._res.sock == ffi.NULL else _read_stats(self._res.sock)
        return {**(st or {"packets": 0, "bytes": 0, "drops": {}}), "mode": self.mode}

    def xdp_counters(self) -> dict[str, int]:
        """The XDP program's counters for the whole interface (all queues, all sources on it)."""
        self._check_open()
        return self._res.prog.counters()

    def close(self) -> None:
        """Leave the groups, unbind the socket, detach the program when this was its last user."""
        self._held = 0
        self._finalizer()
        self._view = EMPTY  # the UMEM is unmapped once no batch refers to it either

    @property
    def exhausted(self) -> bool:
        return False  # a live source

    def describe(self) -> str:
        state = "closed" if self._res.sock == ffi.NULL else self.mode
        return f"{self.iface} queue {self.queue} {state} groups={self.groups}"
