"""A sink's work on a thread of its own, so that encoding (DBN conversion, Parquet columns and compression)
runs on another core instead of in the feed's loop.

`Threaded(sink)` copies each batch (the stream and its receive times: a memcpy) and each top-of-book array
into a bounded queue that a worker thread drains into the wrapped sink; the compiled work it calls releases
the GIL. When the queue is full the feed waits (counted in `waits`: the sink cannot keep up), it never drops.
An error on the worker is raised from the next call on the feed's side, so the Feed detaches the sink as it
would any failing sink; `close()` drains the queue, joins the worker and closes the sink.
"""

import queue
import threading

import numpy as np

from xdpfeed.multicast.feed.consumers import MessageBatch

DEPTH = 8  # batches queued before the feed waits


class Threaded:
    def __init__(self, sink, depth: int = DEPTH):
        self.sink = sink
        self.name, self.uri, self.scheme, self.on_error = sink.name, sink.uri, sink.scheme, sink.on_error
        self.waits = 0
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._batch = MessageBatch()
        self._worker = threading.Thread(target=self._run, name=f"sink {sink.name}", daemon=True)
        self._worker.start()
        self.closed = False

    # -- the feed's side --------------------------------------------------------------------------
    def _put(self, item) -> None:
        if self._error is not None:
            raise self._error
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.waits += 1
            self._q.put(item)

    def on_messages(self, batch) -> None:
        self._put(("m", batch.stream.copy(), batch.first_seq, batch.count, batch.timestamp_ns.copy(), batch.session,
                   batch.snapshot))

    def on_status(self, event) -> None:
        """Status events reach the sink in their place among the batches (a snapshot's start, for DBN)."""
        if hasattr(self.sink, "on_status"):
            self._put(("s", event))

    def on_top_of_book(self, events) -> None:
        if hasattr(self.sink, "on_top_of_book"):
            self._put(("e", np.array(events, copy=True)))

    def on_consolidated(self, events) -> None:
        if hasattr(self.sink, "on_consolidated"):
            self._put(("c", np.array(events, copy=True)))

    def __getattr__(self, name):  # attributes of the sink itself (the consolidated book it writes, ...)
        return getattr(self.sink, name)

    def stats(self) -> dict:
        return {**self.sink.stats(), "waits": self.waits, "queued": self._q.qsize()}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._q.put(None)
        self._worker.join()
        error, self._error = self._error, None
        try:
            self.sink.close()
        finally:
            if error is not None:
                raise error

    # -- the worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._error is not None:
                continue  # failed: drain what is queued, write nothing more
            try:
                if item[0] == "m":
                    _, stream, first, count, ts, session, snapshot = item
                    self.sink.on_messages(self._batch.set(stream, first, count, ts, session, snapshot))
                elif item[0] == "s":
                    self.sink.on_status(item[1])
                elif item[0] == "e":
                    self.sink.on_top_of_book(item[1])
                else:
                    self.sink.on_consolidated(item[1])
            except BaseException as e:  # handed to the feed's side, which detaches the sink
                self._error = e
