"""Consumers of a Feed: what they receive and how they are called.

A consumer is given to the Feed once, when it is built (`Feed(consumers=[...])`), and implements any
of these callbacks:
- `on_messages(batch)`: every delivered message, exactly once, in sequence order, in batches. The
  `MessageBatch` is a view of the sequencer's delivery buffer, valid until the callback returns (copy
  what you keep): `stream` (uint8: the messages framed as a NASDAQ binary ITCH file, [uint16
  length][message]...), `first_seq`, `count`, `seq` (int64 per message), `timestamp_ns` (receive time
  of the packet that brought each message), `snapshot` (True for the messages of a GLIMPSE snapshot,
  between the SnapshotBegin and SnapshotEnd status events: seq then numbers them within the snapshot),
  `decoded()` (per-type tables of the compiled ITCH decoder, decoded at most once per batch however many
  consumers ask);
- `on_top_of_book(events)`: the book's best bid/offer changes caused by the batch, a numpy structured
  array (multicast.book.storage.EVENT: seq of the message that caused it, timestamp, locate, bid/ask
  price and shares), after the book applied the batch;
- `on_status(event)`: typed status events (multicast.feed.status);
- `on_consolidated(events)`: given to a handler of several feeds (multicast.feed.feeds), the consolidated
  book's changes across venues (multicast.book.consolidated.CEVENT).

`Consumer(on_messages=f, ...)` wraps plain functions; `CompiledConsumer` calls numba-compiled functions
with the arrays only (`f(stream, seq, timestamp_ns, *state)`, `g(events, *state)`), so no Python runs
per message. A consumer that raises is logged with its name and counted; then either the feed stops
(on_error="stop", the default: `Feed.run()` returns "consumer failed") or that consumer is detached and
the feed goes on (on_error="detach"). A consumer may carry its own `on_error` (every sink: "detach").
"""

import logging
from dataclasses import dataclass, field

import numpy as np

from xdpfeed.multicast.itch.decoder import ItchTables, decode_numbered
from xdpfeed.multicast.wire import counters as C

log = logging.getLogger("xdpfeed.consumers")

CALLBACKS = ("on_messages", "on_top_of_book", "on_status", "on_consolidated")
ON_ERROR = ("stop", "detach")


class MessageBatch:
    """Delivered messages, as views; valid until the consumer returns. Reused from batch to batch."""

    __slots__ = ("stream", "first_seq", "count", "timestamp_ns", "session", "snapshot", "_arange", "_seq", "_tables",
                 "_decoded", "_cnt", "_box")

    def __init__(self, capacity: int = 1 << 16):
        self._arange = np.arange(capacity, dtype=np.int64)
        self._seq = np.zeros(capacity, dtype=np.int64)
        self._tables: ItchTables | None = None  # allocated on the first decoded()
        self._cnt = C.new()
        self._box = np.zeros(1, dtype=np.uint64)
        self.set(np.zeros(0, dtype=np.uint8), 0, 0, np.zeros(0, dtype=np.int64))

    def set(self, stream: np.ndarray, first_seq: int, count: int, timestamp_ns: np.ndarray, session: str = "",
            snapshot: bool = False):
        """Point the batch at new messages (the Feed and the subscribers do this). snapshot: the messages are
        a GLIMPSE snapshot's, numbered 1.. within it, their timestamps 0 (docs/snapshot.md)."""
        if count > self._arange.size:
            self._grow(count)
        self.stream, self.first_seq, self.count, self.timestamp_ns = stream, first_seq, count, timestamp_ns
        self.session = session
        self.snapshot = snapshot
        self._decoded = False
        return self

    def _grow(self, count: int) -> None:
        self._arange = np.arange(count, dtype=np.int64)
        self._seq = np.zeros(count, dtype=np.int64)
        self._tables = None

    @property
    def seq(self) -> np.ndarray:
        """Sequence number of each message (int64)."""
        out = self._seq[: self.count]
        np.add(self._arange[: self.count], self.first_seq, out=out)
        return out

    def decoded(self) -> ItchTables:
        """The batch's messages decoded into one record table per ITCH type (`tables['A']['price']`),
        in the dtypes of `xdpfeed decode`, each row's `seq` its sequence number and `session` 0 (the
        batch's, `batch.session`). Decoded once per batch."""
        if not self._decoded:
            if self._tables is None:
                self._tables = ItchTables(self._arange.size)
            t = self._tables
            t.clear()
            self._box[0] = self.first_seq
            _, n, _ = decode_numbered(self.stream, 0, self.stream.size, np.uint16(0), self._box, t.tables,
                                      t.rows, t.order_type, t.order_row, 0, self._cnt)
            t.count = n
            self._decoded = True
        return self._tables

    def messages(self):
        """(seq, message bytes) for each message: a convenience for tests and small tools, one Python
        object per message, so not for the hot path."""
        b = self.stream.tobytes()
        p = 0
        for k in range(self.count):
            n = int.from_bytes(b[p : p + 2], "big")
            yield self.first_seq + k, b[p + 2 : p + 2 + n]
            p += 2 + n


