"""Compiled OUCH 4.2 / 5.0 decoder: message bytes → one preallocated record table per message type.

`OuchTables(version, direction, capacity)` holds, for each type of multicast.ouch.schema for that
version and direction, a numpy record array (`tables['A']['price']` is a column), the arrival order
across types (`order_type`, `order_row`) and `counters` (names below). Two entry points share one
compiled loop:
- `decode_messages(buf, offsets, lengths, n, tables)`: messages located by the caller (type byte first);
- `decode_soup_stream(buf, pos, end, tables, direction)`: SoupBinTCP packets ([u16 length][type][payload]);
  the OUCH payloads of 'U' (inbound) or 'S' (outbound) packets are decoded, other packets are counted.
Unknown types are skipped and counted, a length that is not valid for the type is counted and skipped,
and OUCH 5.0 messages are parsed by their transport length (trap 22). Appendage tags fill their
columns; unknown tags are skipped by their element length and counted.

The per-type code is generated from the schema rather than written out by hand: `generate_source`
emits one loop per version and direction whose branches are straight-line loads and stores at
constant offsets (as multicast.itch.decoder's, generated the same way), so the layouts exist only in the schema. The
module is written under numba's cache directory and imported from there, so that numba caches the
compiled loops like any other. All tables of one OuchTables live in one byte slab, written through its
uint64/32/16/8 views. Nothing allocates, so the loops run without NRT reference counting
(`njit_no_rc`); offsets become unsigned before indexing so that LLVM emits single MOVBE loads.
"""

import numpy as np

from xdpfeed.capture.byteorder import be16, be32, be64, le16, le32
from xdpfeed.capture.jit import load_generated, njit_no_rc
from xdpfeed.multicast.ouch import schema as S
from xdpfeed.multicast.ouch.reference import record_dict

# counters (OuchTables.counters)
DECODED = 0  # messages decoded into tables
UNKNOWN_TYPES = 1  # messages of a type unknown for this version and direction (skipped)
BAD_LENGTHS = 2  # messages whose length is not valid for their type, or empty (skipped)
UNKNOWN_TAGS = 3  # appendage elements with a tag this decoder does not know (skipped by length)
BAD_APPENDAGES = 4  # appendage elements empty, cut short or of the wrong width for their tag
PACKETS = 5  # SoupBinTCP packets walked by decode_soup_stream
SEQUENCED = 6  # 'S' packets of an outbound stream (add to the Login Accepted sequence number)
UNSEQUENCED = 7  # 'U' packets of an inbound stream
HEARTBEATS = 8  # 'H' (server) and 'R' (client)
DEBUG_PACKETS = 9  # '+'
LOGIN_PACKETS = 10  # 'L' request, 'A' accepted, 'J' rejected
END_OF_SESSION = 11  # 'Z'
LOGOUT = 12  # 'O'
UNKNOWN_PACKETS = 13  # any other packet type
WRONG_DIRECTION = 14  # 'S' in an inbound stream or 'U' in an outbound one (not decoded)
BAD_FRAMES = 15  # a packet length of 0: the stream cannot be followed past it
N_COUNTERS = 16
COUNTER_NAMES = ("decoded", "unknown_types", "bad_lengths", "unknown_tags", "bad_appendages", "packets", "sequenced",
                 "unsequenced", "heartbeats", "debug_packets", "login_packets", "end_of_session", "logout",
                 "unknown_packets", "wrong_direction", "bad_frames")
assert len(COUNTER_NAMES) == N_COUNTERS and COUNTER_NAMES[BAD_FRAMES] == "bad_frames"

STREAM, INDEX = 0, 1  # the inputs of the walk
STOP_END, STOP_FULL, STOP_BAD_FRAME = 0, 1, 2  # why it returned

_TAG_BLOCK = np.dtype(S.tag_columns(), align=True)  # the tag columns, laid out the same in every record

# The walk's lookup tables, in one int64 array (fewer arguments, fewer registers spilled):
M_PACKETS = 0  # [256] SoupBinTCP packet type → the counter it adds to
M_CODE = 256  # [256] message type byte → table code, -1 unknown
M_TAGS = 512  # [256 × 2] tag → value width (0 = unknown tag), column offset in the tag block in units of that width
M_TBASE = 1024  # [types] where each table starts in the slab, in 8-byte words
# and its counters and filled-row counts in one other: counters [N_COUNTERS], then rows [types]


