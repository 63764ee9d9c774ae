"""The venue's MoldUDP64 publisher: one session's messages as downstream packets on lines A and B.

Owns the packing of the day into packets (`packetize`, compiled: whole blocks up to max_block_bytes),
the per-line fault plan (loss, reorder, duplicate per packet; bursts lost on every line at once),
all drawn up front from `seed` by a splitmix64 stream of its own so a run is reproducible, and the
send loop: per batch, compiled code writes the 20-byte header and the blocks of each packet due into
a preallocated slab and one sendmmsg call (xdpfeed.native._udp) puts them on a line's socket. Pacing
to `rate` messages/s, heartbeats when idle and the End of Session repeats run in Python, per batch.

Fault semantics, per line and per data packet: loss = never sent; reorder = held back and sent right
after the next packet that is sent; duplicate = sent twice in a row. Heartbeats and End of Session
packets are never faulted. `published` is the next sequence whose packet has been sent (or
deliberately lost) on every line: recovery servers may serve [1, published).
"""

import errno
import os
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np

from xdpfeed.capture.jit import njit
from xdpfeed.multicast.exchange.rng import uniform as _uniform
from xdpfeed.native._udp import ffi, lib

MAX_BLOCK_BYTES = 1452  # 1500 MTU − IPv4 20 − UDP 8 − MoldUDP64 header 20
HEADER_LEN = 20
HEARTBEAT = 0
END_OF_SESSION = 0xFFFF
MAX_COUNT = 0xFFFE  # most blocks a data packet may announce
BATCH_PACKETS = 256  # main-timeline packets handled per loop turn
MIN_PACE_S = 0.001  # pacing sleeps at least this long, so paced sends go out in ≈1 ms batches
MAX_SLEEP_S = 0.05  # longest single sleep, so stop() is seen quickly
RETRY_S = 0.0002  # wait after EAGAIN / ENOBUFS
SNDBUF = 4 << 20
_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.ECONNREFUSED, errno.EINTR)


