"""`ipc:NAME` subscriptions: a process on this host reading the iceoryx2 services of an `ipc:` output
(multicast.sinks.ipc). The batch views the shared memory in place and stays valid until the next one is
taken. A subscriber that fell behind (its oldest unread samples were overwritten) or joined late sees the
gap by sequence number, logs it once and counts it; a late joiner's history that overlaps is skipped and
counted (multicast.sinks.subscriber.SequenceCheck). Iteration ends when the publisher has gone (its last
samples read first) or after `idle_timeout` seconds without data.
"""

import ctypes
import time

import numpy as np

from xdpfeed.multicast.feed.consumers import MessageBatch
from xdpfeed.multicast.sinks import ipc
from xdpfeed.multicast.sinks.subscriber import SequenceCheck, SubscriberBase, SubscriberError


class IpcSubscriber(SubscriberBase):
    """Reads `xdpfeed/NAME/messages` (and with top_of_book=True the events) of an ipc: sink."""

    def __init__(self, name: str, idle_timeout: float | None = None, top_of_book: bool = False,
                 buffer: int | None = None, spin: bool = False):
        """spin: poll without sleeping while waiting (the lowest latency, a whole core); otherwise wait on the
        publisher's notification."""
        iox = ipc._iox()
        self.name, self.idle_timeout = name, idle_timeout
        msgs, events, ready = ipc.service_names(name)
        try:
            self._node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
            self._node.try_cleanup_dead_nodes()  # what a killed publisher left behind
            self._msgs = ipc._pubsub(iox, self._node, msgs, {}, create=False)
            b = self._msgs.subscriber_builder()
            if buffer:
                b = b.buffer_size(buffer)
            self._sub = b.create()
            self._events = None
            if top_of_book:
                self._events = ipc._pubsub(iox, self._node, events, {}, create=False).subscriber_builder().create()
            ev = self._node.service_builder(iox.ServiceName.new(ready)).event().open()
            self._listener = ev.listener_builder().create()
        except Exception as e:
            raise SubscriberError(f"ipc:{name}: no such service (is a feed publishing to it?): "
                                  f"{type(e).__name__}: {e}") from None
        self._iox = iox
        self.spin = spin
        self._sample = None
        self._event_sample = None
        self.batch = MessageBatch(1 << 16)
        self.check = SequenceCheck(f"ipc:{name}")
        self.latency_ns: list[int] = []  # publish → receive, per sample (the latest 100,000)
        self.closed = False

    # -- receiving --------------------------------------------------------------------------------
    def _take(self, sub):
        """The next sample of `sub`, or None."""
        return sub.receive()

    def receive(self, timeout: float = 0.0) -> MessageBatch | None:
        """The next batch (waiting up to `timeout` seconds for one), or None."""
        end = time.monotonic() + timeout
        while True:
            self._sample = None  # the previous batch's memory goes back to the publisher
            sample = self._take(self._sub)
            if sample is not None:
                batch = self._batch(sample)
                if batch is not None:
                    return batch
                continue
            left = end - time.monotonic()
            if left <= 0:
                return None
            if not self.spin:
                self._listener.timed_wait(self._iox.Duration.from_secs_f64(min(left, 0.1)))

    def _batch(self, sample) -> MessageBatch | None:
        h = ctypes.cast(sample.user_header_ptr, ctypes.POINTER(ipc.BatchHeader)).contents
        now = time.time_ns()
        if len(self.latency_ns) < 100_000:
            self.latency_ns.append(now - h.publish_ns)
        first, count, nbytes = int(h.first_seq), int(h.count), int(h.stream_bytes)
        payload = ipc.as_array(sample.payload_ptr, nbytes + ((-nbytes) % 8) + 8 * count)
        stream = payload[:nbytes]
        ts = payload[nbytes + (-nbytes) % 8:].view(np.int64)[:count]
        snapshot = bool(h.flags & ipc.F_SNAPSHOT)
        got = self.check.admit(h.session.decode("ascii", "replace"), first, count, stream, ts, snapshot)
        if got is None:
            return None
        self._sample = sample  # keeps the shared memory mapped while the batch is used
        return self.batch.set(*got, snapshot)

    def top_of_book(self, timeout: float = 0.0) -> np.ndarray | None:
        """The next sample of top-of-book events (multicast.book.storage.EVENT records), or None (it does not
        wait: `timeout` is for the signature every subscriber shares)."""
        from xdpfeed.multicast.book.storage import EVENT

        if self._events is None:
            raise SubscriberError(f"ipc:{self.name}: opened without top_of_book=True")
        self._event_sample = None
        sample = self._events.receive()
        if sample is None:
            return None
        h = ctypes.cast(sample.user_header_ptr, ctypes.POINTER(ipc.BatchHeader)).contents
        self._event_sample = sample
        return ipc.as_array(sample.payload_ptr, int(h.stream_bytes)).view(EVENT)

    @property
    def publishers(self) -> int:
        return int(self._msgs.dynamic_config.number_of_publishers)

    def ended(self) -> bool:
        return self.publishers == 0 and not self._sub.has_samples()

    def stats(self) -> dict:
        return self.check.stats()

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._sample = self._event_sample = None
        for port in (self._listener, self._events, self._sub):
            if port is not None:
                port.delete()
        self._events = self._msgs = self._node = None
