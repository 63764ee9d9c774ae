"""Stopping a loop on SIGINT/SIGTERM: the signal sets a flag the loop checks between batches, so what
was received so far is still processed and reported (a live capture, a decode of a live source)."""

import signal
import threading
import time


class StopOnSignal:
    """SIGINT/SIGTERM set `flag` while the block runs (main thread only; elsewhere the caller stops by
    other means); the previous handlers come back at its end."""

    def __init__(self):
        self.flag = False
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._set)
        return self

    def _set(self, *_):
        self.flag = True

    def sleep(self, seconds: float) -> None:
        """time.sleep that ends early once the flag is set (long gaps in a paced replay)."""
        end = time.monotonic() + seconds
        while not self.flag and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
