"""The contract every packet source keeps (`Source`), and `SourceBase`, what every source repeats.

A source fills a caller's FrameBatch with `recv(batch)` (how many frames; 0 when none is waiting), gets
them back with `release(batch)` once they are processed (AF_XDP refills its fill ring, DPDK frees its
mbufs; sources whose frames live in their own buffer do nothing), reports `stats()` the same way
(packets, bytes, drops by reason, mode), and is closed with `close()` (idempotent; stats() still answers).
`fileno()` is a descriptor that becomes readable when frames wait, or -1 for a source that is polled
(a pcap file, a DPDK port); `exhausted`, after a recv() that returned 0, says whether the source has
nothing more to give (a capture file read to its end; a live source never).
"""

from typing import Protocol, runtime_checkable

from xdpfeed.capture.batch import FrameBatch


@runtime_checkable
class Source(Protocol):
    def recv(self, batch: FrameBatch) -> int: ...

    def release(self, batch: FrameBatch) -> None: ...

    def stats(self) -> dict: ...

    def fileno(self) -> int: ...

    def close(self) -> None: ...

    @property
    def exhausted(self) -> bool: ...


class SourceBase:
    """Context manager, repr, and the defaults: nothing to release, no descriptor (polled), and a polled
    source that returned nothing is at its end. Subclasses describe themselves in `describe()`."""

    def release(self, batch: FrameBatch) -> None:
        """Nothing to give back: the frames stay valid until the next recv()."""

    def fileno(self) -> int:
        return -1

    @property
    def exhausted(self) -> bool:
        return self.fileno() < 0

    def describe(self) -> str:
        return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        text = self.describe()
        return f"<{type(self).__name__}{' ' + text if text else ''}>"


def waitable(source) -> bool:
    """True when the source has a descriptor to wait on (select/poll)."""
    return source.fileno() >= 0
