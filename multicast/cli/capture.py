"""`xdpfeed capture` (interface → pcapng) and `xdpfeed replay` (pcap → UDP on an interface).

capture: frames from AF_XDP (`-i IFACE`, the default) or any source URI (`--source packet:IFACE?...`)
go to a pcapng file or standard output with nanosecond timestamps until -c N frames, --duration,
SIGINT or SIGTERM; a one-line summary (frames, bytes, the source's drop counters) goes to stderr.

replay: each IPv4/UDP frame's payload is sent again to the frame's destination (group:port, or a
unicast address as is) from kernel UDP sockets tied to the interface (SO_BINDTODEVICE when allowed,
IP_MULTICAST_IF by index), like tcpreplay for UDP feeds. Payload offsets come from a compiled walk
(multicast.wire.frames.udp_payload); each destination gets one connected socket and the datagrams go out
with sendmmsg, batch by batch. Order is kept per destination; across destinations it is kept to
within one batch. Pacing: recorded time (x --speed), --pps, or --topspeed.

Errors are one line on stderr: bad flags or an interface/source that cannot be opened exit 2, a
capture file found damaged part-way exits 1 after what came before it was sent.
"""

import argparse
import errno
import ipaddress
import os
import select
import socket
import struct
import sys
import time

import numpy as np

from xdpfeed.capture.batch import LINKTYPE_UDP_PAYLOAD, FrameBatch
from xdpfeed.capture.errors import CorruptInput, SourceError
from xdpfeed.capture.jit import njit
from xdpfeed.capture.source import waitable
from xdpfeed.multicast.feed.stop import StopOnSignal
from xdpfeed.multicast.wire.frames import OK, udp_payload

EXIT_DAMAGED = 1
EXIT_USAGE = 2
BATCH = 4096
MAX_CONNECTED = 256  # destinations beyond this many are sent with sendto, one datagram at a time


def _positive(kind):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            v = 0
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
        return v
    return parse


