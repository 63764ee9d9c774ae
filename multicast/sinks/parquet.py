"""`parquet:DIR[?row_group=ROWS&compression=zstd|lz4|snappy|none]`: one Parquet file per ITCH message type,
plus the top-of-book events, written with pyarrow in row groups as the day goes on; pandas, polars and
duckdb read them.

Each type's file (`DIR/A_add_order.parquet`, `DIR/h_operational_halt.parquet`, ...: the type letter and
the specification's message name, so 'H' and 'h' stay apart on case-insensitive file systems) has the
columns of `xdpfeed decode`: `session`, `seq` (MoldUDP64 sequence number), `receive_ns` (receive time of
the packet that brought the message), `stock_locate`, `tracking_number`, `timestamp` (ns since midnight),
then the type's fields in snake_case of the specification's names; prices stay raw integers, alpha
fields are strings without their trailing spaces. `DIR/top_of_book.parquet`: `seq` (of the message that
caused it), `timestamp`, `stock_locate`, `bid_price`, `bid_shares`, `ask_price`, `ask_shares`. As an output of a
handler of several feeds (`[consolidated] outputs`), `DIR/consolidated.parquet`: the consolidated book's changes
with `seq`, `timestamp`, `feed`, `symbol`, each side's price, shares and venues ("bx,nasdaq"), and `flags`
(multicast.book.consolidated).

Rows come from the batch's decoded tables (decoded once per batch, whoever asks) and are converted to
Arrow column by column (alpha fields with one vectorized cast), buffered per type, and written as a row
group every `row_group` rows (default 262,144) and at close, compressed with zstd unless told otherwise.
Only the string columns are dictionary-encoded: on integer columns (prices, order numbers, sequence numbers,
nearly all distinct) a dictionary is work thrown away, and leaving it out makes writing about a quarter
faster and the files smaller. Parquet's encoding still costs about 250 ns a row (pyarrow, whatever the
compression): the sink runs on a thread of its own (multicast.sinks.threaded), which keeps up with a live
feed, not with a replay at full speed.
"""

import os

import numpy as np

from xdpfeed.multicast.itch.schema import HEADER, MESSAGES, TYPES
from xdpfeed.multicast.sinks.base import Sink, SinkError

DEFAULT_ROW_GROUP = 1 << 18
COMPRESSIONS = ("zstd", "lz4", "snappy", "none")
TOB_FILE = "top_of_book"
CONSOLIDATED_FILE = "consolidated"


def file_stem(t: str) -> str:
    return f"{t}_{MESSAGES[t][0].lower().replace(' ', '_').replace('/', '_')}"


