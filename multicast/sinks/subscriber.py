"""`Subscriber(uri)`: a process that reads what a Feed publishes, as the batches an in-process consumer gets.

    from xdpfeed import Subscriber

    with Subscriber("ipc:totalview") as sub:            # or "nats://HOST:PORT,.../STREAM", start_seq=N
        for batch in sub:                       # MessageBatch: stream, first_seq, count, seq, timestamp_ns, decoded()
            ...

`ipc:NAME` reads an `ipc:` output on this host (multicast.sinks.ipc_subscriber); `nats://.../STREAM` a
JetStream stream a `nats:` output fills (multicast.sinks.nats_subscriber), from any sequence number. The
stream is sequenced, so a subscriber checks it exactly as the handler checks MoldUDP64 (SequenceCheck): a
gap is logged once and counted (`gaps`, `missed`), messages seen already are skipped and counted
(`duplicates`), a new session starts over.
"""

import logging
import time

import numpy as np

from xdpfeed.multicast.sinks.base import SinkError
from xdpfeed.multicast.sinks.nats_wire import offset_of

log = logging.getLogger("xdpfeed.subscriber")

SCHEMES = ("ipc", "nats")


class SubscriberError(SinkError):
    """A subscription that cannot be opened (no such service or stream, bad URI, refused): one line."""


def Subscriber(uri: str, **opts):  # noqa: N802 — a factory that reads like a class
    """A subscriber for `uri`: `ipc:NAME`, or `nats://HOST:PORT[,...]/STREAM[?...]` (start_seq=N)."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme not in SCHEMES:
        raise SubscriberError(f"unknown subscription {uri!r}: expected ipc:NAME or nats://HOST:PORT/STREAM")
    if scheme == "nats":
        from xdpfeed.multicast.sinks.nats_subscriber import NatsSubscriber

        return NatsSubscriber(uri, **opts)
    from xdpfeed.multicast.sinks.ipc_subscriber import IpcSubscriber

    return IpcSubscriber(rest, **opts)


class SequenceCheck:
    """What a subscriber received, by sequence number: `next_seq` expected, gaps, missed and duplicate
    messages, batches and messages taken."""

    def __init__(self, where: str):
        self.where = where
        self.next_seq = 0
        self.session = ""
        self.batches = self.messages = self.gaps = self.missed = self.duplicates = 0
        self.snapshot_messages = 0

    def admit(self, session: str, first: int, count: int, stream: np.ndarray, ts: np.ndarray, snapshot: bool = False):
        """(stream, first, count, ts, session) of what is new in a batch, or None when all of it was seen. A
        snapshot's batches (numbered within the snapshot) pass as they are; the stream goes on after it from
        the snapshot's sequence, whatever came before."""
        if snapshot:
            self.next_seq = 0
            self.snapshot_messages += count
            self.batches += 1
            return stream, first, count, ts, session
        if session != self.session:
            self.session, self.next_seq = session, 0
        if self.next_seq and first > self.next_seq:
            self.gaps += 1
            self.missed += first - self.next_seq
            log.warning("%s: messages [%d, %d) missed (overwritten before they were read, or never published)",
                        self.where, self.next_seq, first)
        if self.next_seq and first < self.next_seq:  # already seen (a late joiner's history overlaps)
            skip = min(count, self.next_seq - first)
            self.duplicates += skip
            if skip == count:
                return None
            pos = offset_of(stream, skip)
            stream, ts, first, count = stream[pos:], ts[skip:], first + skip, count - skip
        self.next_seq = first + count
        self.batches += 1
        self.messages += count
        return stream, first, count, ts, session

    def stats(self) -> dict:
        return {"batches": self.batches, "messages": self.messages, "next_seq": self.next_seq, "gaps": self.gaps,
                "missed": self.missed, "duplicates": self.duplicates, "snapshot_messages": self.snapshot_messages}


class SubscriberBase:
    """What every subscriber shares: iteration until the source has ended or `idle_timeout` seconds passed
    without data, `next_seq`, and closing as a context manager. A subscriber has `check` (a SequenceCheck),
    `idle_timeout`, `receive(timeout)` and `close()`."""

    def ended(self) -> bool:
        """True once nothing more can come (the publisher has gone and everything it sent was read)."""
        return False

    def __iter__(self):
        idle_since = time.monotonic()
        while True:
            batch = self.receive(0.1)
            if batch is not None:
                idle_since = time.monotonic()
                yield batch
            elif self.ended() or (self.idle_timeout is not None and time.monotonic() - idle_since > self.idle_timeout):
                return

    @property
    def next_seq(self) -> int:
        return self.check.next_seq

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
