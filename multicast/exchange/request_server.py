"""The venue's MoldUDP64 re-request server: answers retransmission requests over unicast UDP.

A request is 20 bytes (session, first sequence, message count). The answer is one ordinary downstream
packet to the requester's address: sequence = the requested start, then as many whole messages as fit
in `max_payload` bytes (20-byte header + blocks), no more than requested and none at or past
`published()` (what the publisher has already put on the lines). Malformed requests (wrong size,
sequence < 1, count 0), another session and starts at or past `published()` get no answer; each kind is
counted. `drop` ignores a request with that probability (seeded: the same requests are dropped every
run); `silent` never answers. One thread; an answer is one slice of the store's records.
"""

import random
import socket
import struct
import threading

import numpy as np

HEADER_LEN = 20
REQUEST = struct.Struct(">10sQH")
POLL_S = 0.1  # how often the thread looks at its stop flag while idle
STAT_KEYS = ("requests", "answered", "messages_sent", "dropped", "malformed", "wrong_session", "beyond_end")


class RequestServer:
    """MoldUDP64 re-request server for `store` on (host, port); port 0 picks a free one."""

    def __init__(self, store, published=None, host: str = "127.0.0.1", port: int = 0, max_payload: int = 1472,
                 drop: float = 0.0, silent: bool = False, seed: int = 1):
        if not HEADER_LEN < max_payload <= 65507:
            raise ValueError(f"max_payload must be in 21..65507, not {max_payload}")
        if not 0.0 <= drop <= 1.0:
            raise ValueError(f"drop must be a probability in [0, 1], not {drop}")
        self.store = store
        self.published = published if published is not None else (lambda: store.next_seq)
        self.max_payload = max_payload
        self.drop, self.silent = drop, silent
        self._rng = random.Random(seed)
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise OSError(e.errno, f"request server {host}:{port}: {e.strerror}") from None
        self.sock.settimeout(POLL_S)
        self.address: tuple[str, int] = self.sock.getsockname()

    def answer(self, request: bytes) -> bytes | None:
        """The downstream packet answering `request`, or None (and the reason counted)."""
        st = self.stats
        st["requests"] += 1
        if len(request) != REQUEST.size:
            st["malformed"] += 1
            return None
        session, first, count = REQUEST.unpack(request)
        if first < 1 or count == 0:
            st["malformed"] += 1
            return None
        if session != self.store.session:
            st["wrong_session"] += 1
            return None
        if self.silent or (self.drop and self._rng.random() < self.drop):
            st["dropped"] += 1
            return None
        end = min(int(self.published()), self.store.next_seq, first + count)
        if first >= end:
            st["beyond_end"] += 1
            return None
        offsets = self.store.offsets
        limit = offsets[first - 1] + self.max_payload - HEADER_LEN
        fit = int(np.searchsorted(offsets, limit, side="right"))  # offsets[fit - 1] <= limit: seqs < fit fit
        end = max(first + 1, min(end, fit))  # a message too long to fit alone still goes, alone
        n = end - first
        st["answered"] += 1
        st["messages_sent"] += n
        return session + struct.pack(">QH", first, n) + self.store.block_bytes(first, end).tobytes()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            reply = self.answer(data)
            if reply is not None:
                try:
                    self.sock.sendto(reply, addr)
                except OSError:  # requester gone or buffer full: like a lost answer, it asks again
                    pass

    def start(self) -> "RequestServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="moldudp64-request-server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sock.close()

    def __enter__(self) -> "RequestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
