"""`nats://HOST:PORT[,HOST:PORT...]/STREAM[?...]`: the delivered stream published to a NATS JetStream
stream, in chunks, for consumers on other hosts; two handlers publishing the same feed to the same stream
act as one.

The feed's thread never waits for NATS. `on_messages` copies the batch (one memcpy of the stream and of
its receive times) and returns; what is not yet confirmed in the stream is bounded in bytes (`buffer_mb`,
default 256): past the bound a batch is dropped and counted (`dropped_messages`,
`xdpfeed_output_dropped_messages_total`, logged once per episode). A thread of its own runs nats-py: it
joins waiting batches into chunks of up to `chunk` messages (default 16384) and 600 KB, publishes them,
reconnects to another node when one dies (nats-py, every server of the URI), and keeps every chunk until
JetStream confirms it is in the stream.

Two handlers, one stream: optimistic concurrency on the stream's position. Every chunk is published with
`Nats-Expected-Last-Subject-Sequence` = the stream sequence of the stream's last chunk, a chunk whose
content (session, first sequence, count) this publisher knows exactly: it stored it (its acknowledgement
says where), or it read it. JetStream stores the chunk only if that is still the last one, so the stream
can only hold the feed contiguously, each message once. One chunk is in flight at a time (stop and wait,
as Kafka's idempotent producer with one request in flight): while it travels the next batches join the
next chunk, so chunks grow with the rate and one round trip carries them (600 KB per round trip of
~1 ms on a local R3 stream is over 15M messages/s). When the other handler stored first, JetStream refuses
("wrong last sequence"); the loser reads the stream's last chunk, drops or trims what the stream already
holds, and publishes what follows it. A chunk whose acknowledgement is lost (timeout, a node died) is
never resent blindly: the publisher reads the stream's last chunk to learn whether it was stored.
Whichever handler is ahead stores; the other follows a round trip behind, holding everything not yet
confirmed, so when one dies the other carries on from the stream's last chunk with no gap, and one that
comes back trims the day it replays down to what the stream lacks.

Why not the other JetStream mechanisms (measured on nats-server 2.15, R3): de-duplication by
`Nats-Msg-Id` needs both handlers to cut identical chunks, which a live feed's timing does not give, and
holds only within the duplicate window; `Nats-Expected-Last-Msg-Id` chains would allow several chunks in
flight, but in a clustered stream one refused chain left the stream answering nothing ("JetStream system
temporarily unavailable") until restarted; a leader lease in a KV bucket adds a failover delay of the
lease's length and still needs this fence against the old leader's chunks in flight. Predicting the
positions of several chunks in flight is not safe either: a chunk expecting position P+1 would be stored
after the other handler's chunk at P+1 whatever that one holds.

A gap the publisher cannot fill (it dropped batches past its bound, or started late) is waited on for
`gap_wait` seconds (the other handler may fill it), then published over and counted (`gaps`).

Top of book: events of the chunks this handler stored go to `xdpfeed.FEED.bbo.SYMBOL` on core NATS, one
message per symbol per chunk (records of multicast.book.storage.EVENT), after JetStream confirmed the chunk.
They are a live ticker, not stored; a consumer that needs every change rebuilds the book from the stream.

A fatal refusal (the stream deleted, a chunk larger than the server's max_payload, permissions) fails the
sink: the Feed detaches it and `xdpfeed run` exits 3. Credentials and the URI: multicast.sinks.nats_wire.
"""

import asyncio
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque

import numpy as np

from xdpfeed.capture.byteorder import be16, be64
from xdpfeed.capture.jit import njit_no_rc as njit
from xdpfeed.multicast.itch import offsets as O
from xdpfeed.multicast.sinks import nats_wire as W
from xdpfeed.multicast.sinks.base import Sink, SinkError

log = logging.getLogger("xdpfeed.nats")

CHUNK_BYTES = 600 * 1024  # with 8 bytes of timestamp per message, below NATS' default max_payload (1 MB)
CONFLICTS = (10070, 10071)  # wrong last msg ID, wrong last sequence
STREAM_NOT_FOUND = 10059
STREAM_NAME_IN_USE = 10058


@njit(cache=True, nogil=True)
def stock_directory(stream, symbols):
    """symbols[locate] = the Stock Directory's symbol (big-endian integer) for every 'R' in the stream."""
    p = 0
    while p + 2 <= stream.size:
        n = be16(stream, p)
        o = p + 2
        if n >= O.R.length and stream[o] == 82:  # 'R'
            symbols[be16(stream, o + O.R.stock_locate)] = be64(stream, o + O.R.stock)
        p = o + n


