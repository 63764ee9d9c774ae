"""A plain-Python ITCH 5.0 decoder: readable, slow, and the yardstick for the compiled one.

It reads the layouts of multicast.itch.schema with `int.from_bytes` and returns one dict per message
with the same keys as the JSON output. Tests check the compiled decoder against it on every type;
benchmarks use it as the baseline.
"""

from xdpfeed.multicast.itch.schema import HEADER, MESSAGES


def alpha(raw: bytes) -> str:
    return raw.rstrip(b" ").decode("ascii", "replace")


def decode(msg: bytes) -> dict | None:
    """Fields of one ITCH message (starting at its type byte); None for an unknown type or a length
    that does not match the type."""
    if not msg:
        return None
    t = chr(msg[0])
    spec = MESSAGES.get(t)
    if spec is None or len(msg) != spec[1]:
        return None
    out = {"type": t}
    for f in HEADER + spec[2]:
        raw = msg[f.offset : f.offset + f.size]
        out[f.name] = alpha(raw) if f.kind == "a" else int.from_bytes(raw, "big")
    return out


def iter_file(data: bytes):
    """Messages of an ITCH binary file (uint16 big-endian length before each); stops at a cut record."""
    pos = 0
    while pos + 2 <= len(data):
        n = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + n > len(data):
            return
        yield data[pos + 2 : pos + 2 + n]
        pos += 2 + n
