"""Shared test helpers: decoding a file to message dicts, building MoldUDP64 payloads and frames, waiting
for a condition, free ports and multicast line pairs, and the venue + feed harness."""

import contextlib
import io
import logging
import socket
import struct
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from xdpfeed.multicast.exchange.ports import free_port, line_pair
from xdpfeed.multicast.exchange.venue import Venue, VenueConfig
from xdpfeed.multicast.feed.feed import Feed
from xdpfeed.multicast.itch import output
from xdpfeed.multicast.itch.pipeline import Decode
from xdpfeed.multicast.itch.schema import TYPES

ALL = output.type_codes(TYPES)


def decode_all(path, groups=()):
    """(list of message dicts, the Decode run) for a whole input."""
    run = Decode(str(path), groups=groups)
    msgs = []
    for _, tables in run.batches():
        msgs += list(output.messages(tables, run.sessions.names(), run.format == "pcap", ALL, float("inf")))
    return msgs, run


def mold(session: bytes, seq: int, messages=(), count=None) -> bytes:
    """A MoldUDP64 packet: header plus a length-prefixed block per message."""
    body = b"".join(struct.pack(">H", len(m)) + m for m in messages)
    n = len(messages) if count is None else count
    return session.ljust(10, b" ") + struct.pack(">QH", seq, n) + body


def frame(payload: bytes, group="233.54.12.111", port=26477, vlan=None) -> bytes:
    l2 = Ether(src="02:00:00:00:00:01", dst="01:00:5e:36:0c:6f")
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    return bytes(l2 / IP(src="10.9.9.9", dst=group, id=1, flags="DF") / UDP(sport=40000, dport=port) / payload)


def write_pcap(path, frames, linktype=1, snaplen=262144):
    """Classic little-endian nanosecond pcap; frame i at 1700000000 + i seconds and i ns. A frame given
    as (bytes, wire_length) is written as captured short of its wire length."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, snaplen, linktype)]
    for i, f in enumerate(frames):
        data, wire = f if isinstance(f, tuple) else (f, len(f))
        out.append(struct.pack("<IIII", 1700000000 + i, i, len(data), wire) + data)
    with open(path, "wb") as fh:
        fh.write(b"".join(out))
    return path


REALTIME_SLACK_NS = 5_000_000_000


def kernel_realtime(ts: int, t0: int, t1: int) -> bool:
    """ts is a CLOCK_REALTIME time the kernel took between our reads t0 and t1 (time.time_ns()). The realtime
    clock can be stepped between the reads (NTP, a paused VM resumed), so it is allowed REALTIME_SLACK_NS on
    either side: a clock of another kind (monotonic since boot, or none: 0) is hours or years away."""
    return t0 - REALTIME_SLACK_NS <= int(ts) <= t1 + REALTIME_SLACK_NS


def eventually(cond, deadline: float = 20.0) -> None:
    """Wait (polling every 5 ms) for a condition another thread makes true; fail after `deadline` s."""
    end = time.monotonic() + deadline
    while not cond():
        assert time.monotonic() < end, "condition never held"
        time.sleep(0.005)


def read_until(proc, seen: list, needle: str) -> bool:
    """Read proc's stderr lines into `seen` until one contains `needle` (True) or the stream ends (False)."""
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return True
    return False


# ---------------------------------------------------------------------------- venue + feed harness
USER, PASSWORD = "TEST01", "secret42"


def lines_pair(prefix: str = "239.253") -> tuple[str, str]:
    """Two multicast lines as "GROUP:PORT" strings (random groups, consecutive ports)."""
    a, b = line_pair(prefix)
    return f"{a[0]}:{a[1]}", f"{b[0]}:{b[1]}"


@contextlib.contextmanager
def venue_for(store, *, users=None, prefix="239.254", replay=True, rerequest=True, venue=None):
    """The simulated venue (threads, not yet started) publishing `store` on two loopback lines, and the Feed
    keys that receive it (lines, recovery servers, user and password), as (venue, keys); stopped at the end.
    `venue` holds VenueConfig fields."""
    a, b = line_pair(prefix)
    replay_port, request_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    vcfg = VenueConfig(line_a=a, line_b=b, users=users or {USER: PASSWORD}, start_delay=0.2, heartbeat_interval=0.2,
                       replay_port=replay_port, request_port=request_port, **(venue or {}))
    keys = {"line_a": f"udp:{a[0]}:{a[1]}@lo", "line_b": f"udp:{b[0]}:{b[1]}@lo",
            "rerequest": [f"127.0.0.1:{request_port}"] if rerequest else None,
            "replay": [f"127.0.0.1:{replay_port}"] if replay else None, "user": USER, "password": PASSWORD}
    v = Venue(vcfg, store)
    try:
        yield v, keys
    finally:
        v.stop()


@contextlib.contextmanager
def venue_and_feed(store, *, users=None, prefix="239.254", replay=True, rerequest=True, venue=None, **feed_keys):
    """The simulated venue (threads, not yet started) publishing `store` on two loopback lines, and a Feed on
    them (lines joined, recovery servers known), as (venue, feed); both closed at the end. `venue` holds
    VenueConfig fields, `feed_keys` the Feed's keyword arguments (consumers included)."""
    with venue_for(store, users=users, prefix=prefix, replay=replay, rerequest=rerequest, venue=venue) as (v, keys):
        feed = Feed(**{**keys, **feed_keys})
        try:
            yield v, feed
        finally:
            feed.close()


@contextlib.contextmanager
def captured_log(name: str = "xdpfeed", level=logging.INFO):
    """What the `name` logger writes meanwhile, as a StringIO."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger(name)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


# A buggy release, for go-live tests: appended to multicast/sinks/ipc.py (or run in its namespace), its ipc:
# output changes the last byte of every batch it publishes, so what it delivers differs from a good release.
IPC_OFF_BY_ONE = """

_publish_messages = IpcSink.on_messages


def _off_by_one(self, batch):
    stream = batch.stream
    batch.stream = stream.copy()
    batch.stream[-1] = np.uint8((int(stream[-1]) + 1) % 256)
    try:
        _publish_messages(self, batch)
    finally:
        batch.stream = stream


IpcSink.on_messages = _off_by_one
"""
