"""A plain-Python OUCH 4.2 / 5.0 decoder: readable, slow, and the yardstick for the compiled one.

`decode(version, direction, payload)` reads one message (type byte first, no SoupBinTCP header) at the
offsets of multicast.ouch.schema with `int.from_bytes` and returns a dict: "type", then the fields in
wire order (snake_case; integers and raw prices as int; alpha as str without trailing spaces or NULs,
latin-1 for non-ASCII bytes), then for OUCH 5.0 types that may carry an appendage "appendage": {tag
name: value} (unknown tags are skipped). Fields a message's short form lacks (5.0 / 4.2 'D' AIQ
Strategy) decode as 0 / "". It raises ValueError with a one-line reason for an unknown type or a length
not valid for the type, and BadAppendage (a ValueError) when the appendage elements are malformed.
`record_dict` renders a row of the compiled decoder's tables the same way (OuchTables.to_dicts).
"""

from functools import cache

from xdpfeed.multicast.ouch.schema import (
    APPENDAGE_MALFORMED,
    COPY_WIDTH,
    DTYPES,
    MESSAGES,
    REQUIRED,
    TAG_BITS,
    TAG_PREFIX,
    TAGS,
    Message,
)


class BadAppendage(ValueError):
    """The message's fixed fields are valid but its TagValue elements are not."""


def alpha(raw: bytes) -> str:
    return raw.rstrip(b" \x00").decode("latin-1")


def _value(kind: str, raw: bytes):
    if kind == "a":
        return alpha(raw)
    return int.from_bytes(raw, "big", signed=kind == "s4")


def _blank(kind: str):
    return "" if kind == "a" else 0


def expected_lengths(m: Message) -> str:
    """The valid lengths of a message type, in words."""
    if m.app is None:
        return f"{m.base}" + (f" or {m.app_offset}" if m.ext else "") + " bytes"
    long = f"{m.app_offset + 2} + appendage length"
    return long if m.app == REQUIRED else f"{m.base}, or {long}"


def is_long_form(m: Message, p: bytes) -> bool:
    """Whether p (of message type m) is the long form (ext fields / appendage present); ValueError if
    its length is not valid for the type."""
    n = len(p)
    if n == m.base and m.short_ok:
        return False
    a = m.app_offset
    if m.app is not None and n >= a + 2 and n == a + 2 + int.from_bytes(p[a : a + 2], "big"):
        return True
    if m.app is None and m.ext and n == a:
        return True
    raise ValueError(f"OUCH {m.type!r} {m.name} of {n} bytes: expected {expected_lengths(m)}")


def iter_elements(raw: bytes):
    """(tag, value bytes) of each TagValue element of an appendage; BadAppendage when one is empty or
    runs past the end."""
    pos = 0
    while pos < len(raw):
        n = raw[pos]
        if n == 0 or pos + 1 + n > len(raw):
            raise BadAppendage(f"appendage element at byte {pos} has length {n} with {len(raw) - pos - 1} left")
        yield raw[pos + 1], raw[pos + 2 : pos + 1 + n]
        pos += 1 + n


def decode_appendage(raw: bytes) -> dict:
    """{tag name: value} of the known tags (last one wins); unknown tags are skipped."""
    out = {}
    for number, value in iter_elements(raw):
        tag = TAGS.get(number)
        if tag is None:
            continue
        if len(value) != tag.size:
            raise BadAppendage(f"appendage tag {number} ({tag.spec_name}) has {len(value)} bytes, not {tag.size}")
        out[tag.name] = _value(tag.kind, value)
    return out


def decode(version: str, direction: str, payload: bytes) -> dict:
    """Fields of one OUCH message of the given version ("4.2" | "5.0") and direction ("in" | "out")."""
    msgs = MESSAGES.get((version, direction))
    if msgs is None:
        raise ValueError(f"unknown OUCH version {version!r} or direction {direction!r}")
    p = bytes(payload)
    if not p:
        raise ValueError("empty OUCH message")
    m = msgs.get(chr(p[0]))
    if m is None:
        raise ValueError(f"unknown OUCH {version} {direction} message type {chr(p[0])!r}")
    long = is_long_form(m, p)
    out = {"type": m.type}
    for f in m.fields:
        out[f.name] = _value(f.kind, p[f.offset : f.offset + f.size])
    for f in m.ext:
        out[f.name] = _value(f.kind, p[f.offset : f.offset + f.size]) if long else _blank(f.kind)
    if m.app is not None:
        out["appendage"] = decode_appendage(p[m.app_offset + 2 :]) if long else {}
    return out


@cache
def _columns(key: tuple[str, str], t: str):
    """(name, how) per column of the record dtype: how = alpha width for integer-stored alpha, 'b' for
    bytes, 0 for integers; plus (bit, tag name, column index) for the tag columns."""
    m = MESSAGES[key][t]
    names = DTYPES[key][t].names
    kinds = {f.name: f for f in m.fields + m.ext}
    cols = []
    for f in (kinds[n] for n in names if n in kinds):
        cols.append((f.name, "b" if f.size == COPY_WIDTH and f.kind == "a" else (f.size if f.kind == "a" else 0)))
    tags = []
    if m.app is not None:
        for n, tag in TAGS.items():
            i = names.index(TAG_PREFIX + tag.name)
            tags.append((n, tag.name, i, tag.size if tag.kind == "a" else 0))
    return cols, tags, (names.index(TAG_BITS) if m.app is not None else -1)


def record_dict(m: Message, rec: tuple, key: tuple[str, str] | None = None) -> dict:
    """A decoded table row (a tuple from `table.tolist()`) as `decode` gives the message. A row whose
    appendage could not be read to its end (the compiled decoder keeps it) has "appendage_malformed": True."""
    if key is None:
        key = next(k for k, msgs in MESSAGES.items() if msgs.get(m.type) is m)
    cols, tags, ibits = _columns(key, m.type)
    out = {"type": m.type}
    for i, (name, how) in enumerate(cols):
        v = rec[i]
        if how == "b":
            v = alpha(v)
        elif how:
            v = alpha(v.to_bytes(how, "big"))
        out[name] = v
    if ibits >= 0:
        bits = rec[ibits]
        app = {}
        for n, name, i, width in tags:
            if bits >> n & 1:
                app[name] = alpha(rec[i].to_bytes(width, "big")) if width else rec[i]
        out["appendage"] = app
        if bits & APPENDAGE_MALFORMED:
            out["appendage_malformed"] = True
    return out