def _group(text: str) -> tuple[str, int]:
    from xdpfeed.multicast.itch.pipeline import parse_group

    try:
        ip, port = parse_group(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return str(ipaddress.IPv4Address(ip)), port


def _err(cmd: str, message) -> None:
    text = str(message).strip() or repr(message)
    print(f"xdpfeed {cmd}: error: {text.splitlines()[0]}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ capture


def add_capture_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", dest="iface", metavar="IFACE", help="interface to capture on with AF_XDP")
    p.add_argument("-m", dest="mode", choices=("auto", "native", "skb"), default="auto",
                   help="AF_XDP attach mode (default auto: native when the driver supports it)")
    p.add_argument("--group", dest="groups", type=_group, action="append", default=[], metavar="G:P",
                   help="only IPv4 UDP to this group:port, joined with IGMP (repeatable)")
    p.add_argument("--source", metavar="URI", help="capture from this source instead, e.g. packet:eth0?group=G:P")
    p.add_argument("-w", dest="write", required=True, metavar="FILE", help="pcapng file to write, or - for stdout")
    p.add_argument("-c", dest="count", type=_positive(int), metavar="N", help="stop after N frames")
    p.add_argument("--duration", type=_positive(float), metavar="S", help="stop after S seconds")


def _open_capture_source(args):
    if args.source:
        from xdpfeed.capture.uri import open_source

        uri = args.source
        if args.groups:
            if not uri.startswith(("packet:", "afxdp:")):
                raise SourceError("--group applies to -i, packet: and afxdp: sources; give the groups in the URI")
            extra = "&".join(f"group={g}:{p}" for g, p in args.groups)
            uri += ("&" if "?" in uri else "?") + extra
        return open_source(uri)
    if not args.iface:
        raise SourceError("capture needs -i IFACE or --source URI")
    try:
        from xdpfeed.capture.afxdp import AfXdpSource
    except Exception as e:  # noqa: BLE001 — a missing or broken build: say so in one line
        raise SourceError(f"AF_XDP is not available ({type(e).__name__}: {e}); "
                          f"try --source packet:{args.iface}") from None
    try:
        return AfXdpSource(args.iface, mode=args.mode, groups=args.groups)
    except SourceError:
        raise
    except Exception as e:  # noqa: BLE001
        raise SourceError(f"AF_XDP on {args.iface}: {getattr(e, 'strerror', None) or e}") from None


def _stats_text(src) -> str:
    if not hasattr(src, "stats"):
        return ""
    s = src.stats()
    drops = ", ".join(f"{k} {v:,}" for k, v in s["drops"].items()) or "none"
    return f"; source {s['mode']}: {s['packets']:,} packets, {s['bytes']:,} bytes, drops: {drops}"


def run_capture(args) -> int:
    from xdpfeed.capture.pcapng_writer import PcapngWriter

    try:
        src = _open_capture_source(args)
    except SourceError as e:
        _err("capture", e)
        return EXIT_USAGE
    to_stdout = args.write == "-"
    try:
        out = sys.stdout.buffer if to_stdout else open(args.write, "wb")  # noqa: SIM115 — closed below
    except OSError as e:
        src.close()
        _err("capture", f"{args.write}: {e.strerror}")
        return EXIT_USAGE
    where = getattr(src, "iface", None) or args.source or args.iface
    print(f"xdpfeed capture: listening on {where}, writing {'stdout' if to_stdout else args.write}",
          file=sys.stderr, flush=True)
    batch, writer, code = FrameBatch(BATCH), None, 0
    remaining = args.count or float("inf")
    t0 = time.monotonic()
    deadline = t0 + args.duration if args.duration else float("inf")
    poller = None
    if waitable(src):
        poller = select.poll()
        poller.register(src.fileno(), select.POLLIN)
    try:
        with StopOnSignal() as stop:
            while not stop.flag and remaining > 0 and time.monotonic() < deadline:
                n = src.recv(batch)
                if n:
                    batch.count = int(min(n, remaining))
                    if writer is None:
                        writer = PcapngWriter(out, linktype=int(batch.linktype[0]), if_name=where)
                    writer.write_batch(batch)
                    if to_stdout:
                        writer.flush()
                    remaining -= batch.count
                    src.release(batch)
                elif src.exhausted:
                    break  # a file source reached its end
                elif poller is None:
                    continue  # a live source without a file descriptor (DPDK): poll again
                else:
                    poller.poll(max(1, min(100.0, (deadline - time.monotonic()) * 1000)))
    except CorruptInput as e:
        _err("capture", e)
        code = EXIT_DAMAGED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the reader left: stop quietly
    except (ValueError, OSError) as e:
        _err("capture", e)
        code = EXIT_USAGE
    finally:
        try:
            if writer is None:
                writer = PcapngWriter(out, linktype=1, if_name=where)
            writer.close()
        except (BrokenPipeError, ValueError):
            pass
        summary = _stats_text(src)
        src.close()
        if not to_stdout:
            out.close()
    elapsed = time.monotonic() - t0
    print(f"xdpfeed capture: {writer.frames:,} frames, {writer.bytes:,} bytes in {elapsed:.3f} s{summary}",
          file=sys.stderr)
    return code


# ------------------------------------------------------------------------------------------- replay


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="FILE", help="pcap or pcapng capture")
    p.add_argument("-i", dest="iface", required=True, metavar="IFACE", help="interface to send on")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--pps", type=_positive(float), metavar="N", help="send N packets per second")
    pace.add_argument("--topspeed", action="store_true", help="send as fast as possible")
    pace.add_argument("--speed", type=_positive(float), default=1.0, metavar="X",
                      help="recorded timing, X times faster (default 1: as recorded)")
    p.add_argument("--loop", type=_positive(int), default=1, metavar="N", help="replay the file N times")
    p.add_argument("--ttl", type=_positive(int), metavar="N", help="IP TTL (default: 1 for multicast, as the kernel)")


@njit(cache=True)
def _udp_frames(data, off, length, lt, n, poff, plen, dest):
    """Compact the frames that are IPv4 UDP: payload offset, length and dest = ip << 16 | port."""
    k = 0
    for i in range(n):
        if lt[i] == LINKTYPE_UDP_PAYLOAD:
            continue
        status, o, ln, ip, port = udp_payload(data, off[i], length[i], lt[i])
        if status == OK:
            poff[k] = o
            plen[k] = ln
            dest[k] = (ip << 16) | port
            k += 1
    return k


class UdpSender:
    """Datagrams out of a slab to many destinations: one connected socket each, sendmmsg per batch."""

    def __init__(self, iface: str, ttl: int | None = None):
        from xdpfeed.native._udp import ffi, lib

        self.ffi, self.lib = ffi, lib
        try:
            self.ifindex = socket.if_nametoindex(iface)
        except OSError:
            raise SourceError(f"no such interface {iface!r}") from None
        self.iface, self.ttl = iface, ttl
        self._socks: dict[int, socket.socket] = {}
        self._spare = None
        self.refused = 0  # ICMP port unreachable reported back on unicast destinations

    def _new(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.iface.encode())
        except PermissionError:
            pass  # without CAP_NET_RAW: multicast still leaves by IP_MULTICAST_IF
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, bytes(8) + struct.pack("@i", self.ifindex))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl or 1)
        if self.ttl:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, self.ttl)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setblocking(False)
        return s

    def _socket(self, dest: int):
        s = self._socks.get(dest)
        if s is None and len(self._socks) < MAX_CONNECTED:
            s = self._socks[dest] = self._new()
            try:
                s.connect((str(ipaddress.IPv4Address(dest >> 16)), dest & 0xFFFF))
            except OSError as e:
                raise SourceError(f"cannot send to {ipaddress.IPv4Address(dest >> 16)}:{dest & 0xFFFF} "
                                  f"on {self.iface}: {e.strerror}") from None
        return s

    def send(self, data: np.ndarray, poff: np.ndarray, plen: np.ndarray, dest: np.ndarray) -> None:
        """Send datagram i = data[poff[i]:poff[i]+plen[i]] to dest[i], for every i."""
        if dest.size == 0:
            return
        slab = self.ffi.from_buffer("uint8_t[]", data)
        if (dest == dest[0]).all():
            runs = [(int(dest[0]), poff, plen)]
        else:
            order = np.argsort(dest, kind="stable")
            d = dest[order]
            cuts = np.flatnonzero(d[1:] != d[:-1]) + 1
            runs = [(int(d[a]), poff[order[a:b]], plen[order[a:b]])
                    for a, b in zip(np.r_[0, cuts], np.r_[cuts, d.size], strict=True)]
        for key, o, ln in runs:
            s = self._socket(key)
            if s is None:
                self._sendto(data, key, o, ln)
            else:
                self._send_batch(s, slab, np.ascontiguousarray(o, np.int64), np.ascontiguousarray(ln, np.uint32))

    def _send_batch(self, s, slab, o, ln) -> None:
        done = 0
        while done < o.size:
            r = self.lib.xdpfeed_udp_send_batch(s.fileno(), slab, self.ffi.from_buffer("int64_t[]", o[done:]),
                                                self.ffi.from_buffer("uint32_t[]", ln[done:]), o.size - done)
            if r > 0:
                done += r
            elif -r in (errno.EAGAIN, errno.ENOBUFS):
                select.select([], [s], [], 0.01)
                if -r == errno.ENOBUFS:
                    time.sleep(0.0005)
            elif -r == errno.ECONNREFUSED:
                self.refused += 1  # reports an earlier datagram's ICMP error: this one was not sent, retry
            else:
                raise OSError(-r, f"sendmmsg to {s.getpeername()}: {os.strerror(-r)}")

    def _sendto(self, data, key, o, ln) -> None:
        if self._spare is None:
            self._spare = self._new()
            self._spare.setblocking(True)
        addr = (str(ipaddress.IPv4Address(key >> 16)), key & 0xFFFF)
        for a, n in zip(o.tolist(), ln.tolist(), strict=True):
            self._spare.sendto(memoryview(data)[a : a + n], addr)

    def close(self) -> None:
        for s in [*self._socks.values(), self._spare]:
            if s is not None:
                s.close()


