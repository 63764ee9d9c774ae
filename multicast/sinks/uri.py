"""Opening a sink from its URI, as sources are opened from theirs (capture/uri.py):

    itch:FILE               the delivered stream as a NASDAQ binary ITCH file (`-`: standard output)
    dbn:FILE[?dataset=XNAS.ITCH&date=YYYY-MM-DD]     Databento DBN, MBO schema
    parquet:DIR[?row_group=ROWS&compression=zstd]    one Parquet file per ITCH type, plus top of book
    ipc:NAME[?subscribers=8&history=16&buffer=64&chunk=65536]   iceoryx2 shared memory
    nats://HOST:PORT[,HOST:PORT...]/STREAM[?subject=...&creds=FILE&...]   NATS JetStream (multicast.sinks.nats_wire)

A bad URI is one line naming the scheme and what is accepted (SinkError)."""

from urllib.parse import parse_qsl

from xdpfeed.multicast.sinks.base import SinkError
from xdpfeed.multicast.sinks.nats_wire import OPTIONS as NATS_OPTIONS
from xdpfeed.multicast.sinks.threaded import Threaded

ACCEPTED = ("itch:FILE", "dbn:FILE", "parquet:DIR", "ipc:NAME", "nats://HOST:PORT/STREAM")
OPTIONS = {"itch": {}, "dbn": {"dataset": str, "date": str}, "parquet": {"row_group": int, "compression": str},
           "ipc": {"subscribers": int, "history": int, "buffer": int, "chunk": int},
           "nats": {**NATS_OPTIONS, "gap_wait": float, "bbo": str, "close_timeout": float}}
KINDS = {int: "an integer", float: "a number"}


def parse(uri: str) -> tuple[str, str, dict]:
    """(scheme, target, options) of a sink URI; raises SinkError naming what is wrong."""
    scheme, sep, rest = str(uri).partition(":")
    if not sep or scheme not in OPTIONS:
        raise SinkError(f"unknown output {uri!r}: scheme {scheme + ':' if sep else '(none)'} is not one of "
                        f"{', '.join(ACCEPTED)}")
    target, _, query = rest.partition("?")
    if not target:
        raise SinkError(f"{uri}: {scheme}: needs {dict(zip(OPTIONS, ACCEPTED, strict=True))[scheme].split(':')[1]}")
    opts = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        kind = OPTIONS[scheme].get(key)
        if kind is None:
            known = ", ".join(OPTIONS[scheme]) or "none"
            raise SinkError(f"{uri}: unknown option {key!r} for {scheme}: (known: {known})")
        try:
            opts[key] = kind(value)
        except ValueError:
            raise SinkError(f"{uri}: {key} must be {KINDS[kind]}, not {value!r}") from None
    return scheme, target, opts


def open_sink(uri: str, feed: str = "feed"):
    """The sink for `uri` (opened: files created, services set up, servers connected); `feed` is the feed's
    name, which the nats: subjects carry."""
    scheme, target, opts = parse(uri)
    if scheme == "itch":
        from xdpfeed.multicast.sinks.itch_file import ItchFileSink

        return ItchFileSink(uri, target)
    if scheme == "dbn":
        from xdpfeed.multicast.sinks.dbn import DbnSink

        return Threaded(DbnSink(uri, target, **opts))  # encoding runs on another core
    if scheme == "parquet":
        from xdpfeed.multicast.sinks.parquet import ParquetSink

        return Threaded(ParquetSink(uri, target, **opts))
    if scheme == "nats":
        from xdpfeed.multicast.sinks.nats import NatsSink

        return NatsSink(uri, target, feed=feed, **opts)
    from xdpfeed.multicast.sinks.ipc import IpcSink

    return IpcSink(uri, target, **opts)