class Chunk:
    """Consecutive messages of one session, in parts (the batches they came in) until they are sent."""

    __slots__ = ("session", "first", "count", "nbytes", "parts", "events")

    def __init__(self, session: str, first: int, count: int, stream: np.ndarray, ts: np.ndarray):
        self.session, self.first, self.count, self.nbytes = session, first, count, stream.size
        self.parts = [(stream, ts)]
        self.events: list = []

    @property
    def end(self) -> int:
        return self.first + self.count - 1

    @property
    def held(self) -> int:
        """Bytes it holds (the buffer's bound counts them)."""
        return self.nbytes + 8 * self.count

    def extend(self, stream: np.ndarray, ts: np.ndarray) -> None:
        self.parts.append((stream, ts))
        self.count += ts.size
        self.nbytes += stream.size

    def payload(self) -> bytes:
        return b"".join([p[1].astype("<i8", copy=False).tobytes() for p in self.parts]
                        + [p[0].tobytes() for p in self.parts])

    def drop_first(self, k: int) -> None:
        """Forget the first k messages (the stream holds them)."""
        if len(self.parts) > 1:
            self.parts = [(np.concatenate([p[0] for p in self.parts]), np.concatenate([p[1] for p in self.parts]))]
        stream, ts = self.parts[0]
        pos = W.offset_of(stream, k)
        self.parts = [(stream[pos:], ts[k:])]
        self.first, self.count, self.nbytes = self.first + k, self.count - k, stream.size - pos