class PublishError(OSError):
    """A line's socket failed with something other than a full buffer. str() is the one-line message."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


@dataclass(frozen=True)
class LineFaults:
    """Per-packet probabilities of faults on one line."""

    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self):
        for name in ("loss", "reorder", "duplicate"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise ValueError(f"LineFaults.{name} must be a probability in [0, 1], not {v!r}")


# ------------------------------------------------------------------------------------ compiled parts
def _stream(seed: int, stream: int) -> np.ndarray:
    """Independent splitmix64 state for (seed, stream)."""
    st = np.zeros(1, dtype=np.uint64)
    st[0] = np.uint64((seed * 0xD1B54A32D192ED03 + (stream + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    return st


@njit(cache=True)
def packetize(records, offsets, count, max_block_bytes=MAX_BLOCK_BYTES):
    """MoldUDP64 data packets covering sequences 1..count of `records` ([uint16 len][msg] blocks at
    `offsets`): each packet holds as many whole blocks as fit in max_block_bytes (a block longer than
    that travels alone) and at most 0xFFFE. Returns (first_seq, n_msgs, byte_start, byte_len), int64."""
    first_seq = np.empty(max(count, 1), dtype=np.int64)
    n_msgs = np.empty(max(count, 1), dtype=np.int64)
    byte_start = np.empty(max(count, 1), dtype=np.int64)
    byte_len = np.empty(max(count, 1), dtype=np.int64)
    k = 0
    s = 0  # 0-based index of the next message
    while s < count:
        start = offsets[s]
        e = s + 1
        while e < count and e - s < MAX_COUNT and offsets[e + 1] - start <= max_block_bytes:
            e += 1
        first_seq[k] = s + 1
        n_msgs[k] = e - s
        byte_start[k] = start
        byte_len[k] = offsets[e] - start
        k += 1
        s = e
    return first_seq[:k], n_msgs[:k], byte_start[:k], byte_len[:k]


@njit(cache=True)
def _plan_line(n_msgs, forced, loss, reorder, duplicate, st):
    """One line's schedule. Returns (sched_pkt, sched_slot, lost, dup, reord, pub): schedule entry j
    sends packet sched_pkt[j] once main packet sched_slot[j] is due; lost/dup/reord flag packets;
    pub[k] = first packet not yet sent or lost after slots < k were handled."""
    npk = n_msgs.size
    sched_pkt = np.empty(2 * npk + 2, dtype=np.int64)
    sched_slot = np.empty(2 * npk + 2, dtype=np.int64)
    lost = np.zeros(npk, dtype=np.uint8)
    dup = np.zeros(npk, dtype=np.uint8)
    reord = np.zeros(npk, dtype=np.uint8)
    slot = np.arange(npk)
    j = 0
    held = -1
    for i in range(npk):
        u_loss = _uniform(st)  # always three draws per packet: the plan of one fault never shifts another
        u_reorder = _uniform(st)
        u_dup = _uniform(st)
        if forced[i] or u_loss < loss:
            lost[i] = 1
            continue
        d = 2 if u_dup < duplicate else 1
        dup[i] = d - 1
        if held < 0 and u_reorder < reorder and i + 1 < npk:
            held = i
            continue
        for _ in range(d):
            sched_pkt[j] = i
            sched_slot[j] = i
            j += 1
        if held >= 0:
            for _ in range(1 + dup[held]):
                sched_pkt[j] = held
                sched_slot[j] = i
                j += 1
            reord[held] = 1
            slot[held] = i
            held = -1
    if held >= 0:  # every later packet was lost: it goes out last, in order after all
        for _ in range(1 + dup[held]):
            sched_pkt[j] = held
            sched_slot[j] = npk - 1
            j += 1
        slot[held] = npk - 1
    pub = np.arange(npk + 1)
    for i in range(npk):
        for k in range(i + 1, slot[i] + 1):
            pub[k] = min(pub[k], i)
    return sched_pkt[:j], sched_slot[:j], lost, dup, reord, pub


@njit(cache=True)
def _fill(slab, session, records, first_seq, n_msgs, byte_start, byte_len, sched_pkt, lo, hi, off, ln, stamp):
    """Write packets sched_pkt[lo:hi] back to back into slab (header + blocks); off/ln get where each is. With
    stamp > 0 (ns since midnight), every message's ITCH timestamp becomes it: the time the venue sends it."""
    o = 0
    for j in range(lo, hi):
        k = sched_pkt[j]
        for i in range(10):
            slab[o + i] = session[i]
        seq = first_seq[k]
        for i in range(8):
            slab[o + 10 + i] = (seq >> (8 * (7 - i))) & 0xFF
        slab[o + 18] = (n_msgs[k] >> 8) & 0xFF
        slab[o + 19] = n_msgs[k] & 0xFF
        b = byte_start[k]
        n = byte_len[k]
        slab[o + HEADER_LEN : o + HEADER_LEN + n] = records[b : b + n]
        if stamp > 0:
            p = o + HEADER_LEN
            end = p + n
            while p + 2 <= end:
                m = (np.int64(slab[p]) << 8) | slab[p + 1]
                if m >= 11:
                    for i in range(6):
                        slab[p + 2 + 5 + i] = (stamp >> (8 * (5 - i))) & 0xFF
                p += 2 + m
        off[j - lo] = o
        ln[j - lo] = HEADER_LEN + n
        o += HEADER_LEN + n
    return o