@dataclass
class Consumer:
    """Plain functions as a consumer: any of the callbacks, and a name for logs and metrics."""

    on_messages: object = None
    on_top_of_book: object = None
    on_status: object = None
    on_consolidated: object = None
    name: str = "consumer"


@dataclass
class CompiledConsumer:
    """numba-compiled callbacks that get arrays only: on_messages(stream, seq, timestamp_ns, *state) and
    on_top_of_book(events, *state), once per batch; `state` is whatever arrays the functions keep their
    results in."""

    on_messages: object = None
    on_top_of_book: object = None
    state: tuple = ()
    name: str = "compiled"

    def __post_init__(self):
        self._messages, self._events = self.on_messages, self.on_top_of_book
        self.on_messages = self._call_messages if self._messages is not None else None
        self.on_top_of_book = self._call_events if self._events is not None else None

    def _call_messages(self, batch: MessageBatch) -> None:
        self._messages(batch.stream, batch.seq, batch.timestamp_ns, *self.state)

    def _call_events(self, events: np.ndarray) -> None:
        self._events(events, *self.state)


@dataclass
class _Slot:
    """One consumer as the set calls it: its bound callbacks, name and counts."""

    name: str
    calls: dict = field(default_factory=dict)  # callback name -> bound method
    on_error: str = "stop"
    batches: int = 0
    errors: int = 0
    detached: bool = False
    index: int = 0  # its place among the consumers


class ConsumerSet:
    """The consumers of one Feed, called in the order given. `failed` holds (name, error) once one
    raised under on_error="stop"."""

    def __init__(self, consumers=(), on_error: str = "stop", on_failure=None, after_messages=None):
        """after_messages(i, batch): called when consumer number i returned from on_messages (latency)."""
        self.after_messages = after_messages
        if on_error not in ON_ERROR:
            raise ValueError(f"on_consumer_error must be one of {ON_ERROR}, not {on_error!r}")
        self.on_failure = on_failure  # called with (name, error text, detached) when a consumer raises
        self.failed: tuple[str, str] | None = None
        self.slots: list[_Slot] = []
        names = set()
        for c in consumers:
            name = getattr(c, "name", None) or type(c).__name__
            base, k = name, 2
            while name in names:
                name, k = f"{base}-{k}", k + 1
            names.add(name)
            calls = {cb: getattr(c, cb) for cb in CALLBACKS if callable(getattr(c, cb, None))}
            if not calls:
                raise TypeError(f"consumer {name!r} has none of {', '.join(CALLBACKS)}")
            policy = getattr(c, "on_error", None)  # a consumer may set its own (a sink: always detach)
            self.slots.append(_Slot(name, calls, policy if policy in ON_ERROR else on_error, index=len(self.slots)))
        self._by_callback = {cb: [s for s in self.slots if cb in s.calls] for cb in CALLBACKS}

    def wants(self, callback: str) -> bool:
        return any(not s.detached for s in self._by_callback[callback])

    def call(self, callback: str, arg) -> None:
        for s in self._by_callback[callback]:
            if s.detached:
                continue
            try:
                s.calls[callback](arg)
            except Exception as e:  # a consumer's bug must not take the feed path with it
                self._failed(s, callback, e)
            else:
                if callback == "on_messages":
                    s.batches += 1
                    if self.after_messages is not None:
                        self.after_messages(s.index, arg)

    def _failed(self, s: _Slot, callback: str, e: Exception) -> None:
        s.errors += 1
        s.detached = True  # never called again, whatever the policy: the feed stops or goes on without it
        text = f"{type(e).__name__}: {e}"
        log.error("consumer %s failed in %s: %s%s", s.name, callback, text,
                  "; detached, the feed goes on" if s.on_error == "detach" else "; the feed stops")
        if s.on_error == "stop" and self.failed is None:
            self.failed = (s.name, f"{callback}: {text}")
        if self.on_failure is not None:
            self.on_failure(s.name, text, s.on_error == "detach")

    def stats(self) -> dict:
        return {s.name: {"batches": s.batches, "errors": s.errors, "detached": s.detached} for s in self.slots}
