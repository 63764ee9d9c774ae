"""A capture file's MoldUDP64 packet index, made one batch ahead on a thread of its own.

`index_ahead(path, groups, sessions, counters)` yields what `pipeline.index_batches` yields for a capture file,
(buffer, PacketIndex) for every sound data packet in file order, while a reader thread reads, walks and indexes
the next batch (capture.pcapfile with two chunk buffers, then moldudp64.extract): the consumer's thread is left the
decoding or the book. Both sides' compiled code runs without the GIL. On a 10M-message capture (bench_decode.py
--repeat 7, rounds interleaved): 54.8M msg/s decoded on one thread, 79.1M with the index made ahead (paired 1.47×).
Moving only the read to the other core was slower (bench/README.md): the decoder's core must be left nothing else.

What the consumer sees is what it sees without the thread: the same batches in the same order, each valid until
it asks for the next; `counters` hold a batch's frames and packets from when it is handed out (the reader counts
into the batch's own counters, added then), so a run stopped early has counted only what it was given. The
session table is shared: the reader may have added a session the batches given so far do not name. A damaged
capture raises CorruptInput after every batch before the damage; a source that cannot be opened raises before
the thread starts. When the consumer stops early (an exception, a closed generator), the reader stops and the
file is closed before index_ahead returns.
"""

import os
import queue
import threading

import numpy as np

from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.pcapfile import PcapSource
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import PacketIndex, Sessions, extract_batch

SLOTS = 2  # batches in flight: the one the consumer holds and the one being read (two chunk buffers)


def worth_a_thread() -> bool:
    """A second core to read on: with one, the reader would only take turns with the consumer."""
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except AttributeError:  # no sched_getaffinity on this platform
        return (os.cpu_count() or 1) >= 2


class _Slot:
    """One batch in flight: its frames, its index and what reading it counted."""

    def __init__(self, frames_per_batch: int):
        self.frames = FrameBatch(frames_per_batch)
        self.index = PacketIndex(frames_per_batch)  # a row per frame at most: one extract call fills it
        self.counters = C.new()


def index_ahead(path: str, groups: np.ndarray, sessions: Sessions, counters: np.ndarray, frames_per_batch: int):
    """Yield (buffer, PacketIndex) for each batch of capture `path` that has data packets; see the module
    docstring."""
    src = PcapSource(path, double_buffer=True)  # unreadable or foreign: raises here, in the caller's thread
    slots = [_Slot(frames_per_batch) for _ in range(SLOTS)]
    free = threading.Semaphore(SLOTS)  # slots the reader may fill
    ready: queue.SimpleQueue = queue.SimpleQueue()  # filled slots in file order, then None, or the exception
    stop = threading.Event()

    def read():
        k = 0
        try:
            while True:
                free.acquire()
                if stop.is_set():
                    return
                slot = slots[k % SLOTS]
                if not src.recv(slot.frames):
                    ready.put(None)
                    return
                slot.counters[:] = 0
                n = extract_batch(slot.frames, 0, groups, sessions, slot.index, slot.counters)
                assert n == slot.frames.count  # the index has a row for every frame
                ready.put(slot)
                k += 1
        except BaseException as e:  # CorruptInput, an I/O error: raised in the consumer at this place
            ready.put(e)
        finally:
            src.close()

    reader = threading.Thread(target=read, name="capture-index-ahead", daemon=True)
    reader.start()
    try:
        while True:
            got = ready.get()
            if got is None:
                return
            if isinstance(got, BaseException):
                raise got
            counters += got.counters
            if got.index.rows:
                yield got.frames.data, got.index
            free.release()  # asked for the next batch: this one's slot may be filled again
    finally:
        stop.set()
        free.release()  # a reader waiting for a slot wakes, sees the stop and ends
        reader.join()