def run_replay(args) -> int:
    from xdpfeed.capture.pcapfile import PcapSource

    try:
        sender = UdpSender(args.iface, args.ttl)
        PcapSource(args.input).close()  # a missing or foreign file: one line, before anything is sent
    except SourceError as e:
        _err("replay", e)
        return EXIT_USAGE
    batch = FrameBatch(BATCH)
    poff, plen, dest = np.zeros(BATCH, np.int64), np.zeros(BATCH, np.uint32), np.zeros(BATCH, np.int64)
    speed = None if args.pps or args.topspeed else args.speed
    sent = nbytes = skipped = 0
    t0 = None
    code = 0
    try:
        with StopOnSignal() as stop:
            for _ in range(args.loop):
                with PcapSource(args.input, speed=speed, sleep=stop.sleep) as src:
                    while not stop.flag and (n := src.recv(batch)):
                        k = _udp_frames(batch.data, batch.offset, batch.length, batch.linktype, n, poff, plen, dest)
                        skipped += n - k
                        t0 = time.monotonic() if t0 is None else t0
                        i = 0
                        while i < k and not stop.flag:
                            m = k - i
                            if args.pps:  # datagram j goes out at t0 + j / pps
                                due = int((time.monotonic() - t0) * args.pps) + 1 - sent
                                if due <= 0:
                                    stop.sleep(t0 + sent / args.pps - time.monotonic())
                                    continue
                                m = min(m, due, 256)
                            sender.send(batch.data, poff[i : i + m], plen[i : i + m], dest[i : i + m])
                            nbytes += int(plen[i : i + m].sum())
                            sent += m
                            i += m
                        src.release(batch)
                if stop.flag:
                    break
    except CorruptInput as e:
        _err("replay", e)
        code = EXIT_DAMAGED
    except SourceError as e:
        _err("replay", e)
        code = EXIT_USAGE
    except OSError as e:  # the network refused a send part-way
        _err("replay", e)
        code = EXIT_DAMAGED
    finally:
        sender.close()
    secs = time.monotonic() - t0 if t0 is not None else 0.0
    pps = sent / secs if secs > 0 else 0.0
    extra = f"; {sender.refused} refused by the destination" if sender.refused else ""
    print(f"xdpfeed replay: {sent:,} packets, {nbytes:,} bytes in {secs:.3f} s ({pps:,.0f} pps); "
          f"{skipped:,} frames skipped (not IPv4 UDP){extra}", file=sys.stderr)
    return code