class ParquetSink(Sink):
    scheme = "parquet"

    def __init__(self, uri: str, directory: str, row_group: int = DEFAULT_ROW_GROUP, compression: str = "zstd"):
        super().__init__(uri)
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise SinkError(f"{uri}: needs pyarrow (pip install pyarrow)") from None
        if row_group < 1:
            raise SinkError(f"{uri}: row_group must be a positive number of rows, not {row_group}")
        if compression not in COMPRESSIONS:
            raise SinkError(f"{uri}: compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
        self.compression = "NONE" if compression == "none" else compression
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise SinkError(f"{uri}: {e.strerror}") from None
        if not os.access(directory, os.W_OK):
            raise SinkError(f"{uri}: {directory} is not writable")
        self.directory, self.row_group = directory, row_group
        self._alpha = {t: {f.name: f.size for f in MESSAGES[t][2] if f.kind == "a"} for t in TYPES}
        self._pending: dict[str, list] = {}  # file stem → Arrow tables not yet written
        self._pending_rows: dict[str, int] = {}
        self._writers: dict = {}
        self.rows: dict[str, int] = {}
        self.consolidated = None  # the ConsolidatedBook whose events on_consolidated writes (multicast.feed.feeds)
        self._venue_sets = None

    # -- rows in --------------------------------------------------------------------------------
    def on_messages(self, batch) -> None:
        import pyarrow as pa

        tables = batch.decoded()
        for t in TYPES:
            rows = tables[t]
            if not len(rows):
                continue
            seq = rows["seq"].astype(np.int64)
            cols = {"session": pa.array(np.full(len(rows), batch.session), pa.string()),
                    "seq": pa.array(np.zeros_like(seq) if batch.snapshot else seq),  # a snapshot's have none
                    "receive_ns": pa.array(batch.timestamp_ns[seq - batch.first_seq])}
            for f in HEADER + MESSAGES[t][2]:
                col = rows[f.name]
                cols[f.name] = self._alpha_column(col, f.size) if f.name in self._alpha[t] else pa.array(col)
            self._add(file_stem(t), pa.table(cols))
        self.count(batch.count, batch.stream.size)

    def on_consolidated(self, events) -> None:
        """The consolidated book's changes (a handler of several feeds): `consolidated.parquet` with the feed
        and symbol by name and each side's venues as "bx,nasdaq"."""
        import pyarrow as pa

        cb = self.consolidated
        names = np.asarray(cb.names + [""] * 8, dtype=object)
        symbols = np.asarray(cb.symbols, dtype=object)
        if self._venue_sets is None:  # venue masks to names, once: a byte indexes it
            self._venue_sets = np.asarray([cb.venues_of(m) for m in range(256)], dtype=object)
        cols = {"seq": pa.array(events["seq"].astype(np.int64)), "timestamp": pa.array(events["timestamp"]),
                "feed": pa.array(names[events["feed"]].tolist(), pa.string()),
                "symbol": pa.array(symbols[events["symbol"]].tolist(), pa.string()),
                "bid_price": pa.array(events["bid_price"]), "bid_shares": pa.array(events["bid_shares"]),
                "bid_venues": pa.array(self._venue_sets[events["bid_venues"]].tolist(), pa.string()),
                "ask_price": pa.array(events["ask_price"]), "ask_shares": pa.array(events["ask_shares"]),
                "ask_venues": pa.array(self._venue_sets[events["ask_venues"]].tolist(), pa.string()),
                "flags": pa.array(events["flags"])}
        self._add(CONSOLIDATED_FILE, pa.table(cols))
        self.count(len(events), 0)

    def on_top_of_book(self, events) -> None:
        import pyarrow as pa

        cols = {"seq": events["seq"].astype(np.int64), "timestamp": events["timestamp"],
                "stock_locate": events["locate"], "bid_price": events["bid_price"],
                "bid_shares": events["bid_shares"], "ask_price": events["ask_price"],
                "ask_shares": events["ask_shares"]}
        self._add(TOB_FILE, pa.table({k: pa.array(np.ascontiguousarray(v)) for k, v in cols.items()}))

    @staticmethod
    def _alpha_column(col: np.ndarray, size: int):
        """Alpha bytes stored as a big-endian integer → strings without trailing spaces, vectorized."""
        import pyarrow as pa
        import pyarrow.compute as pc

        raw = np.ascontiguousarray(col.astype(f">u{size}")).view(f"S{size}")  # the field's bytes again
        return pc.utf8_rtrim(pc.cast(pa.array(raw, pa.binary(size)), pa.string()), characters=" ")

    def _add(self, stem: str, table) -> None:
        self._pending.setdefault(stem, []).append(table)
        self._pending_rows[stem] = self._pending_rows.get(stem, 0) + table.num_rows
        if self._pending_rows[stem] >= self.row_group:
            self._flush(stem)

    # -- files out --------------------------------------------------------------------------------
    def _flush(self, stem: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = self._pending.pop(stem, [])
        self._pending_rows[stem] = 0
        if not parts:
            return
        table = pa.concat_tables(parts)
        w = self._writers.get(stem)
        if w is None:
            strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
            w = pq.ParquetWriter(os.path.join(self.directory, stem + ".parquet"), table.schema,
                                 compression=self.compression, use_dictionary=strings or False)
            self._writers[stem] = w
        w.write_table(table, row_group_size=table.num_rows)
        self.rows[stem] = self.rows.get(stem, 0) + table.num_rows

    def stats(self) -> dict:
        d = super().stats()
        d["rows"] = dict(self.rows)
        return d

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        try:
            for stem in list(self._pending):
                self._flush(stem)
        finally:
            for w in self._writers.values():
                w.close()
