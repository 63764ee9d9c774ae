"""The two sides of a comparison, each loaded into one shape: the delivered ITCH messages as a NASDAQ binary
stream ([uint16 length][message]...), their offsets, their sequence numbers (None when the input carries
none: a recorded ITCH file, where a message's position stands for it) and receive timestamps (None when
unknown).

Inputs, by URI or by what the file is:
- `itch:PATH` (or a file whose first records are ITCH): a recording (`run --record`, an `itch:` output);
- `pcap:PATH` (or a .pcap / .pcapng file): a capture, delivered through a Feed (sequencing, A/B arbitration),
  with sequence numbers and the capture's times;
- `ipc:NAME`, `nats://…/STREAM`: a live subscription, read until the publisher ends, `idle_timeout` seconds
  pass without data, or `count` messages came.
- `dbn:PATH` (or a .dbn file): Databento MBO records; compared with another DBN file record by record, every
  field but the receive time (ts_recv, which becomes the side's timestamps) and ts_in_delta.
"""

import os
from dataclasses import dataclass

import numpy as np

from xdpfeed.multicast.exchange.store import index_records


class CompareError(ValueError):
    """A side that cannot be read; the message names it."""


@dataclass
class Side:
    name: str
    stream: np.ndarray  # uint8: [uint16 length][message]...
    offsets: np.ndarray  # int64[n + 1]: where message k starts; offsets[n] = stream.size
    seq: np.ndarray | None  # int64[n], or None: positions 1..n stand for sequence numbers
    ts: np.ndarray | None  # int64[n] receive times, or None
    kind: str = "itch"  # or "dbn": each record is an MBO record (56 bytes) with ts_recv and ts_in_delta zeroed

    @property
    def count(self) -> int:
        return self.offsets.size - 1

    @property
    def sequenced(self) -> bool:
        return self.seq is not None

    def seqs(self) -> np.ndarray:
        return self.seq if self.seq is not None else np.arange(1, self.count + 1, dtype=np.int64)

    def message(self, k: int) -> bytes:
        return self.stream[self.offsets[k] + 2 : self.offsets[k + 1]].tobytes()


def index(stream: np.ndarray, name: str) -> np.ndarray:
    """Offsets of the [uint16 length][message] records of `stream` (n + 1 of them, the last its end), with the
    venue store's compiled walk; CompareError when the stream ends in a cut record."""
    out = np.zeros(stream.size // 2 + 2, dtype=np.int64)
    n = int(index_records(stream, out, np.zeros(0, dtype=np.uint8), np.zeros(out.size, dtype=np.int64)))
    end = int(out[n])
    if end != stream.size:
        raise CompareError(f"{name}: a record is cut at byte {end} (of {stream.size}): not a whole ITCH stream")
    return out[: n + 1].copy()


def load(spec: str, idle_timeout: float = 5.0, count: int | None = None) -> Side:
    scheme, sep, rest = spec.partition(":")
    if spec.startswith(("ipc:", "nats://", "nats:")):
        return _subscription(spec, idle_timeout, count)
    if sep and scheme == "itch":
        return _itch(rest, spec)
    if sep and scheme == "pcap":
        return _capture(rest, spec)
    if sep and scheme == "dbn":
        return _dbn(rest, spec)
    if not os.path.exists(spec):
        raise CompareError(f"{spec}: no such file (or give itch:, pcap:, dbn:, ipc: or nats://)")
    with open(spec, "rb") as f:
        head = f.read(4096)
    if head[:3] == b"DBN":
        return _dbn(spec, spec)
    if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                    b"\x0a\x0d\x0d\x0a"):
        return _capture(spec, spec)
    from xdpfeed.multicast.itch.file import looks_like_itch

    if looks_like_itch(head):
        return _itch(spec, spec)
    raise CompareError(f"{spec}: neither an ITCH file nor a capture (give itch:, pcap:, dbn:, ipc: or nats://)")


def _dbn(path: str, name: str) -> Side:
    """MBO records as a stream of [uint16 56][record] with the receive-side fields zeroed."""
    try:
        import databento as db
    except ImportError:
        raise CompareError(f"{name}: reading DBN needs the databento package") from None
    try:
        recs = db.DBNStore.from_file(path).to_ndarray()
    except Exception as e:  # the reader raises its own types for a file that is not DBN
        raise CompareError(f"{name}: not a DBN file: {e}") from None
    from xdpfeed.multicast.sinks.mbo import MBO

    if recs.dtype.itemsize != MBO.itemsize:
        raise CompareError(f"{name}: DBN records of {recs.dtype.itemsize} bytes: only MBO is compared")
    raw = np.ascontiguousarray(recs).view(MBO).copy()
    ts = raw["ts_recv"].astype(np.int64)
    raw["ts_recv"], raw["ts_in_delta"] = 0, 0
    n = raw.size
    out = np.zeros((n, 2 + MBO.itemsize), dtype=np.uint8)
    out[:, 1] = MBO.itemsize
    out[:, 2:] = raw.view(np.uint8).reshape(n, MBO.itemsize)
    stream = out.reshape(-1)
    offsets = np.arange(n + 1, dtype=np.int64) * (2 + MBO.itemsize)
    return Side(name, stream, offsets, None, ts, kind="dbn")


def _itch(path: str, name: str) -> Side:
    try:
        stream = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise CompareError(f"{name}: {e.strerror}") from None
    return Side(name, stream, index(stream, name), None, None)


class _Collect:
    """A consumer that keeps what it is given: the stream, sequence numbers and receive times."""

    name = "compare"

    def __init__(self):
        self.parts, self.seqs, self.ts = [], [], []

    def on_messages(self, batch):
        if batch.snapshot:
            return
        self.parts.append(batch.stream.copy())
        self.seqs.append(batch.seq.copy())
        self.ts.append(batch.timestamp_ns[: batch.count].copy())

    def side(self, name: str) -> Side:
        stream = _cat(self.parts, np.uint8)
        return Side(name, stream, index(stream, name), _cat(self.seqs, np.int64), _cat(self.ts, np.int64))


def _cat(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _capture(path: str, name: str) -> Side:
    from xdpfeed.capture.errors import SourceError
    from xdpfeed.multicast.feed.feed import Feed

    c = _Collect()
    try:
        with Feed(line_a=f"pcap:{path}", consumers=[c], book=False, metrics=None, latency=False,
                  start="first") as f:
            f.run()
    except (SourceError, ValueError, OSError) as e:
        raise CompareError(f"{name}: {e}") from None
    return c.side(name)


def _subscription(uri: str, idle_timeout: float, count: int | None) -> Side:
    from xdpfeed.multicast.sinks.subscriber import Subscriber, SubscriberError

    c = _Collect()
    got = 0
    try:
        with Subscriber(uri, idle_timeout=idle_timeout) as sub:
            for batch in sub:
                c.on_messages(batch)
                got += batch.count
                if count is not None and got >= count:
                    break
    except SubscriberError as e:
        raise CompareError(f"{uri}: {e}") from None
    return c.side(uri)
