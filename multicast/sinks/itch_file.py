"""`itch:FILE`: the delivered stream as a NASDAQ binary ITCH file (`[uint16 length][message]...`), exactly
what consumers saw, in delivery order (the `--record` of `xdpfeed run`, which remains its alias).
`itch:-` writes to standard output."""

import os
import sys

from xdpfeed.multicast.sinks.base import Sink, SinkError


class ItchFileSink(Sink):
    scheme = "itch"

    def __init__(self, uri: str, path: str):
        super().__init__(uri)
        self.path = path
        if path == "-":
            self._f = sys.stdout.buffer
            self._own = False
            return
        try:
            self._f = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 — closed by close()
        except OSError as e:
            raise SinkError(f"{uri}: {e.strerror}") from None
        self._own = True

    def on_messages(self, batch) -> None:
        self._f.write(memoryview(batch.stream))
        self.count(batch.count, batch.stream.size)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        try:
            self._f.flush()
            if self._own:
                os.fsync(self._f.fileno())
        finally:
            if self._own:
                self._f.close()
