"""`nats://HOST:PORT[,HOST:PORT...]/STREAM` subscriptions: the chunks a `nats:` output stored in a JetStream
stream (multicast.sinks.nats), read on any host as the batches an in-process consumer gets.

    with Subscriber("nats://10.0.0.1:4222,10.0.0.2:4222/ITCH", start_seq=1_000_000) as sub:
        for batch in sub:
            ...

- `start_seq=None` (default) reads the stream from its first chunk; `start_seq=N` from message N of the
  stream's latest session (found by a binary search over the chunks' headers, one request per step);
  `start_seq="new"` only what comes next. Then it follows live.
- JetStream's ordered consumer delivers: no acknowledgements, flow control, and when the connection or
  the server it uses fails it is recreated from the last chunk received, so a subscriber that
  reconnects resumes where it stopped. A process that restarts resumes with `start_seq=sub.next_seq`.
- Each chunk is checked by sequence number (multicast.sinks.subscriber.SequenceCheck); `latency_ns`
  holds, per chunk, the time from the handler's receive of its last message to here.
- `top_of_book=True` also subscribes to `xdpfeed.FEED.bbo.SYMBOL` for `symbols` (default: every
  symbol); `top_of_book()` returns the next events (multicast.book.storage.EVENT records) with the symbol;
  on the stream of a several-feeds handler's `[consolidated] outputs` (feed "consolidated"), the
  consolidated book's changes (multicast.book.consolidated.CEVENT).
- A thread of its own runs nats-py and hands chunks over through a bounded queue: a slow reader slows
  delivery (JetStream's flow control), it does not lose chunks.
"""

import asyncio
import logging
import queue
import time

import numpy as np

from xdpfeed.multicast.feed.consumers import MessageBatch
from xdpfeed.multicast.sinks import nats_wire as W
from xdpfeed.multicast.sinks.base import SinkError
from xdpfeed.multicast.sinks.subscriber import SequenceCheck, SubscriberBase, SubscriberError

log = logging.getLogger("xdpfeed.subscriber")

QUEUE_CHUNKS = 64