def _tag_table() -> np.ndarray:
    out = np.zeros((256, 2), dtype=np.int64)
    for n, tag in S.TAGS.items():
        out[n] = tag.size, _TAG_BLOCK.fields[S.TAG_PREFIX + tag.name][1] // tag.size
    return out.ravel()


def _packet_counters(direction: str) -> np.ndarray:
    lut = np.full(256, UNKNOWN_PACKETS, dtype=np.int64)
    for c, k in (("H", HEARTBEATS), ("R", HEARTBEATS), ("+", DEBUG_PACKETS), ("L", LOGIN_PACKETS),
                 ("A", LOGIN_PACKETS), ("J", LOGIN_PACKETS), ("Z", END_OF_SESSION), ("O", LOGOUT)):
        lut[ord(c)] = k
    lut[ord("S")] = SEQUENCED if direction == "out" else WRONG_DIRECTION
    lut[ord("U")] = UNSEQUENCED if direction == "in" else WRONG_DIRECTION
    return lut


_TAGS = _tag_table()
_NO_INT = np.zeros(0, dtype=np.int64)
_WALKS = {}


class OuchTables:
    """Decoded OUCH messages of one version and direction: a record table per type, arrival order, counters.

    `tables[code]` (or `self['A']` for the filled rows) are numpy record arrays with the dtypes of
    multicast.ouch.schema.DTYPES; `rows[code]` their filled rows; `order_type[:count]` / `order_row[:count]`
    the type code and row of each message in arrival order; `counters` the totals named in COUNTER_NAMES
    (kept across clear()). Rows are reused after clear(): read them before clearing, never write them.
    """

    def __init__(self, version: str = "5.0", direction: str = "out", capacity: int = 1 << 16):
        if version not in S.VERSIONS or direction not in S.DIRECTIONS:
            raise ValueError(f"OUCH {version!r} {direction!r}: expected a version of {S.VERSIONS}, direction of "
                             f"{S.DIRECTIONS}")
        self.version, self.direction, self.capacity = version, direction, capacity
        dtypes = S.DTYPES[(version, direction)]
        self.types = "".join(dtypes)  # type letters; the position of a letter is its code in order_type
        self.type_code = {t: i for i, t in enumerate(self.types)}
        spans, pos = [], 0
        for t in self.types:
            spans.append(pos)
            pos += (capacity * dtypes[t].itemsize + 7) & ~7
        self._slab = s = np.zeros(max(pos, 8), dtype=np.uint8)
        self.tables = tuple(s[b : b + capacity * dtypes[t].itemsize].view(dtypes[t])
                            for t, b in zip(self.types, spans, strict=True))
        self._meta = np.zeros(M_TBASE + len(self.types), dtype=np.int64)
        self._meta[M_PACKETS:M_CODE] = _packet_counters(direction)
        self.code_of = self._meta[M_CODE:M_TAGS]  # type byte → code, -1 unknown
        self.code_of[:] = -1
        for t, c in self.type_code.items():
            self.code_of[ord(t)] = c
        self._meta[M_TAGS:M_TBASE] = _TAGS
        self._meta[M_TBASE:] = np.array(spans) // 8
        self._state = np.zeros(N_COUNTERS + len(self.types), dtype=np.int64)
        self.counters = self._state[:N_COUNTERS]  # see COUNTER_NAMES
        self.rows = self._state[N_COUNTERS:]  # filled rows per table
        self.order_type = np.zeros(capacity, dtype=np.uint8)  # type code of the n-th message
        self.order_row = np.zeros(capacity, dtype=np.uint32)  # its row in that type's table
        self.count = 0
        self._data_packet = ord("U") if direction == "in" else ord("S")
        self._walk = walk_for(version, direction)
        self._views = (s, s.view(np.uint16), s.view(np.uint32), s.view(np.uint64))

    def clear(self) -> None:
        """Forget the decoded rows (counters are kept)."""
        self.rows[:] = 0
        self.count = 0

    @property
    def full(self) -> bool:
        return self.count >= self.capacity

    def __getitem__(self, t: str) -> np.ndarray:
        """Filled rows of type t's table."""
        c = self.type_code[t]
        return self.tables[c][: self.rows[c]]

    def counts(self) -> dict[str, int]:
        return {name: int(self.counters[i]) for i, name in enumerate(COUNTER_NAMES)}

    def to_dicts(self, start: int = 0, stop: int | None = None) -> list[dict]:
        """Messages [start, stop) in arrival order as multicast.ouch.reference.decode gives them (Python
        objects per message: for tests, logs and slow paths)."""
        stop = self.count if stop is None else min(stop, self.count)
        key = (self.version, self.direction)
        msgs = S.MESSAGES[key]
        lists, out = {}, []
        for code, row in zip(self.order_type[start:stop].tolist(), self.order_row[start:stop].tolist(), strict=True):
            if code not in lists:
                lists[code] = self.tables[code][: self.rows[code]].tolist()
            out.append(record_dict(msgs[self.types[code]], lists[code][row], key))
        return out

    def _run(self, b, mode, pos, end, offs, lens, stop):
        pos, self.count, why = self._walk(b, mode, pos, end, offs, lens, stop, self._data_packet, self._meta,
                                          self._state, *self._views, self.order_type, self.order_row, self.count)
        return pos, why


