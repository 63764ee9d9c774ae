"""Stopping a loop on SIGINT/SIGTERM: the signal sets a flag the loop checks between batches, so what
was received so far is still processed and reported (a live capture, a decode of a live source, the
handler, the simulated venue).

The handlers are installed explicitly, whatever the process inherited: a process started with SIGINT
ignored (`nohup`, a background job of a script, some CI runners) has no KeyboardInterrupt, yet must
still stop cleanly when its parent sends SIGINT.
"""

import signal
import threading
import time


class StopOnSignal:
    """SIGINT/SIGTERM set `flag` (and `signum`) while the block runs (main thread only; elsewhere the
    caller stops by other means); the previous handlers come back at its end. `is_set()` lets it stand
    where a threading.Event is expected."""

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM)):
        self.flag = False
        self.signum = 0
        self._signals = tuple(signals)
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._old[sig] = signal.signal(sig, self._set)
        return self

    def _set(self, signum, _frame):
        self.flag = True
        self.signum = signum

    def is_set(self) -> bool:
        return self.flag

    def sleep(self, seconds: float) -> None:
        """time.sleep that ends early once the flag is set (long gaps in a paced replay)."""
        end = time.monotonic() + seconds
        while not self.flag and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


class SignalFlag:
    """A signal (SIGUSR1: "write the latency file now") sets a flag the loop takes at its next tick; the
    previous handler comes back at the end. Main thread only."""

    def __init__(self, signum: int = signal.SIGUSR1):
        self.signum = signum
        self._raised = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(self.signum, self._set)
        return self

    def _set(self, _signum, _frame):
        self._raised = True

    def take(self) -> bool:
        """True once per signal received."""
        raised, self._raised = self._raised, False
        return raised

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(self.signum, self._old)
            self._old = None