class NatsSubscriber(SubscriberBase):
    def __init__(self, uri: str, start_seq: int | str | None = None, idle_timeout: float | None = None,
                 top_of_book: bool = False, symbols=None, connect_timeout: float = 5.0):
        from xdpfeed.multicast.sinks.uri import parse

        try:
            _, target, opts = parse(uri)
            servers, self.stream_name, user = W.split_target(uri, target)
            self.connect_kw = W.connect_options(uri, servers, user, opts)
        except SinkError as e:
            raise SubscriberError(str(e)) from None
        if start_seq is not None and start_seq != "new" and (not isinstance(start_seq, int) or start_seq < 1):
            raise SubscriberError(f"{uri}: start_seq must be a sequence number (1 or more), \"new\" or None")
        self.uri, self.name = uri, uri
        self.subject = opts.get("subject")
        self.idle_timeout = idle_timeout
        self.check = SequenceCheck(uri)
        self.batch = MessageBatch(1 << 14)
        self.latency_ns: list[int] = []  # handler receive of a chunk's last message → here (the latest 100,000)
        self.start_stream_seq = 0
        self._from = start_seq if isinstance(start_seq, int) else 0  # messages before it are not wanted
        self.reconnects = 0
        self.closed = False
        self._q: queue.Queue = queue.Queue(QUEUE_CHUNKS)
        self._events: queue.Queue | None = queue.Queue(4096) if top_of_book else None
        self._symbols = symbols
        self._error: BaseException | None = None
        self._thread = W.LoopThread(f"nats sub {self.stream_name}")
        try:
            self._thread.call(self._open(start_seq, connect_timeout), connect_timeout + 30)
        except BaseException:
            self._thread.stop(getattr(self, "nc", None))
            raise

    # -- the subscription's thread -------------------------------------------------------------------------
    async def _open(self, start_seq, timeout: float) -> None:
        from nats.js.api import ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        async def reconnected():
            self.reconnects += 1
            log.info("%s: reconnected to %s", self.uri, self.nc.connected_url.netloc)

        async def error(e):  # reconnecting to a node that died; nats-py retries
            log.debug("%s: %s", self.uri, W.describe(e))

        self.nc = await W.connect(self.uri, self.connect_kw, timeout, SubscriberError, reconnected_cb=reconnected,
                                  error_cb=error)
        self.js = self.nc.jetstream(timeout=5)
        try:  # a cluster electing a leader (a node died) answers after a while: transient errors are retried
            info = await W.retry(lambda: self.js.stream_info(self.stream_name), self.uri, "stream info",
                                 SubscriberError, (NotFoundError,))
        except NotFoundError:
            raise SubscriberError(f"{self.uri}: no stream {self.stream_name} (is a feed publishing to it?)") from None
        except SubscriberError:
            raise
        except Exception as e:
            raise SubscriberError(f"{self.uri}: stream {self.stream_name}: {type(e).__name__}: {e}") from None
        self.subject = self.subject or (info.config.subjects or [""])[0]
        self.feed_name = W.feed_of(self.subject)
        if start_seq == "new":
            cfg = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        else:
            first = await self._find(info, start_seq) if start_seq is not None else info.state.first_seq
            self.start_stream_seq = max(first, 1)
            cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.start_stream_seq)
        self._sub = await W.retry(lambda: self.js.subscribe(self.subject, ordered_consumer=True, config=cfg,
                                                            cb=self._on_chunk, pending_bytes_limit=256 << 20),
                                  self.uri, "create the consumer", SubscriberError)
        if self._events is not None:
            subjects = [W.bbo_subject(self.feed_name, s) for s in self._symbols] if self._symbols else \
                [W.bbo_subject(self.feed_name, ">")]
            for subject in subjects:
                await self.nc.subscribe(subject, cb=self._on_events)

    async def _find(self, info, start_seq: int) -> int:
        """The stream sequence of the chunk that holds message `start_seq` of the latest session."""
        lo, hi = info.state.first_seq, info.state.last_seq
        if not info.state.messages:
            return lo
        session = (await self.js.get_msg(self.stream_name, seq=hi)).headers.get(W.H_SESSION, "")

        async def holds_or_after(seq: int) -> bool:
            h = (await self.js.get_msg(self.stream_name, seq=seq)).headers or {}
            return h.get(W.H_SESSION, "") == session and int(h[W.H_FIRST]) + int(h[W.H_COUNT]) - 1 >= start_seq

        if not await holds_or_after(hi):
            return hi + 1  # not published yet: from the next chunk on
        while lo < hi:
            mid = (lo + hi) // 2
            if await holds_or_after(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo

    async def _on_chunk(self, msg) -> None:
        h = msg.headers or {}
        try:
            first, count = int(h[W.H_FIRST]), int(h[W.H_COUNT])
            ts, stream = W.unpack(msg.data, count)
        except (KeyError, ValueError) as e:
            self._error = SubscriberError(f"{self.uri}: stream message is not an xdpfeed chunk: {e}")
            return
        item = (h.get(W.H_SESSION, ""), first, count, stream, ts)
        while not self.closed:
            try:
                self._q.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(0.002)

    async def _on_events(self, msg) -> None:
        from xdpfeed.multicast.book.consolidated import CEVENT
        from xdpfeed.multicast.book.storage import EVENT

        symbol = msg.subject.rsplit(".", 1)[-1]
        dtype = CEVENT if self.feed_name == "consolidated" else EVENT  # a handler of several feeds' own stream
        try:
            self._events.put_nowait((symbol, np.frombuffer(msg.data, dtype=dtype)))
        except queue.Full:
            pass  # a live ticker: the oldest reader loses, the stream has everything

    # -- the reader's side ---------------------------------------------------------------------------------
    def receive(self, timeout: float = 0.0) -> MessageBatch | None:
        """The next batch (waiting up to `timeout` seconds for one), or None."""
        end = time.monotonic() + timeout
        while True:
            if self._error is not None:
                raise self._error
            try:
                session, first, count, stream, ts = self._q.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return None
            if len(self.latency_ns) < 100_000 and count:
                self.latency_ns.append(time.time_ns() - int(ts[-1]))
            if self._from:  # the chunk that holds start_seq: what comes before it was not asked for
                if first + count <= self._from:
                    continue
                k = max(0, self._from - first)
                pos = W.offset_of(stream, k)
                stream, ts, first, count = stream[pos:], ts[k:], first + k, count - k
                self._from = 0
            got = self.check.admit(session, first, count, stream, ts)
            if got is not None:
                return self.batch.set(*got)

    def top_of_book(self, timeout: float = 0.0):
        """(symbol, events) of the next top-of-book message, or None."""
        if self._events is None:
            raise SubscriberError(f"{self.uri}: opened without top_of_book=True")
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def stats(self) -> dict:
        return {**self.check.stats(), "reconnects": self.reconnects, "start_stream_seq": self.start_stream_seq}

    # -- lifetime --------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._thread.stop(getattr(self, "nc", None))