# ------------------------------------------------------------------------------------------- helpers
def _burst_plan(n_msgs: np.ndarray, burst_loss: int, bursts: int, seed: int) -> np.ndarray:
    """Packets lost on every line: `bursts` runs of whole packets holding ≥ burst_loss messages each,
    one per equal slice of the day's interior (5 % of the packets kept clear at each end)."""
    npk = n_msgs.size
    forced = np.zeros(npk, dtype=np.uint8)
    if bursts == 0 or burst_loss == 0:
        return forced
    cum = np.concatenate(([0], np.cumsum(n_msgs)))
    margin = max(1, npk // 20)
    lo, hi = margin, npk - margin
    width = (hi - lo) // bursts if hi > lo else 0
    st = _stream(seed, 1 << 20)
    for b in range(bursts):
        seg_lo = lo + b * width
        seg_hi = seg_lo + width - 1  # one packet left clear before the next slice
        starts = np.arange(seg_lo, max(seg_lo, seg_hi))
        ends = np.searchsorted(cum, cum[starts] + burst_loss, side="left")  # burst = packets [s, e)
        valid = starts[ends <= seg_hi]
        if valid.size == 0:
            raise ValueError(f"burst_loss: too large: {bursts} burst(s) of {burst_loss} messages do not fit in a "
                             f"day of {int(cum[-1])} messages in {npk} packets")
        s = int(valid[int(_uniform(st) * valid.size)])
        e = int(np.searchsorted(cum, cum[s] + burst_loss, side="left"))
        forced[s:e] = 1
    return forced


class _Line:
    """One line's socket, schedule and counters."""

    def __init__(self, name, group, port, iface_addr, ttl, plan, n_msgs):
        self.name, self.group, self.port = name, group, port
        self.sched_pkt, self.sched_slot, self.lost, dup, reord, self.pub = plan
        self.msgs_cum = np.concatenate(([0], np.cumsum(n_msgs[self.sched_pkt])))
        self.lost_cum = np.concatenate(([0], np.cumsum(self.lost)))
        self.lost_msgs_cum = np.concatenate(([0], np.cumsum(n_msgs * self.lost)))
        self.dup_cum = np.concatenate(([0], np.cumsum(dup)))
        self.reord_cum = np.concatenate(([0], np.cumsum(reord)))
        self.pos = self.heartbeats = self.end_of_session = 0  # pos: schedule entries sent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        what = f"iface_addr {iface_addr}"
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface_addr))
            what = f"line {name} {group}:{port}"
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
            self.sock.connect((group, port))
            self.sock.setblocking(False)
        except OSError as e:
            self.sock.close()
            raise PublishError(e.errno, f"{what}: {e.strerror}") from None

    def stats(self, k: int) -> dict:
        return {"packets_sent": self.pos, "messages_sent": int(self.msgs_cum[self.pos]),
                "packets_lost": int(self.lost_cum[k]), "messages_lost": int(self.lost_msgs_cum[k]),
                "duplicated": int(self.dup_cum[k]), "reordered": int(self.reord_cum[k]),
                "heartbeats": self.heartbeats, "end_of_session": self.end_of_session}


