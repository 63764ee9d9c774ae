"""`ipc:NAME[?subscribers=8&history=16&buffer=64&chunk=65536]`: same-host publish/subscribe over shared
memory with iceoryx2, and the subscriber that reads it.

The sink publishes to two iceoryx2 publish-subscribe services, `xdpfeed/NAME/messages` and
`xdpfeed/NAME/top_of_book`, and wakes subscribers through the event service `xdpfeed/NAME/ready`. A
sample is one chunk of a delivered batch: the user header (`BatchHeader`: first sequence number, message
count, stream length, flags, publish time, session) and the payload `[stream: [uint16 length][message]...]
[padding to 8][receive time per message, int64]`; a top-of-book sample holds EVENT records. Batches are cut
into chunks of at most `chunk` stream bytes (on message boundaries) so that the shared memory, which
iceoryx2 sizes as samples × the largest sample, stays small.

Nothing a subscriber does can block or slow the handler: the service overflows safely (a subscriber's
oldest unread sample is replaced), so a slow subscriber loses samples, sees the gap in the sequence
numbers, says so and counts it; a dead one holds at most its few borrowed samples. A late subscriber gets
the last `history` samples, then live data. Subscribers read the payload in place (zero copy) for as long
as they hold the sample.
"""

import ctypes
import logging
import time

import numpy as np

from xdpfeed.capture.jit import njit_no_rc as njit
from xdpfeed.multicast.sinks.base import Sink, SinkError

log = logging.getLogger("xdpfeed.ipc")

DEFAULTS = {"subscribers": 8, "history": 16, "buffer": 64, "chunk": 1 << 16}
MIN_MESSAGE = 14  # bytes of the shortest ITCH message with its length prefix: a sample holds at most chunk / 14
F_SNAPSHOT = 1  # BatchHeader.flags: the messages are a snapshot (late join)


class BatchHeader(ctypes.Structure):
    """The user header of every sample (a C consumer declares the same struct)."""

    _fields_ = [
        ("first_seq", ctypes.c_uint64),  # sequence number of the first message (messages) / of the batch (events)
        ("count", ctypes.c_uint32),  # messages (or events) in the sample
        ("stream_bytes", ctypes.c_uint32),  # bytes of the stream before the timestamps
        ("flags", ctypes.c_uint32),
        ("kind", ctypes.c_uint32),  # 0 messages, 1 top-of-book events
        ("publish_ns", ctypes.c_int64),  # CLOCK_REALTIME when published
        ("session", ctypes.c_char * 16),  # MoldUDP64 session, NUL-padded
    ]

    @staticmethod
    def type_name() -> str:
        """The name iceoryx2 checks when a process opens the service (examples/ipc_consumer.c uses it too)."""
        return "xdpfeed::BatchHeader"


KIND_MESSAGES, KIND_EVENTS = 0, 1


def _iox():
    try:
        import iceoryx2 as iox
    except ImportError:
        raise SinkError("ipc: needs the iceoryx2 package (pip install iceoryx2)") from None
    iox.set_log_level_from_env_or(iox.LogLevel.Error)
    return iox


def service_names(name: str) -> tuple[str, str, str]:
    return f"xdpfeed/{name}/messages", f"xdpfeed/{name}/top_of_book", f"xdpfeed/{name}/ready"


def _pubsub(iox, node, service: str, opts: dict, create: bool):
    b = (node.service_builder(iox.ServiceName.new(service))
         .publish_subscribe(iox.Slice[ctypes.c_uint8]).user_header(BatchHeader))
    if not create:
        return b.open()
    return (b.max_publishers(1).max_subscribers(opts["subscribers"]).history_size(opts["history"])
            .subscriber_max_buffer_size(opts["buffer"]).subscriber_max_borrowed_samples(4)
            .enable_safe_overflow(True).open_or_create())


def as_array(ptr: int, nbytes: int) -> np.ndarray:
    """A uint8 numpy view of nbytes at ptr (no copy)."""
    if nbytes == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))