# Helpers of the generated walks. They are not inlined by numba (inline="always" on hundreds of calls
# doubled the compile time); LLVM inlines them all the same. The byte-order ones are twins of
# xdpfeed.capture.byteorder's, compiled without inline="always".
@njit_no_rc(cache=True)
def _st(a, i, v):
    a[np.uint64(i)] = v


@njit_no_rc(cache=True)
def _ld(a, i):
    return a[np.uint64(i)]


@njit_no_rc(cache=True)
def _le64(b, o):
    return np.uint64(le32(b, o)) | (np.uint64(le32(b, o + 4)) << np.uint64(32))


_be16, _be32, _be64, _le16, _le32 = (njit_no_rc(f.py_func) for f in (be16, be32, be64, le16, le32))


# ------------------------------------------------------------------------------- the generated walk
_PRELUDE = '''"""Generated by xdpfeed.multicast.ouch.decoder from xdpfeed.multicast.ouch.schema; do not edit."""

import numpy as np

from xdpfeed.capture.jit import njit_no_rc
from xdpfeed.multicast.ouch.decoder import (
    BAD_APPENDAGES, BAD_FRAMES, BAD_LENGTHS, DECODED, PACKETS, STOP_BAD_FRAME, STOP_END, STOP_FULL, STREAM,
    M_CODE, UNKNOWN_TAGS, UNKNOWN_TYPES, _be16, _be32, _be64, _ld, _le16, _le32, _le64, _st,
)
from xdpfeed.multicast.ouch.schema import APPENDAGE_MALFORMED

be16, be32, be64, le16, le32 = _be16, _be32, _be64, _le16, _le32
'''

# One loop over either input: STREAM, the SoupBinTCP packets in b[pos:end] (those of type data_pkt carry
# a message); INDEX, the messages b[offs[i] : offs[i] + lens[i]] for i in [pos, stop). Returns (next
# position or index, order count, stop reason). {branches} decodes the message b[o:o+ln] of type code c
# into row k of its table, whose first 8-byte word in the slab is rw; for a type with tag columns it sets
# tg = 1, tb to the 8-byte word where its tag block starts, bo to its `appendage_tags` column (in 4-byte
# units) and a0 to where the appendage elements start (0: none).
_WALK = '''

@njit_no_rc(cache={cache})
def {name}(b, mode, pos, end, offs, lens, stop, data_pkt, meta, st, s8, s16, s32, s64, o_type, o_row, n):
    cap = o_type.size
    why = STOP_END
    size = b.size
    while True:
        if n >= cap:
            why = STOP_FULL
            break
        if mode == STREAM:
            if pos + 2 > end:
                break
            plen = be16(b, pos)
            if plen == 0:
                st[BAD_FRAMES] += 1
                why = STOP_BAD_FRAME
                break
            if pos + 2 + plen > end:
                break
            pt = _ld(b, pos + 2)
            o = pos + 3
            ln = plen - 1
            pos += 2 + plen
            st[PACKETS] += 1
            st[_ld(meta, pt)] += 1
            if pt != data_pkt:
                continue
        else:
            if pos >= stop:
                break
            o = offs[pos]
            ln = lens[pos]
            pos += 1
            if o < 0 or ln < 0 or o + ln > size:
                st[BAD_LENGTHS] += 1
                continue
        if ln <= 0:
            st[BAD_LENGTHS] += 1
            continue
        c = _ld(meta, M_CODE + _ld(b, o))
        if c < 0:
            st[UNKNOWN_TYPES] += 1
            continue
        a0 = tg = tb = bo = 0
{branches}
        _st(o_type, n, c)
        _st(o_row, n, k)
        n += 1
        st[DECODED] += 1
{appendage}
    return pos, n, why
'''
_APPENDAGE = '''        if tg:  # the appendage (the tag block is all 0)
            e = o + ln
            bits = 0
            while a0 and a0 < e:
                el = np.int64(_ld(b, a0))
                if el == 0 or a0 + 1 + el > e:
                    st[BAD_APPENDAGES] += 1
                    bits |= APPENDAGE_MALFORMED
                    break
                tag = _ld(b, a0 + 1)
{tags}
                a0 += 1 + el
            _st(s32, bo, bits)
'''
_BAD = ("    st[BAD_LENGTHS] += 1", "    continue")