# ----------------------------------------------------------------------------------------- publisher
class Publisher:
    """Publishes every message of `store` on each (group, port) of `lines` (named A, B, ...)."""

    def __init__(self, store, lines: list[tuple[str, int]], iface_addr: str = "127.0.0.1", rate: float = 0,
                 faults: list[LineFaults] | None = None, burst_loss: int = 0, bursts: int = 0, seed: int = 1,
                 heartbeat_interval: float = 1.0, eos_interval: float = 0.2, eos_repeats: int = 3, ttl: int = 1,
                 eos_until_stopped: bool = False, start_seq: int = 1, stamp_time: bool = False,
                 max_block_bytes: int = MAX_BLOCK_BYTES, clock=time.monotonic, sleep=time.sleep):
        faults = list(faults) if faults is not None else [LineFaults() for _ in lines]
        if not lines or len(faults) != len(lines):
            raise ValueError(f"lines and faults: one LineFaults per line, not {len(faults)} for {len(lines)} lines")
        if rate < 0 or heartbeat_interval <= 0 or eos_interval < 0 or eos_repeats < 1:
            raise ValueError("rate >= 0, heartbeat_interval > 0, eos_interval >= 0 and eos_repeats >= 1 required")
        if burst_loss < 0 or bursts < 0:
            raise ValueError("burst_loss and bursts must be >= 0")
        self.store = store
        self.rate = float(rate)
        self.heartbeat_interval, self.eos_interval, self.eos_repeats = heartbeat_interval, eos_interval, eos_repeats
        self.eos_until_stopped = eos_until_stopped  # keep repeating End of Session (each heartbeat interval)
        self._clock, self._sleep = clock, sleep
        self._session = np.frombuffer(store.session, dtype=np.uint8).copy()
        self.first_seq, self.n_msgs, self.byte_start, self.byte_len = packetize(
            store.records, store.offsets, store.count, max_block_bytes)
        npk = self.first_seq.size
        self._seq_at = np.concatenate((self.first_seq, [store.count + 1]))  # sequence of packet k, or the end
        self._cum_end = np.cumsum(self.n_msgs)  # messages up to and including packet k
        forced = _burst_plan(self.n_msgs, burst_loss, bursts, seed)
        self.lines: list[_Line] = []
        try:
            for i, ((group, port), f) in enumerate(zip(lines, faults, strict=True)):
                plan = _plan_line(self.n_msgs, forced, f.loss, f.reorder, f.duplicate, _stream(seed, i))
                self.lines.append(_Line(chr(65 + i), group, port, iface_addr, ttl, plan, self.n_msgs))
        except Exception:
            self.close()
            raise
        self._pub = np.minimum.reduce([ln.pub for ln in self.lines])
        both = np.logical_and.reduce([ln.lost for ln in self.lines]).astype(np.int8)
        edge = np.diff(np.concatenate(([0], both, [0])))  # runs of packets lost on every line
        self._lost_on_both = [(int(self.first_seq[a]), int(self._seq_at[b]))
                              for a, b in zip(np.flatnonzero(edge == 1), np.flatnonzero(edge == -1), strict=True)]
        cap = 2 * BATCH_PACKETS + 2
        self._slab = np.zeros(cap * (HEADER_LEN + int(self.byte_len.max(initial=0))), dtype=np.uint8)
        self._off = np.zeros(cap, dtype=np.int64)
        self._len = np.zeros(cap, dtype=np.uint32)
        self._c = (ffi.from_buffer("uint8_t[]", self._slab), ffi.from_buffer("int64_t[]", self._off),
                   ffi.from_buffer("uint32_t[]", self._len))
        _fill(self._slab, self._session, store.records, self.first_seq, self.n_msgs, self.byte_start, self.byte_len,
              self.lines[0].sched_pkt, 0, 0, self._off, self._len, 0)  # compiled now, not when the first packet is due
        self.stamp_time = stamp_time  # ITCH timestamps := the send time (ns since midnight US Eastern)
        if stamp_time:
            from xdpfeed.multicast.latency.stages import midnight_eastern_ns

            self._midnight_ns = midnight_eastern_ns(time.time_ns())
        self._k, self.packets = 0, npk  # main-timeline packets handled, of
        self.published, self.ended = 1, False
        if start_seq > 1:  # a venue met in the middle of its day: what came before counts as published
            k0 = max(0, int(np.searchsorted(self.first_seq, start_seq, side="right")) - 1)
            for line in self.lines:
                line.pos = int(np.searchsorted(line.sched_slot, k0, side="left"))
            self._k, self.published = k0, int(self._seq_at[k0])

    # ------------------------------------------------------------------------------------ sending
    def _send(self, line: _Line, n: int, stop: threading.Event) -> None:
        c_slab, c_off, c_len = self._c
        done = 0
        while done < n:
            r = lib.xdpfeed_udp_send_batch(line.sock.fileno(), c_slab, c_off + done, c_len + done, n - done)
            if r >= 0:
                done += r
            elif -r in _RETRY:
                if stop.is_set():
                    return
                self._sleep(RETRY_S)
            else:
                raise PublishError(-r, f"line {line.name} {line.group}:{line.port}: send: {os.strerror(-r)}")

    def _send_slots(self, k0: int, k1: int, stop: threading.Event) -> None:
        """Every line's schedule entries for main packets [k0, k1)."""
        cap = self._off.size
        for line in self.lines:
            hi = int(np.searchsorted(line.sched_slot, k1, side="left"))
            while line.pos < hi:
                lo, top = line.pos, min(hi, line.pos + cap)
                stamp = time.time_ns() - self._midnight_ns if self.stamp_time else 0
                _fill(self._slab, self._session, self.store.records, self.first_seq, self.n_msgs, self.byte_start,
                      self.byte_len, line.sched_pkt, lo, top, self._off, self._len, stamp)
                self._send(line, top - lo, stop)
                line.pos = top
        self._k = k1
        self.published = int(self._seq_at[self._pub[k1]])

    def _control(self, count: int) -> None:
        """A heartbeat (count 0) or End of Session (0xFFFF) on every line, with the next sequence the venue
        will use (a packet held back for reordering counts as sent: it is late in the network)."""
        seq = int(self._seq_at[self._k])
        pkt = self.store.session + seq.to_bytes(8, "big") + count.to_bytes(2, "big")
        for line in self.lines:
            while True:
                try:
                    line.sock.send(pkt)
                    break
                except (BlockingIOError, ConnectionRefusedError, InterruptedError):
                    self._sleep(RETRY_S)
                except OSError as e:
                    raise PublishError(e.errno, f"line {line.name} {line.group}:{line.port}: send: {e.strerror}") \
                        from None
            if count == HEARTBEAT:
                line.heartbeats += 1
            else:
                line.end_of_session += 1

    def run(self, stop: threading.Event | None = None) -> None:
        """Publish the whole day, then End of Session eos_repeats times (and then once per heartbeat
        interval until `stop` when eos_until_stopped); returns early when `stop` is set."""
        stop = stop or threading.Event()
        try:
            self._run(stop)
        finally:
            self.close()

    def _run(self, stop: threading.Event) -> None:
        npk = self.packets
        t0 = last = self._clock()
        k = self._k
        base = int(self._cum_end[k - 1]) if k > 0 else 0  # messages before the start (start_seq)
        while k < npk and not stop.is_set():
            now = self._clock()
            if self.rate > 0:
                due = base + int((now - t0) * self.rate)
                k1 = min(int(np.searchsorted(self._cum_end, due, side="right")), k + BATCH_PACKETS)
            else:
                k1 = min(npk, k + BATCH_PACKETS)
            if k1 > k:
                self._send_slots(k, k1, stop)
                k = k1
                last = now
                continue
            if now - last >= self.heartbeat_interval:
                self._control(HEARTBEAT)
                last = now
            next_due = t0 + (self._cum_end[k] - base) / self.rate
            wait = min(max(next_due - now, MIN_PACE_S), last + self.heartbeat_interval - now, MAX_SLEEP_S)
            self._sleep(max(wait, 1e-4))  # a floor: a fake clock must move past float rounding
        if stop.is_set():
            return
        r = 0
        while r < self.eos_repeats or self.eos_until_stopped:
            self._control(END_OF_SESSION)
            self.ended = True
            r += 1
            if r < self.eos_repeats or self.eos_until_stopped:  # then once per heartbeat interval, as venues do
                t_next = self._clock() + (self.eos_interval if r < self.eos_repeats else self.heartbeat_interval)
                while not stop.is_set() and (left := t_next - self._clock()) > 0:
                    self._sleep(min(left, MAX_SLEEP_S))
                if stop.is_set():
                    return

    def close(self) -> None:
        for line in self.lines:
            line.sock.close()

    # -------------------------------------------------------------------------------------- stats
    @property
    def lost_on_both(self) -> list[tuple[int, int]]:
        """[first, end) sequence ranges lost on every line, for the whole plan (also not yet reached)."""
        return list(self._lost_on_both)

    def stats(self) -> dict:
        """Counters so far: {"lines": {name: {...}}, "lost_on_both": [[first, end), ...] reached so far,
        "total": sums over the lines, "published": next sequence, "ended": bool}."""
        k = self._k
        lines = {ln.name: ln.stats(k) for ln in self.lines}
        total = {key: sum(s[key] for s in lines.values()) for key in next(iter(lines.values()))}
        reached = [[a, min(b, self.published)] for a, b in self._lost_on_both if a < self.published]
        return {"lines": lines, "lost_on_both": reached, "total": total, "published": self.published,
                "ended": self.ended}