class IpcSink(Sink):
    scheme = "ipc"

    def __init__(self, uri: str, name: str, **opts):
        super().__init__(uri)
        iox = _iox()
        self.opts = {**DEFAULTS, **opts}
        if not name or "/" in name:
            raise SinkError(f"{uri}: the name must be non-empty and without '/', not {name!r}")
        for k, v in self.opts.items():
            if not isinstance(v, int) or v < (0 if k == "history" else 1):
                raise SinkError(f"{uri}: {k} must be a positive integer, not {v!r}")
        self.service = name
        msgs, events, ready = service_names(name)
        try:
            self._node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
            self._msgs = _pubsub(iox, self._node, msgs, self.opts, create=True)
            self._events = _pubsub(iox, self._node, events, self.opts, create=True)
            chunk = self.opts["chunk"]
            slice_len = chunk + 8 + 8 * (chunk // MIN_MESSAGE)  # the stream, padding, a timestamp per message
            self._pub = (self._msgs.publisher_builder().initial_max_slice_len(slice_len)
                         .allocation_strategy(iox.AllocationStrategy.PowerOfTwo).create())
            self._pub_events = (self._events.publisher_builder().initial_max_slice_len(1 << 16)
                                .allocation_strategy(iox.AllocationStrategy.PowerOfTwo).create())
            ev = (self._node.service_builder(iox.ServiceName.new(ready)).event()
                  .max_notifiers(1).max_listeners(self.opts["subscribers"] + 1).open_or_create())
            self._notifier = ev.notifier_builder().create()
        except SinkError:
            raise
        except Exception as e:  # iceoryx2 raises its own exception types
            raise SinkError(f"{uri}: cannot create the iceoryx2 service: {type(e).__name__}: {e}") from None
        self._ev_event = None
        self._cut = np.zeros(0, dtype=np.int64)
        self.samples = 0

    def poll(self) -> None:
        """Serve subscribers that connected since the last sample (their history) even when nothing is sent."""
        self._pub.update_connections()
        self._pub_events.update_connections()

    @property
    def subscribers(self) -> int:
        """Subscriber processes connected now (0 once closed)."""
        return int(self._msgs.dynamic_config.number_of_subscribers) if self._msgs is not None else 0

    def _publish(self, pub, kind, first_seq, count, stream, ts, session, snapshot=False) -> None:
        nbytes = stream.size
        pad = (-nbytes) % 8
        total = nbytes + pad + 8 * (0 if ts is None else count)
        sample = pub.loan_slice_uninit(total)
        h = ctypes.cast(sample.user_header_ptr, ctypes.POINTER(BatchHeader)).contents
        h.first_seq, h.count, h.stream_bytes, h.kind = first_seq, count, nbytes, kind
        h.flags = F_SNAPSHOT if snapshot else 0
        h.session = session
        dst = as_array(sample.payload_ptr, total)
        dst[:nbytes] = stream
        if ts is not None:
            dst[nbytes + pad:].view(np.int64)[:] = ts
        h.publish_ns = time.time_ns()
        sample.assume_init().send()
        self.samples += 1

    def on_messages(self, batch) -> None:
        session = batch.session.encode("ascii", "replace")[:16]
        stream, ts, first = batch.stream, batch.timestamp_ns, batch.first_seq
        chunk = self.opts["chunk"]
        if stream.size <= chunk and batch.count <= chunk // MIN_MESSAGE:
            self._publish(self._pub, KIND_MESSAGES, first, batch.count, stream, ts, session, batch.snapshot)
        else:  # cut on message boundaries
            pos = k = 0
            while pos < stream.size:
                end, n = (int(x) for x in _chunk_end(stream, pos, chunk, chunk // MIN_MESSAGE))
                self._publish(self._pub, KIND_MESSAGES, first + k, n, stream[pos:end], ts[k:k + n], session,
                              batch.snapshot)
                pos, k = end, k + n
        self._notifier.notify()
        self.count(batch.count, stream.size)

    def on_top_of_book(self, events) -> None:
        raw = np.ascontiguousarray(events).view(np.uint8)
        per = events.dtype.itemsize
        most = max(1, (1 << 16) // per)
        for i in range(0, events.size, most):
            part = raw[i * per:(i + most) * per]
            self._publish(self._pub_events, KIND_EVENTS, int(events["seq"][i]), part.size // per, part, None, b"")
        self._notifier.notify()

    def stats(self) -> dict:
        d = super().stats()
        d.update(samples=self.samples, subscribers=self.subscribers)
        return d

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        for port in (self._notifier, self._pub_events, self._pub):
            port.delete()
        self._events = self._msgs = self._node = None  # the services and the node go with their last reference


@njit(cache=True)
def _chunk_end(stream, pos, limit, most):
    """(end, messages) of the longest run of whole messages from pos within `limit` bytes and `most` messages
    (at least one)."""
    end, n = pos, 0
    while end + 2 <= stream.size:
        ln = 2 + ((np.int64(stream[end]) << 8) | np.int64(stream[end + 1]))
        if n and (end + ln - pos > limit or n >= most):
            break
        end += ln
        n += 1
    return end, n
