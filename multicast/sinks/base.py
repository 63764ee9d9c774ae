"""What every sink shares: a name (its URI), counts of what it wrote, and how it fails.

A sink is a Feed consumer (multicast.feed.consumers) that writes what it is given somewhere else. Unlike
other consumers, a sink that fails (disk full, permission denied, a subscriber service gone) never stops
the feed: the Feed logs it in one line, counts it (`xdpfeed_output_failed`), detaches it and goes on,
and `xdpfeed run` then exits 3 (a sink failed). Everything a sink was given is counted, so whatever it did
not write is known: `stats()` says batches, messages and bytes written, and `failed` why it stopped.
"""


import logging

log = logging.getLogger("xdpfeed.sinks")


def close_sinks(sinks, failures: list) -> None:
    """Close every sink. One that cannot finish (disk full at the last flush) is a failed sink: logged, and
    listed in `failures` as (name, why) unless it is there already."""
    for sink in sinks:
        try:
            sink.close()
        except Exception as e:  # whatever the sink's writer raises
            text = f"{type(e).__name__}: {e}"
            log.error("output %s failed when closing: %s", sink.name, text)
            if all(n != sink.name for n, _ in failures):
                failures.append((sink.name, text))


class SinkError(ValueError):
    """A sink that cannot be opened (bad URI, bad option, a file that cannot be created): one line."""


class Sink:
    """Base of the sinks: `uri`, `name`, counts, `close()` (idempotent), context manager."""

    scheme = ""
    on_error = "detach"  # the Feed's policy for sinks: a failing sink is detached, the feed goes on

    def __init__(self, uri: str):
        self.uri = uri
        self.name = uri
        self.batches = self.messages = self.bytes = 0
        self.failed = ""  # why it stopped writing ("" while it writes)
        self.closed = False

    def count(self, messages: int, nbytes: int) -> None:
        self.batches += 1
        self.messages += messages
        self.bytes += nbytes

    def stats(self) -> dict:
        return {"batches": self.batches, "messages": self.messages, "bytes": self.bytes, "failed": self.failed}

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"