class NatsSink(Sink):
    scheme = "nats"

    def __init__(self, uri: str, target: str, feed: str = "feed", subject: str | None = None,
                 replicas: int | None = None, chunk: int = 16384, buffer_mb: int = 256, ack_timeout: float = 2.0,
                 connect_timeout: float = 5.0, max_age: float = 0.0, gap_wait: float = 1.0, bbo: str = "*",
                 close_timeout: float = 10.0, **credentials):
        super().__init__(uri)
        try:
            import nats  # noqa: F401
        except ImportError:
            raise SinkError(f"{uri}: needs nats-py (pip install nats-py)") from None
        servers, self.stream_name, user = W.split_target(uri, target)
        for key, value in (("chunk", chunk), ("buffer_mb", buffer_mb)):
            if value < 1:
                raise SinkError(f"{uri}: {key} must be at least 1, not {value}")
        self.feed_name = feed
        self.subject = subject or W.messages_subject(feed)
        self.replicas = replicas if replicas is not None else min(3, len(servers))
        self.chunk, self.bound = chunk, buffer_mb << 20
        self.ack_timeout, self.gap_wait, self.max_age = ack_timeout, gap_wait, max_age
        self.close_timeout = close_timeout
        self.connect_kw = W.connect_options(uri, servers, user, credentials)
        self.publisher = f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(3)}"
        # top of book: every symbol ("*"), none ("none"), or these (comma-separated)
        self.bbo_symbols = None if bbo == "*" else set() if bbo == "none" else set(bbo.split(","))
        # counts (the publisher's thread writes them; the feed and metrics read them)
        self.stored = self.twin = self.dropped_messages = self.dropped_batches = 0
        self.conflicts = self.retries = self.reconnects = self.gaps = self.gap_messages = 0
        self.unpublished = 0  # messages still unconfirmed at close
        self.superseded = 0  # messages of a session the stream had moved past (abandoned, as the sequencer does)
        self.bbo_messages = 0
        self.snapshot_messages = 0  # messages of a GLIMPSE snapshot, not published (docs/snapshot.md)
        self.connected = False
        # batches handed over by the feed, and what all unconfirmed messages hold (bounded)
        self._queue: deque = deque()
        self._held = 0
        self._lock = threading.Lock()
        self._dropping = False
        self._error: BaseException | None = None
        self._closing = False
        # the publisher's side (its thread only)
        self._chunks: deque[Chunk] = deque()
        self._sessions: list[str] = []  # in the order this feed saw them
        self._stream_sessions: set[str] = set()  # sessions this publisher has seen the stream end in
        self._symbols = np.zeros(65536, dtype=np.uint64)
        self._last_sseq = 0  # stream sequence of the stream's last chunk, whose content is _stored_end
        self._stored_end: tuple[str, int] | None = None  # (session, last sequence) the stream holds
        self._stored_last: tuple[str, int, int] | None = None  # its last chunk's (publisher, first, count)
        self._gap_since: float | None = None
        self._recent: deque = deque(maxlen=64)  # (session, first, end, ours) of the latest chunks confirmed
        self._bbo: list = []  # (session, events, first, end) to go out
        self._cbbo: list = []  # consolidated events to go out
        self.consolidated = None  # set by a handler of several feeds: the ConsolidatedBook (symbol names)
        self._wake: asyncio.Event | None = None
        empty = np.zeros(0, dtype=np.uint8)  # compiled code loaded now, not on the first batch
        W.cut(empty, 0, 1, 1), W.offset_of(empty, 0), stock_directory(empty, self._symbols)
        self._thread = W.LoopThread(f"nats {self.stream_name}")
        try:
            self._thread.call(self._open(connect_timeout), connect_timeout + 30)
        except BaseException:
            self.closed = True
            self._thread.stop(getattr(self, "nc", None))
            raise
        self._task = self._thread.submit(self._publish_loop())

    # -- the feed's side ----------------------------------------------------------------------------
    def on_messages(self, batch) -> None:
        if self._error is not None:
            raise self._error
        if batch.snapshot:  # the stream holds the day's messages by sequence; a snapshot has none (counted)
            self.snapshot_messages += batch.count
            return
        size = batch.stream.size + 8 * batch.count
        with self._lock:
            if self._held + size > self.bound:
                self.dropped_batches += 1
                self.dropped_messages += batch.count
                if not self._dropping:
                    self._dropping = True
                    log.error("%s: %d MB wait for NATS: dropping batches from sequence %d (counted)", self.name,
                              self.bound >> 20, batch.first_seq)
                return
            if self._dropping:
                self._dropping = False
                log.warning("%s: publishing again from sequence %d; %d messages dropped so far", self.name,
                            batch.first_seq, self.dropped_messages)
            self._queue.append(("m", batch.session, batch.first_seq, batch.count, batch.stream.copy(),
                                batch.timestamp_ns.copy()))
            self._held += size
        self._thread.wake(self._wake.set)

    def on_top_of_book(self, events) -> None:
        if len(events) and self.bbo_symbols != set():
            with self._lock:
                self._queue.append(("e", np.array(events, copy=True)))

    def on_consolidated(self, events) -> None:
        """The consolidated book's changes (a handler of several feeds): on core NATS at once, one message
        per symbol per batch on `xdpfeed.consolidated.bbo.SYMBOL` (CEVENT records)."""
        if len(events) and self.bbo_symbols != set():
            with self._lock:
                self._queue.append(("c", np.array(events, copy=True)))
            self._thread.wake(self._wake.set)

    # -- connection ------------------------------------------------------------------------------------
    async def _open(self, timeout: float) -> None:
        from nats.js.api import StreamConfig
        from nats.js.errors import APIError, NotFoundError

        self._wake = asyncio.Event()

        async def disconnected():
            self.connected = False
            if not self.closed:
                log.warning("%s: disconnected from NATS", self.name)

        async def reconnected():
            self.connected = True
            self.reconnects += 1
            log.warning("%s: reconnected to %s", self.name, self.nc.connected_url.netloc)

        async def error(e):
            log.debug("%s: %s", self.name, e)

        self.nc = await W.connect(self.uri, self.connect_kw, timeout, disconnected_cb=disconnected,
                                  reconnected_cb=reconnected, error_cb=error,
                                  name=f"xdpfeed {self.feed_name} {self.publisher}")
        self.connected = True
        self.js = self.nc.jetstream(timeout=self.ack_timeout)
        try:
            info = await self._retry(lambda: self.js.stream_info(self.stream_name), "stream info", NotFoundError)
            subjects = info.config.subjects or []
            if subjects != [self.subject]:
                raise SinkError(f"{self.uri}: stream {self.stream_name} holds {subjects}, not only {self.subject}: "
                                "the chunks need a stream of their own")
        except NotFoundError:
            cfg = StreamConfig(name=self.stream_name, subjects=[self.subject], num_replicas=self.replicas,
                               allow_direct=True, max_age=self.max_age or None,
                               description=f"xdpfeed {self.feed_name}: delivered ITCH in chunks")
            try:
                await self._retry(lambda: self.js.add_stream(cfg), "create stream")
            except APIError as e:
                if e.err_code != STREAM_NAME_IN_USE:  # in use: the other handler created it meanwhile
                    raise SinkError(f"{self.uri}: cannot create stream {self.stream_name}: {e.description}") from None
            log.info("%s: created stream %s (%s, R%d)", self.name, self.stream_name, self.subject, self.replicas)
        except APIError as e:
            raise SinkError(f"{self.uri}: {e.description}") from None
        await self._retry(self._resync, "read the stream's last chunk")

    async def _retry(self, call, what: str, *passthrough):
        return await W.retry(call, self.uri, what, SinkError, passthrough)

    # -- where the stream is ---------------------------------------------------------------------------
    async def _resync(self) -> None:
        """Read the stream's last chunk, and drop or trim what it already holds."""
        from nats.js.errors import NotFoundError

        try:
            last = await self.js.get_last_msg(self.stream_name, self.subject)
        except NotFoundError:
            self._last_sseq, self._stored_end = 0, None
            return
        h = last.headers or {}
        try:
            end = int(h[W.H_FIRST]) + int(h[W.H_COUNT]) - 1
        except (KeyError, ValueError):
            raise SinkError(f"{self.uri}: the stream's last message ({last.seq}) is not an xdpfeed chunk") from None
        self._last_sseq, self._stored_end = last.seq, (h.get(W.H_SESSION, ""), end)
        # who stored that last chunk: ours when its acknowledgement was lost (a leader that died meanwhile)
        self._stored_last = (h.get(W.H_PUBLISHER, ""), int(h[W.H_FIRST]), int(h[W.H_COUNT]))
        self._stream_sessions.add(self._stored_end[0])
        self._trim()

    def _trim(self) -> None:
        """Drop the chunks the stream already holds (stored by the other handler, or by an attempt of ours whose
        acknowledgement was lost); cut the one it holds in part."""
        session, end = self._stored_end
        while self._chunks:
            c = self._chunks[0]
            if c.session != session:
                if c.session in self._stream_sessions and session not in self._sessions[
                        : self._sessions.index(c.session)]:
                    # the stream was in our session and has moved on to a later one (the other handler switched
                    # first and abandoned the rest of this session, as the sequencer does): these stay out
                    c = self._chunks.popleft()
                    self.superseded += c.count
                    self._release(c.held)
                    log.warning("%s: the stream moved on to session %r: %d messages of session %r not published",
                                self.name, session, c.count, c.session)
                    continue
                return  # the stream's session is older than ours (an earlier one of ours, or one we never saw)
            elif c.end <= end:
                ours = self._stored_last == (self.publisher, c.first, c.count) and c.end == end
                self._confirmed(self._chunks.popleft(), ours=ours, sseq=self._last_sseq)
            elif c.first <= end:
                k, held, nbytes = end - c.first + 1, c.held, c.nbytes
                c.drop_first(k)
                self._release(held - c.held)
                self.twin += k
                self.messages += k
                self.bytes += nbytes - c.nbytes
                return
            else:
                return

    def _release(self, nbytes: int) -> None:
        with self._lock:
            self._held -= nbytes

    def _confirmed(self, c: Chunk, ours: bool, sseq: int = 0) -> None:
        """The stream holds chunk c: stored by this handler at stream sequence `sseq` (ours), or already there."""
        if ours:
            self.stored += c.count
            self._stored_end, self._last_sseq = (c.session, c.end), sseq
            self._stored_last = (self.publisher, c.first, c.count)
            self._stream_sessions.add(c.session)
        else:
            self.twin += c.count
        self.count(c.count, c.nbytes)
        self._release(c.held)
        self._recent.append((c.session, c.first, c.end, ours))
        if ours and c.events:
            self._bbo.append((c.session, np.concatenate(c.events), c.first, c.end))

    # -- chunks from the queue ---------------------------------------------------------------------------
    def _take(self) -> None:
        """Batches handed over into chunks: consecutive messages joined, up to `chunk` messages and 600 KB."""
        while True:
            with self._lock:
                if not self._queue:
                    return
                item = self._queue.popleft()
            if item[0] == "e":
                self._events(item[1])
                continue
            if item[0] == "c":
                self._cbbo.append(item[1])
                continue
            _, session, first, count, stream, ts = item
            if not self._sessions or self._sessions[-1] != session:
                self._sessions.append(session)
            stock_directory(stream, self._symbols)
            pos = k = 0
            while k < count:
                tail = self._chunks[-1] if len(self._chunks) > 1 else None  # the head may be in flight
                if tail is not None and tail.session == session and tail.end + 1 == first + k \
                        and tail.count < self.chunk and tail.nbytes < CHUNK_BYTES:
                    end, n = W.cut(stream, pos, self.chunk - tail.count, CHUNK_BYTES - tail.nbytes)
                    if n and tail.nbytes + (end - pos) <= CHUNK_BYTES:
                        tail.extend(stream[pos:end], ts[k : k + n])
                        pos, k = end, k + n
                        continue
                end, n = W.cut(stream, pos, self.chunk, CHUNK_BYTES)
                self._chunks.append(Chunk(session, first + k, n, stream[pos:end], ts[k : k + n]))
                pos, k = end, k + n

    def _events(self, events: np.ndarray) -> None:
        """Top-of-book events wait with the chunks that hold the messages that caused them; those of a chunk
        this handler already stored go out at once, those of a chunk the other handler stored do not."""
        lo, hi = int(events["seq"][0]), int(events["seq"][-1])
        for c in reversed(self._chunks):
            if c.end < lo:
                break
            if c.first <= hi:
                c.events.append(events)
        for session, first, end, ours in self._recent:
            if ours and first <= hi and end >= lo:
                self._bbo.append((session, events, first, end))

    async def _publish_bbo(self) -> None:
        """Top-of-book events of the chunks this handler stored, one core NATS message per symbol and chunk."""
        work, self._bbo = self._bbo, []
        for session, ev, first, end in work:
            ev = ev[(ev["seq"] >= first) & (ev["seq"] <= end)]
            if not ev.size:
                continue
            headers = {W.H_FEED: self.feed_name, W.H_SESSION: session}
            ev = ev[np.argsort(ev["locate"], kind="stable")]
            locs, starts = np.unique(ev["locate"], return_index=True)
            for loc, a, b in zip(locs.tolist(), starts.tolist(), [*starts[1:].tolist(), ev.size], strict=True):
                sym = int(self._symbols[loc]).to_bytes(8, "big").rstrip(b" \x00").decode("latin-1") or f"_{loc}"
                if self.bbo_symbols is None or sym in self.bbo_symbols:
                    await self.nc.publish(W.bbo_subject(self.feed_name, sym), ev[a:b].tobytes(), headers=headers)
                    self.bbo_messages += 1

    async def _publish_consolidated(self) -> None:
        work, self._cbbo = self._cbbo, []
        names = self.consolidated.symbols if self.consolidated is not None else []
        for ev in work:
            ev = ev[np.argsort(ev["symbol"], kind="stable")]
            ids, starts = np.unique(ev["symbol"], return_index=True)
            for sid, a, b in zip(ids.tolist(), starts.tolist(), [*starts[1:].tolist(), ev.size], strict=True):
                sym = names[sid] if sid < len(names) else f"_{sid}"
                if self.bbo_symbols is None or sym in self.bbo_symbols:
                    await self.nc.publish(W.bbo_subject(self.feed_name, sym), ev[a:b].tobytes(),
                                          headers={W.H_FEED: self.feed_name})
                    self.bbo_messages += 1

    # -- the publisher ---------------------------------------------------------------------------------
    async def _publish_loop(self) -> None:
        try:
            await self._run()
        except SinkError as e:
            self._error = e
            log.error("%s", e)
        except Exception as e:  # a bug or a refusal we cannot go on after: the Feed detaches the sink
            self._error = SinkError(f"{self.uri}: {type(e).__name__}: {e}")
            log.exception("%s: publisher failed", self.name)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            self._take()
            if self._stored_end is not None:
                self._trim()  # batches that came after a resync may hold what the stream has already
            if self._bbo:
                await self._publish_bbo()
            if self._cbbo:
                await self._publish_consolidated()
            if not self._chunks:
                if self._closing and not self._queue_nonempty():
                    return
                self._wake.clear()
                if not self._queue_nonempty():
                    try:
                        await asyncio.wait_for(self._wake.wait(), 0.2)
                    except TimeoutError:
                        pass
                continue
            if self._gap_blocks():
                await asyncio.sleep(0.05)
            elif await self._publish_head():
                backoff = 0.05
                continue
            # refused, unanswered, or a gap to wait on: where is the stream now?
            try:
                await self._resync()
            except SinkError:
                raise
            except Exception as e:
                if not W.transient(e):
                    raise
                self.retries += 1
                log.debug("%s: reading the stream's last chunk: %s", self.name, W.describe(e))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    def _queue_nonempty(self) -> bool:
        with self._lock:
            return bool(self._queue)

    async def _publish_head(self) -> bool:
        """Publish the first chunk on the condition that the stream's last is the one we know; True if stored."""
        from nats.js.errors import APIError

        c = self._chunks[0]
        headers = {W.H_FEED: self.feed_name, W.H_SESSION: c.session, W.H_FIRST: str(c.first),
                   W.H_COUNT: str(c.count), W.H_PUBLISHER: self.publisher,
                   W.H_EXPECTED_LAST_SUBJECT_SEQ: str(self._last_sseq)}
        try:
            ack = await self.js.publish(self.subject, c.payload(), timeout=self.ack_timeout, headers=headers)
        except APIError as e:
            if e.err_code in CONFLICTS or "wrong last sequence" in (e.description or ""):
                self.conflicts += 1
                log.debug("%s: chunk [%d, %d] refused: %s", self.name, c.first, c.end, e.description)
                return False
            if e.err_code == STREAM_NOT_FOUND:
                raise SinkError(f"{self.uri}: stream {self.stream_name} is gone") from None
            if not W.transient(e):
                raise SinkError(f"{self.uri}: JetStream refused chunk [{c.first}, {c.end}]: {e.description}") from None
            self.retries += 1
            return False
        except Exception as e:
            if not W.transient(e):
                raise
            self.retries += 1
            log.info("%s: chunk [%d, %d] not acknowledged (%s): reading the stream", self.name, c.first, c.end,
                     W.describe(e))
            return False
        self._confirmed(self._chunks.popleft(), ours=True, sseq=ack.seq)
        return True

    def _gap_blocks(self) -> bool:
        """The first chunk starts past what the stream holds: wait gap_wait seconds for the other handler to
        fill it, then publish over it (counted)."""
        c = self._chunks[0]
        if self._stored_end is None or c.session != self._stored_end[0] or c.first <= self._stored_end[1] + 1:
            self._gap_since = None
            return False
        end, now = self._stored_end[1], time.monotonic()
        if self._gap_since is None:
            self._gap_since = now
            log.warning("%s: the stream ends at %d and this handler has from %d: waiting %.1f s for the other handler",
                        self.name, end, c.first, self.gap_wait)
        if now - self._gap_since < self.gap_wait:
            return True
        self.gaps += 1
        self.gap_messages += c.first - end - 1
        log.error("%s: publishing over a gap of %d messages [%d, %d) that no handler delivered", self.name,
                  c.first - end - 1, end + 1, c.first)
        self._gap_since = None
        self._stored_end = (c.session, c.first - 1)  # published over: the next chunks follow this one
        return False

    # -- counts and lifetime -----------------------------------------------------------------------------
    @property
    def pending_messages(self) -> int:
        with self._lock:
            queued = sum(it[3] for it in self._queue if it[0] == "m")
        return queued + sum(c.count for c in list(self._chunks))

    def stats(self) -> dict:
        d = super().stats()
        d.update(stored=self.stored, twin=self.twin, dropped_messages=self.dropped_messages,
                 dropped_batches=self.dropped_batches, pending_messages=self.pending_messages,
                 conflicts=self.conflicts, retries=self.retries, reconnects=self.reconnects, gaps=self.gaps,
                 gap_messages=self.gap_messages, unpublished=self.unpublished, superseded=self.superseded,
                 connected=self.connected,
                 bbo_messages=self.bbo_messages, snapshot_messages=self.snapshot_messages,
                 stream=self.stream_name, subject=self.subject,
                 publisher=self.publisher)
        return d

    def close(self, timeout: float | None = None) -> None:
        """Publish what is left (up to `timeout`, by default close_timeout, seconds), then close the connection.
        What could not be published is counted in `unpublished` and said in one line."""
        if self.closed:
            return
        timeout = self.close_timeout if timeout is None else timeout
        super().close()
        self._closing = True
        try:
            self._thread.wake(self._wake.set)
            self._task.result(timeout)
        except Exception:  # timeout, or the publisher failed (already in self._error)
            pass
        left = self.pending_messages
        if left:
            self.unpublished = left
            log.error("%s: %d messages not confirmed in the stream at close", self.name, left)
        self._thread.stop(getattr(self, "nc", None), drain=True)
        if self._error is not None and not self.failed:
            self.failed = str(self._error)
