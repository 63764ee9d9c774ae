"""MoldUDP64 re-request client: request packets out, answers in, answers checked before they reach
the sequencer.

A request is 20 bytes (session, first sequence, count ≤ 0xFFFE) sent by unicast UDP to a request
server; the answer is an ordinary downstream packet sent back to the socket the request came from,
holding as many of the messages as fit in one datagram (docs/protocols.md §2.3–2.4). Answers are
extracted with the same compiled MoldUDP64 walk as the lines, then checked: the session must be the
one followed and the packet must overlap a range still missing (a late answer to a request that
timed out is still welcome); anything else is counted and dropped. Accepted answers enter the
sequencer as the `rerequest` line.
"""

import struct

import numpy as np

from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.udp import UnicastSocket
from xdpfeed.multicast.feed.sequencer import LINE_REREQUEST, Sequencer
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import PacketIndex, Sessions, extract_batch

MAX_REQUEST = 0xFFFE  # never ask for 0xFFFF: that count means End of Session (docs/protocols.md trap 19)
NO_GROUPS = np.zeros((0, 2), dtype=np.int64)


def encode_request(session: bytes, first: int, count: int) -> bytes:
    if not 0 < count <= MAX_REQUEST:
        raise ValueError(f"re-request count must be 1..{MAX_REQUEST}, not {count}")
    if first < 1:
        raise ValueError(f"re-request sequence must be >= 1, not {first}")
    return session.ljust(10, b" ")[:10] + struct.pack(">QH", first, count)


class RerequestClient:
    """One unicast socket for requests and their answers; `wanted` is kept by the caller
    (multicast.feed.recovery) as the list of [first, end) ranges still missing."""

    def __init__(self, sessions: Sessions, bind: tuple[str, int] = ("0.0.0.0", 0)):
        self.sessions = sessions
        self.sock = UnicastSocket(*bind)
        self.frames = FrameBatch(256)
        self.index = PacketIndex(256)
        self.counters = C.new()
        self.wanted: list[tuple[int, int]] = []
        self.stats = {"requests": 0, "send_failures": 0, "answers": 0, "answer_messages": 0, "unsolicited": 0,
                      "wrong_session": 0}

    def fileno(self) -> int:
        return self.sock.fileno()

    def request(self, session: bytes, first: int, count: int, server: tuple[str, int]) -> bool:
        ok = self.sock.send(encode_request(session, first, count), server)
        self.stats["requests" if ok else "send_failures"] += 1
        return ok

    def receive(self, seq: Sequencer, sink) -> int:
        """Read every waiting answer, feed the sound ones to `seq`; returns the packets accepted."""
        accepted = 0
        while self.sock.recv(self.frames):
            start = 0
            while start < self.frames.count:
                start = extract_batch(self.frames, start, NO_GROUPS, self.sessions, self.index, self.counters)
                accepted += self._check(seq)
                if self.index.rows:
                    seq.feed(self.frames.data, self.index, LINE_REREQUEST, sink)
        return accepted

    def _check(self, seq: Sequencer) -> int:
        """Keep the rows of the current session that bring something missing (compacting the index in
        place); count the rest."""
        ix = self.index
        current = seq.session_index
        keep = 0
        for r in range(ix.rows):
            first, end = int(ix.seq[r]), int(ix.seq[r]) + int(ix.blocks[r])
            if int(ix.session[r]) != current:
                self.stats["wrong_session"] += 1
                continue
            if not any(first < b and a < end for a, b in self.wanted):
                self.stats["unsolicited"] += 1
                continue
            self.stats["answers"] += 1
            self.stats["answer_messages"] += end - first
            if keep != r:
                for col in (ix.offset, ix.blocks, ix.seq, ix.session, ix.timestamp_ns, ix.kind, ix.nbytes):
                    col[keep] = col[r]
            keep += 1
        ix.rows = keep
        return keep

    def close(self) -> None:
        self.sock.close()
