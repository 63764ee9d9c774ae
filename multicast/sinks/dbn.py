"""`dbn:FILE[?dataset=XNAS.ITCH&date=YYYY-MM-DD]`: the delivered stream as Databento Binary Encoding (DBN
version 3), MBO schema, so that `databento`'s `DBNStore.from_file` and the tools built on it read it.

Records come from the compiled ITCH → MBO conversion (multicast.sinks.mbo) and are appended to the file
as the day goes: it is a valid DBN file at every moment (metadata with the start, then records). At
close the metadata is rewritten with what only the end knows (the end time, and the symbology: every
ITCH stock locate, the MBO `instrument_id`, mapped to its symbol from the Stock Directory messages),
which means one copy of the records into a new file that then replaces the old one. The metadata is
encoded by the `databento-dbn` package; the records are written as its `MboMsg` layout (checked against
it), without a Python object per record.

`dataset` (default XNAS.ITCH; XBOS.ITCH for Nasdaq BX, XPSX.ITCH for PSX) sets Databento's publisher
id. `date` is the trading day of the ITCH timestamps (nanoseconds since midnight US Eastern); by default
the US Eastern date of the first message's receive time.
"""

import datetime
import os
import shutil
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from xdpfeed.multicast.book import store as S
from xdpfeed.multicast.sinks import mbo
from xdpfeed.multicast.sinks.base import Sink, SinkError

EASTERN = ZoneInfo("America/New_York")
PUBLISHERS = {"XNAS.ITCH": 2, "XBOS.ITCH": 3, "XPSX.ITCH": 4}  # Databento's publisher ids
RECORDS_PER_WRITE = 3 * (1 << 16)  # MBO records converted before they are written


def midnight_eastern_ns(day: datetime.date) -> int:
    """Midnight US Eastern time on `day`, as nanoseconds since the UNIX epoch."""
    start = datetime.datetime(day.year, day.month, day.day, tzinfo=EASTERN)
    return int(start.timestamp()) * 1_000_000_000