def _store(f, dst: int) -> list[str]:
    """Source lines copying field f of the message at o into the row whose first 8-byte word is rw, at
    byte offset dst: every column is addressed in units of its own width."""
    if f.size == S.COPY_WIDTH:  # a 14-byte alpha, 8-aligned in the record: 8 + 4 + 2 bytes, no byte swap
        s, d = f.offset, dst // 8
        return [f"_st(s64, rw + {d}, _le64(b, o + {s}))  # {f.name}", f"_st(s32, rw * 2 + {d * 2 + 2}, "
                f"le32(b, o + {s + 8}))", f"_st(s16, rw * 4 + {d * 4 + 6}, le16(b, o + {s + 12}))"]
    load = {8: "be64", 4: "be32", 2: "be16", 1: "_ld"}[f.size]
    return [f"_st(s{f.size * 8}, rw * {8 // f.size} + {dst // f.size}, {load}(b, o + {f.offset}))  # {f.name}"]


def _stores(fields, dt: np.dtype) -> list[str]:
    """_store for each field, except that 2 or 4 one-byte fields adjacent both on the wire and in the
    record (Capacity, ISE, Cross Type, Order State...) are copied with one unswapped 2- or 4-byte move."""
    out, i = [], 0
    while i < len(fields):
        f, dst = fields[i], dt.fields[fields[i].name][1]
        run = 1
        while (i + run < len(fields) and fields[i + run].size == 1 and f.size == 1
               and fields[i + run].offset == f.offset + run and dt.fields[fields[i + run].name][1] == dst + run):
            run += 1
        run = 4 if run >= 4 and dst % 4 == 0 else 2 if run >= 2 and dst % 2 == 0 else 1
        if run == 1:
            out += _store(f, dst)
        else:
            names = ", ".join(g.name for g in fields[i : i + run])
            out.append(f"_st(s{run * 8}, rw * {8 // run} + {dst // run}, le{run * 8}(b, o + {f.offset}))  # {names}")
        i += run
    return out


def _branch(code: int, m, dt: np.dtype, last: bool) -> list[str]:
    """The decoding of one type: length check, row, zeroing, fixed fields, ext fields, appendage start."""
    a = m.app_offset
    out = [("else:" if last else f"{'if' if code == 0 else 'elif'} c == {code}:") + f"  # {m.type!r} {m.name}"]
    body = []
    if m.app == S.REQUIRED:
        body += [f"if ln < {a + 2} or ln != {a + 2} + be16(b, o + {a}):", *_BAD, f"a0 = o + {a + 2}"]
    elif m.app is not None:
        body += [f"if ln != {m.base}:", f"    if ln < {a + 2} or ln != {a + 2} + be16(b, o + {a}):",
                 *("    " + x for x in _BAD), f"    a0 = o + {a + 2}"]
    elif m.ext:
        body += [f"if ln != {m.base} and ln != {a}:", *_BAD]
    else:
        body += [f"if ln != {m.base}:", *_BAD]
    body += [f"k = _ld(st, {N_COUNTERS + code})", f"_st(st, {N_COUNTERS + code}, k + 1)",
             f"rw = _ld(meta, {M_TBASE + code}) + k * {dt.itemsize // 8}"]
    body += _stores(m.fields, dt)
    if m.ext:  # absent in the short form: 0
        body += [f"if ln > {m.base}:"] + ["    " + x for f in m.ext for x in _store(f, dt.fields[f.name][1])]
        body += ["else:"] + [f"    _st(s8, rw * 8 + {dt.fields[f.name][1]}, 0)" for f in m.ext]
        assert all(f.size == 1 for f in m.ext)
    if m.app is not None:
        # The tag block is non-zero only where `appendage_tags` is: clear it only then (rows are reused).
        body += ["tg = 1", f"tb = rw + {dt.fields[_TAG_BLOCK.names[0]][1] // 8}",
                 f"bo = rw * 2 + {dt.fields[S.TAG_BITS][1] // 4}", "if _ld(s32, bo):",
                 f"    for j in range({_TAG_BLOCK.itemsize // 8}):", "        _st(s64, tb + j, 0)"]
    return [" " * 8 + x for x in out] + [" " * 12 + x for x in body]


