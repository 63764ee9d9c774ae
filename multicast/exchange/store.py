"""The venue's message store: one session's messages by sequence number, in the two framings the
venue serves them in.

`records` is the day as a NASDAQ binary ITCH file ([uint16 length][message] ...), which is also the
MoldUDP64 block framing, so a run of blocks for sequences [s, e) is one slice:
`records[offsets[s - 1]:offsets[e - 1]]`. `soup` is the same messages as SoupBinTCP Sequenced Data
packets ([uint16 length + 1]['S'][message] ...) with `soup_offsets`, so the replay server sends a
range with one slice too. Sequence numbers start at 1.
"""

import numpy as np

from xdpfeed.capture.jit import njit

SESSION_LEN = 10


@njit(cache=True)
def index_records(records, offsets, soup, soup_offsets):
    """Fill offsets / soup_offsets (n + 1 entries each) and the soup copy; returns messages found."""
    p = 0
    q = 0
    n = 0
    end = records.size
    while p + 2 <= end:
        ln = (np.int64(records[p]) << 8) | records[p + 1]
        if p + 2 + ln > end:
            break
        offsets[n] = p
        soup_offsets[n] = q
        if soup.size:
            soup[q] = ((ln + 1) >> 8) & 0xFF
            soup[q + 1] = (ln + 1) & 0xFF
            soup[q + 2] = 83  # 'S'
            for k in range(ln):
                soup[q + 3 + k] = records[p + 2 + k]
        p += 2 + ln
        q += 3 + ln
        n += 1
    offsets[n] = p
    soup_offsets[n] = q
    return n


def session_id(name: str | bytes) -> bytes:
    """A MoldUDP64 / SoupBinTCP session id: 10 ASCII bytes (space-padded on the right as venues send it)."""
    raw = name.encode("ascii") if isinstance(name, str) else bytes(name)
    if not 0 < len(raw) <= SESSION_LEN:
        raise ValueError(f"session id must be 1..10 ASCII characters, not {raw!r}")
    return raw.ljust(SESSION_LEN, b" ")


class DayStore:
    """Messages 1..count of one session. `records` must be whole [uint16 length][message] records."""

    def __init__(self, records: np.ndarray, session: str | bytes = "XDPFEED001"):
        self.session = session_id(session)
        self.records = np.ascontiguousarray(records, dtype=np.uint8)
        n_max = self.records.size // 2 + 1
        offsets = np.zeros(n_max + 1, dtype=np.int64)
        soup_offsets = np.zeros(n_max + 1, dtype=np.int64)
        count = index_records(self.records, offsets, np.zeros(0, dtype=np.uint8), soup_offsets)
        if offsets[count] != self.records.size:
            raise ValueError(f"records end with a cut record at byte {int(offsets[count])}")
        self.count = int(count)
        self.offsets = offsets[: count + 1].copy()
        self.soup = np.zeros(int(soup_offsets[count]), dtype=np.uint8)
        self.soup_offsets = np.zeros(count + 1, dtype=np.int64)
        index_records(self.records, np.zeros(n_max + 1, dtype=np.int64), self.soup, self.soup_offsets)

    @classmethod
    def from_file(cls, path: str, session: str | bytes = "XDPFEED001") -> "DayStore":
        return cls(np.fromfile(path, dtype=np.uint8), session)

    @property
    def next_seq(self) -> int:
        """The sequence number after the last message."""
        return self.count + 1

    def block_bytes(self, first: int, end: int) -> np.ndarray:
        """MoldUDP64 blocks of sequences [first, end) (a view)."""
        return self.records[self.offsets[first - 1] : self.offsets[end - 1]]

    def soup_bytes(self, first: int, end: int) -> np.ndarray:
        """SoupBinTCP Sequenced Data packets of sequences [first, end) (a view)."""
        return self.soup[self.soup_offsets[first - 1] : self.soup_offsets[end - 1]]

    def message(self, seq: int) -> bytes:
        """Message `seq` without its length prefix (tests and tools)."""
        return bytes(self.records[self.offsets[seq - 1] + 2 : self.offsets[seq]])