def eastern_date(ns: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(ns / 1e9, tz=EASTERN).date()


@dataclass
class _Interval:  # the shapes databento_dbn.Metadata takes for its symbology
    start_date: datetime.date
    end_date: datetime.date
    symbol: str


@dataclass
class _Mapping:
    raw_symbol: str
    intervals: list


def _check_layout() -> None:
    import databento_dbn as dbn

    if mbo.MBO.itemsize != dbn.MBOMsg.size_hint:
        raise RuntimeError(f"MBO record is {mbo.MBO.itemsize} bytes, databento_dbn says {dbn.MBOMsg.size_hint}")


class DbnSink(Sink):
    scheme = "dbn"

    def __init__(self, uri: str, path: str, dataset: str = "XNAS.ITCH", date: str | None = None):
        super().__init__(uri)
        if dataset not in PUBLISHERS:
            raise SinkError(f"{uri}: dataset must be one of {', '.join(PUBLISHERS)}, not {dataset!r}")
        try:
            import databento_dbn  # noqa: F401
        except ImportError:
            raise SinkError(f"{uri}: needs the databento-dbn package (pip install databento-dbn)") from None
        _check_layout()
        self.path, self.dataset, self.publisher = path, dataset, PUBLISHERS[dataset]
        try:
            self.day = datetime.date.fromisoformat(date) if date else None
        except ValueError:
            raise SinkError(f"{uri}: date must be YYYY-MM-DD, not {date!r}") from None
        try:
            self._f = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 — closed by close()
        except OSError as e:
            raise SinkError(f"{uri}: {e.strerror}") from None
        self.orders = S.OrderStore()
        self.symbols = np.zeros(65536, dtype=np.uint64)  # ITCH locate → symbol (big-endian integer)
        self.out = np.zeros(RECORDS_PER_WRITE, dtype=mbo.MBO)
        self.stats_ = np.zeros(mbo.N_STATS, dtype=np.int64)
        self._cur = np.zeros(4, dtype=np.int64)
        self.day_ns = 0
        self.first_ts = self.last_ts = 0
        self.header_bytes = 0

    def _start(self, batch) -> None:
        if self.day is None:
            ts = int(batch.timestamp_ns[0]) if batch.count and batch.timestamp_ns[0] > 0 else 0
            self.day = eastern_date(ts) if ts else datetime.date.today()
        self.day_ns = midnight_eastern_ns(self.day)
        header = self._metadata(start=self.day_ns, end=None, mappings=[])
        self._f.write(header)
        self.header_bytes = len(header)

    def on_messages(self, batch) -> None:
        if not self.header_bytes:
            self._start(batch)
        cur = self._cur
        cur[:] = (0, batch.first_seq, 0, 0)
        flags = mbo.F_SNAPSHOT if batch.snapshot else 0  # a GLIMPSE snapshot's records (DBN's convention)
        o = self.orders
        while True:
            status = mbo.convert(batch.stream, batch.stream.size, batch.timestamp_ns, cur, self.day_ns,
                                 self.publisher, flags, o.window, o.hash, o.state, self.symbols, self.out,
                                 self.stats_)
            n = int(cur[3])
            if n:
                recs = self.out[:n]
                self._f.write(recs.view(np.uint8))
                self.first_ts = self.first_ts or int(recs["ts_event"][0])
                self.last_ts = int(recs["ts_event"][n - 1])
                cur[3] = 0
            if status == S.NEED_HASH:
                o.grow()
            elif status == S.OK:
                break
        self.count(batch.count, batch.stream.size)

    def on_status(self, event) -> None:
        """A snapshot begins (multicast.feed.status.SnapshotBegin): the book it describes replaces what came
        before. As Databento's snapshots do, a Clear record (action R, F_SNAPSHOT) for every instrument
        written so far, then the snapshot's adds (F_SNAPSHOT); the orders tracked so far are forgotten."""
        if getattr(event, "kind", "") != "snapshot_begin":
            return
        self.orders = S.OrderStore()
        locates = np.flatnonzero(self.symbols)
        if not self.header_bytes or not locates.size:
            return  # nothing written yet (a late join): nothing to clear
        recs = np.zeros(locates.size, dtype=mbo.MBO)
        recs["length"], recs["rtype"], recs["publisher_id"] = mbo.MBO.itemsize // 4, mbo.RTYPE_MBO, self.publisher
        recs["instrument_id"] = locates
        recs["ts_event"] = recs["ts_recv"] = self.last_ts
        recs["price"] = mbo.UNDEF_PRICE
        recs["flags"] = mbo.F_SNAPSHOT | mbo.F_LAST
        recs["action"], recs["side"] = ord("R"), ord("N")
        self._f.write(recs.view(np.uint8))
        self.stats_[mbo.RECORDS] += locates.size

    # -- metadata ---------------------------------------------------------------------------------
    def _metadata(self, start: int, end: int | None, mappings: list) -> bytes:
        import databento_dbn as dbn

        md = dbn.Metadata(dataset=self.dataset, start=start, stype_in=dbn.SType.RAW_SYMBOL,
                          stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.MBO,
                          symbols=[m.raw_symbol for m in mappings], mappings=mappings, end=end)
        return bytes(md.encode())

    def mappings(self) -> list:
        """The symbology: each ITCH stock locate seen in a Stock Directory message, as instrument_id."""
        nxt = self.day + datetime.timedelta(days=1)
        out = []
        for locate in np.flatnonzero(self.symbols):
            raw = int(self.symbols[locate]).to_bytes(8, "big").rstrip(b" \x00").decode("latin-1")
            out.append(_Mapping(raw, [_Interval(self.day, nxt, str(int(locate)))]))
        return out

    def stats(self) -> dict:
        d = super().stats()
        d.update(records=int(self.stats_[mbo.RECORDS]), unknown_refs=int(self.stats_[mbo.UNKNOWN_REFS]),
                 bad_lengths=int(self.stats_[mbo.BAD_LENGTHS]), instruments=int(np.count_nonzero(self.symbols)))
        return d

    def close(self) -> None:
        """Flush, then rewrite the file with the final metadata (end, symbology) before the records."""
        if self.closed:
            return
        super().close()
        try:
            self._f.flush()
        finally:
            self._f.close()
        if not self.header_bytes:  # nothing delivered: an empty day still gets its metadata
            self.day = self.day or datetime.date.today()
            self.day_ns = midnight_eastern_ns(self.day)
            with open(self.path, "wb") as f:
                f.write(self._metadata(self.day_ns, self.day_ns, []))
            return
        header = self._metadata(start=self.first_ts or self.day_ns, end=self.last_ts + 1, mappings=self.mappings())
        tmp = f"{self.path}.tmp"
        with open(self.path, "rb") as src, open(tmp, "wb") as dst:
            dst.write(header)
            src.seek(self.header_bytes)
            shutil.copyfileobj(src, dst, 16 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.path)
