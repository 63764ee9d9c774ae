"""OUCH 4.2 / 5.0 message encoder: fields → message payload bytes (type byte first, not SoupBinTCP-framed).

`encode(version, direction, type, **fields)` lays the fields of multicast.ouch.schema out on the wire:
integers (and raw prices) big-endian, alpha left-justified and padded with spaces (a str must be ASCII;
bytes are taken as they are). Missing fields are 0 / blank. OUCH 5.0 appendage: `appendage={tag name:
value}` in the given order; an int key writes that tag number with a bytes value as is (for unknown
tags or deliberately odd elements). Length forms (docs/protocols.md §6.4): a 5.0 type whose appendage is
optional is written in its short form unless the appendage has elements or an ext field (AIQ Strategy of
'D') is not blank; a 4.2 'D' gets its AIQ Strategy byte only when `aiq_strategy` is not blank, so that
encoding a decoded message gives back its bytes (a long form with nothing in it aside). Anything
out of range (an unknown field, an integer that does not fit, text too long or not ASCII) raises
ValueError naming the field. `encode(v, d, **ouch_reference.decode(v, d, payload))` round-trips: the
decoded dict's "type" and "appendage" keys are this function's arguments of those names.
"""

from xdpfeed.multicast.ouch.schema import MESSAGES, REQUIRED, TAG_BY_NAME, TAGS

MAX_MESSAGE = 0xFFFF - 1  # a SoupBinTCP packet carries the type byte plus at most this many bytes


def _alpha(name: str, value, size: int) -> bytes:
    if isinstance(value, str):
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{name} {value!r} is not ASCII") from None
    elif isinstance(value, bytes | bytearray):
        raw = bytes(value)
    else:
        raise ValueError(f"{name} {value!r} is not text")
    if len(raw) > size:
        raise ValueError(f"{name} {value!r} is longer than {size} characters")
    return raw.ljust(size, b" ")


def _int(name: str, value, size: int, signed: bool = False) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} {value!r} is not an integer")
    try:
        return value.to_bytes(size, "big", signed=signed)
    except OverflowError:
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"{name} {value} does not fit {size} bytes {kind}") from None


def _field(name: str, kind: str, size: int, value) -> bytes:
    if value is None:
        return b" " * size if kind == "a" else bytes(size)
    if kind == "a":
        return _alpha(name, value, size)
    return _int(name, value, size, signed=kind == "s4")


def encode_appendage(appendage: dict) -> bytes:
    """TagValue elements: [length = 1 + value size][tag][value] per entry."""
    out = []
    for key, value in appendage.items():
        if isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key <= 255:
                raise ValueError(f"appendage tag {key} is not a byte")
            raw = bytes(value) if isinstance(value, bytes | bytearray) else None
            if raw is None:
                tag = TAGS.get(key)
                if tag is None:
                    raise ValueError(f"appendage tag {key} is unknown: give its value as bytes")
                raw = _field(f"appendage tag {key}", tag.kind, tag.size, value)
            number = key
        else:
            tag = TAG_BY_NAME.get(key)
            if tag is None:
                raise ValueError(f"appendage tag {key!r} is unknown (names: {', '.join(TAG_BY_NAME)})")
            raw = _field(f"appendage {key}", tag.kind, tag.size, value)
            number = tag.number
        if len(raw) > 254:
            raise ValueError(f"appendage tag {key!r}: value of {len(raw)} bytes is longer than 254")
        out.append(bytes((len(raw) + 1, number)) + raw)
    return b"".join(out)


def encode(version: str, direction: str, type: str, **fields) -> bytes:
    """One OUCH message of the given version ("4.2" | "5.0"), direction ("in" | "out") and type letter."""
    msgs = MESSAGES.get((version, direction))
    if msgs is None:
        raise ValueError(f"unknown OUCH version {version!r} or direction {direction!r}")
    m = msgs.get(type)
    if m is None:
        raise ValueError(f"unknown OUCH {version} {direction} message type {type!r}")
    appendage = fields.pop("appendage", None)
    fields.pop("appendage_malformed", None)
    known = {f.name for f in m.fields + m.ext}
    for name in fields:
        if name not in known:
            raise ValueError(f"{name} is not a field of OUCH {version} {direction} {type!r} {m.name}")
    if appendage is not None and m.app is None:
        raise ValueError(f"appendage: OUCH {version} {direction} {type!r} {m.name} has none")
    long = m.app == REQUIRED or bool(appendage) or any(fields.get(f.name) not in (None, "", 0) for f in m.ext)
    parts = [type.encode("ascii")]
    for f in m.fields + (m.ext if long else ()):
        parts.append(_field(f.name, f.kind, f.size, fields.get(f.name)))
    if m.app is not None and long:
        app = encode_appendage(appendage or {})
        if len(app) > 0xFFFF:
            raise ValueError(f"appendage of {len(app)} bytes does not fit its 2-byte length")
        parts += [len(app).to_bytes(2, "big"), app]
    out = b"".join(parts)
    if len(out) > MAX_MESSAGE:
        raise ValueError(f"appendage: message of {len(out)} bytes does not fit a SoupBinTCP packet")
    return out
