"""One line of a feed (A or B): its packet source and the buffers its batches go through on their way
to the sequencer (frames → MoldUDP64 packet index → sequencer)."""

import ipaddress

import numpy as np

from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.source import waitable
from xdpfeed.multicast.feed.sequencer import Sequencer
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import PacketIndex, extract_batch

FRAMES_PER_BATCH = 1024


def group_array(groups) -> np.ndarray:
    """[(group, port), ...] as the int64[k, 2] (IPv4 as an integer, port) the compiled frame filter takes."""
    return np.array([(int(ipaddress.IPv4Address(g)), int(p)) for g, p in groups], dtype=np.int64).reshape(-1, 2)


class Line:
    """A line's source, the frame filter (L2 sources keep only the feed's UDP) and its counters."""

    def __init__(self, number: int, source, groups=None, on_read=None, on_packets=None):
        """on_read(timestamps, n): a batch of n frames was read (their receive timestamps); on_packets(data,
        index): its MoldUDP64 packets, indexed (latency)."""
        self.number = number
        self.on_read = on_read
        self.on_packets = on_packets
        self.source = source
        if groups is None and getattr(source, "groups", None):
            groups = group_array(source.groups)
        self.groups = np.zeros((0, 2), dtype=np.int64) if groups is None else groups
        self.frames = FrameBatch(FRAMES_PER_BATCH)
        self.index = PacketIndex(FRAMES_PER_BATCH)
        self.counters = C.new()
        self.exhausted = False  # a file source reached its end
        self.waitable = waitable(source)

    def pump(self, seq: Sequencer, sink) -> int:
        """Read one batch and sequence it; returns frames read."""
        n = self.source.recv(self.frames)
        if not n:
            self.exhausted = self.source.exhausted
            return 0
        if self.on_read is not None:
            self.on_read(self.frames.timestamp_ns, n)
        start = 0
        while start < self.frames.count:
            start = extract_batch(self.frames, start, self.groups, seq.sessions, self.index, self.counters,
                                  control=True)
            if self.index.rows:
                if self.on_packets is not None:
                    self.on_packets(self.frames.data, self.index)
                seq.feed(self.frames.data, self.index, self.number, sink)
        self.source.release(self.frames)
        return n