def _tag_cases() -> list[str]:
    """The appendage element at a0 (length el, tag): one case per known tag, with its width and column."""
    out, first = [], True
    for n, tag in S.TAGS.items():
        d = _TAG_BLOCK.fields[S.TAG_PREFIX + tag.name][1] // tag.size
        unit = {8: "tb", 4: "tb * 2", 2: "tb * 4", 1: "tb * 8"}[tag.size]
        load = {8: "be64", 4: "be32", 2: "be16", 1: "_ld"}[tag.size]
        out += [f"{'if' if first else 'elif'} tag == {n}:  # {tag.name}", f"    if el == {tag.size + 1}:",
                f"        _st(s{tag.size * 8}, {unit} + {d}, {load}(b, a0 + 2))", f"        bits |= {1 << n}",
                "    else:", "        st[BAD_APPENDAGES] += 1", "        bits |= APPENDAGE_MALFORMED"]
        first = False
    out += ["else:", "    st[UNKNOWN_TAGS] += 1"]
    return [" " * 16 + x for x in out]


def walk_name(version: str, direction: str) -> str:
    return f"walk_{version.replace('.', '')}_{direction}"


def generate_source(cache: bool = True) -> str:
    """The module holding one compiled walk per version and direction, generated from the schema."""
    parts = [_PRELUDE]
    for (v, d), msgs in S.MESSAGES.items():
        dts = S.DTYPES[(v, d)]
        branches = [x for i, (t, m) in enumerate(msgs.items()) for x in _branch(i, m, dts[t], i == len(msgs) - 1)]
        tags = any(m.app is not None for m in msgs.values())
        app = _APPENDAGE.format(tags="\n".join(_tag_cases())) if tags else ""
        parts.append(_WALK.format(cache=cache, name=walk_name(v, d), branches="\n".join(branches), appendage=app))
    return "".join(parts)


def walk_for(version: str, direction: str):
    """The compiled loop of one version and direction."""
    if not _WALKS:
        _WALKS.update(load_generated("ouch_walk", generate_source))
    return _WALKS[walk_name(version, direction)]


def _as_u8(buf) -> np.ndarray:
    return buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)


def decode_messages(buf, offsets: np.ndarray, lengths: np.ndarray, n: int, tables: OuchTables) -> int:
    """Decode messages buf[offsets[j] : offsets[j] + lengths[j]] (type byte first) for j < n, appending to
    `tables`; returns how many were consumed (fewer than n only when the tables filled up)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    n = min(n, offsets.size, lengths.size)
    i, _ = tables._run(_as_u8(buf), INDEX, 0, 0, offsets, lengths, n)
    return i


def decode_soup_stream(buf, pos: int, end: int, tables: OuchTables, direction: str | None = None) -> int:
    """Walk the SoupBinTCP packets in buf[pos:end], decoding the OUCH message of each 'U' packet
    (direction "in") or 'S' packet ("out") into `tables` and counting the others. Returns the position
    after the last packet consumed: it stops at a packet not wholly in buf[:end] (keep those bytes for the
    next call) or when the tables are full (`tables.full`: read and clear them, call again). A packet
    length of 0 raises ValueError (counted in BAD_FRAMES): the stream cannot be followed past it."""
    b = _as_u8(buf)
    if direction is not None and direction != tables.direction:
        raise ValueError(f"direction {direction!r} does not match the tables' {tables.direction!r}")
    if not 0 <= pos <= end <= b.size:
        raise ValueError(f"bad range [{pos}, {end}) of a {b.size}-byte buffer")
    pos, why = tables._run(b, STREAM, pos, end, _NO_INT, _NO_INT, 0)
    if why == STOP_BAD_FRAME:
        raise ValueError(f"SoupBinTCP packet with length 0 at byte {pos}")
    return pos
