"""The two sides of a comparison, each loaded into one shape: the delivered ITCH messages as a NASDAQ binary
stream ([uint16 length][message]...), their offsets, their sequence numbers (None when the input carries
none: a recorded ITCH file, where a message's position stands for it) and receive timestamps (None when
unknown).

Inputs, by URI or by what the file is:
- `itch:PATH` (or a file whose first records are ITCH): a recording (`run --record`, an `itch:` output);
- `pcap:PATH` (or a .pcap / .pcapng file): a capture, delivered through a Feed (sequencing, A/B arbitration),
  with sequence numbers and the capture's times;
- `ipc:NAME`, `nats://…/STREAM`: a live subscription, read until the publisher ends, `idle_timeout` seconds
  pass without data, or `count` messages came; two of them are read side by side.
- `dbn:PATH` (or a .dbn file): Databento MBO records; compared with another DBN file record by record, every
  field but the receive time (ts_recv, which becomes the side's timestamps) and ts_in_delta.
"""

import os
import time
from dataclasses import dataclass

import numpy as np

from xdpfeed.multicast.exchange.store import index_records

SUBSCRIPTIONS = ("ipc:", "nats://", "nats:")


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
    if spec.startswith(SUBSCRIPTIONS):
        (side,) = subscriptions([spec], idle_timeout, count)
        return side
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
    from xdpfeed.multicast.itch.input_format import looks_like_itch

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


def subscriptions(uris: list[str], idle_timeout: float, count: int | None, seconds: float | None = None) -> list:
    """Live subscriptions read side by side (so both see the same stretch of the stream), each until its
    publisher ends, `idle_timeout` seconds pass without data or `count` messages came; all of them at most
    `seconds` (None: no limit)."""
    from xdpfeed.multicast.sinks.subscriber import Subscriber, SubscriberError

    subs, cols = [], [_Collect() for _ in uris]
    try:
        for uri in uris:
            try:
                subs.append(Subscriber(uri, idle_timeout=idle_timeout))
            except SubscriberError as e:
                raise CompareError(f"{uri}: {e}") from None
        now = time.monotonic()
        end = None if seconds is None else now + seconds
        got, idle_since, open_ = [0] * len(uris), [now] * len(uris), [True] * len(uris)
        while any(open_) and (end is None or time.monotonic() < end):
            for k, sub in enumerate(subs):
                if not open_[k]:
                    continue
                batch = sub.receive(0.005 if len(subs) > 1 else 0.1)
                now = time.monotonic()
                if batch is not None:
                    cols[k].on_messages(batch)
                    got[k] += batch.count
                    idle_since[k] = now
                    open_[k] = count is None or got[k] < count
                elif sub.ended() or (idle_timeout is not None and now - idle_since[k] > idle_timeout):
                    open_[k] = False
    finally:
        for sub in subs:
            sub.close()
    return [c.side(uri) for c, uri in zip(cols, uris, strict=True)]


def load_pair(a: str, b: str, idle_timeout: float = 5.0, count: int | None = None,
              seconds: float | None = None) -> tuple[Side, Side]:
    """Both sides of a comparison; two live subscriptions are read at the same time."""
    if all(s.startswith(SUBSCRIPTIONS) for s in (a, b)):
        sa, sb = subscriptions([a, b], idle_timeout, count, seconds)
        return sa, sb
    return load(a, idle_timeout, count), load(b, idle_timeout, count)


def overlap(a: Side, b: Side) -> tuple[Side, Side, dict]:
    """Both sides cut to the sequence numbers both cover (two handlers started and stopped at different
    moments), and how many messages each had outside that range."""
    if not (a.sequenced and b.sequenced):
        name = a.name if not a.sequenced else b.name
        raise CompareError(f"{name} carries no sequence numbers: only sequenced streams (captures, ipc:, nats://) "
                           "can be cut to their overlap")
    if not (a.count and b.count):
        return a, b, {"a": a.count, "b": b.count, "first_seq": 0, "last_seq": 0}
    lo, hi = max(int(a.seq[0]), int(b.seq[0])), min(int(a.seq[-1]), int(b.seq[-1]))
    out = {"first_seq": lo, "last_seq": hi}
    cut = []
    for key, s in (("a", a), ("b", b)):
        i, j = np.searchsorted(s.seq, lo, "left"), np.searchsorted(s.seq, hi, "right")
        if j < i:
            i = j
        out[key] = int(s.count - (j - i))
        stream = s.stream[s.offsets[i] : s.offsets[j]].copy()
        cut.append(Side(s.name, stream, s.offsets[i : j + 1] - s.offsets[i], s.seq[i:j].copy(),
                        None if s.ts is None else s.ts[i:j].copy(), s.kind))
    return cut[0], cut[1], out
