"""What an input is, from its name and first bytes: a packet source URI, a pcap or
pcapng capture, a NASDAQ binary ITCH 5.0 file, plain or gzip-compressed (`detect`), and how large the file behind
it is (`input_size`). The module imports neither numba nor numpy (`looks_like_itch` loads the schema when asked):
`xdpfeed book` reads a file's first bytes with it before numpy loads (multicast.book.early_start)."""

import gzip
import os

from xdpfeed.capture import uri
from xdpfeed.capture.errors import SourceError
from xdpfeed.capture.pcap_magic import sniff

GZIP_MAGIC = b"\x1f\x8b"


def is_source_uri(text: str) -> bool:
    """True for a packet source URI (`dpdk:...`, `pcap:FILE`, ...) rather than a file's path."""
    scheme, sep, _ = text.partition(":")
    return bool(sep) and scheme in uri.SCHEMES and not os.path.exists(text)


def input_size(path: str) -> int:
    """Bytes of the file behind the input: the file itself, a pcap: URI's or a DPDK net_pcap's file;
    0 for a live source."""
    if not is_source_uri(path):
        return os.path.getsize(path)
    scheme, spec, _ = uri.parse(path)
    name = spec if scheme == "pcap" else dict(kv.partition("=")[::2] for kv in spec.split(",")).get("rx_pcap")
    return os.path.getsize(name) if scheme in ("pcap", "dpdk") and name and os.path.isfile(name) else 0


def detect(path: str) -> str:
    """'pcap' (pcap or pcapng, or frames from a source URI), 'itch' or 'itch.gz' from the file's first bytes."""
    if is_source_uri(path):
        uri.parse(path)  # unknown options are refused before anything is opened
        return "pcap"
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None
    if not head:
        raise SourceError(f"{path}: empty file")
    if sniff(head):
        return "pcap"
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as g:
                inner = g.read(256)
        except (OSError, EOFError) as e:
            raise SourceError(f"{path}: unreadable gzip file ({e})") from None
        if looks_like_itch(inner):
            return "itch.gz"
        what = "a pcap" if sniff(inner) else "not an ITCH file"
        raise SourceError(f"{path}: gzip-compressed input is {what}; only ITCH files are read compressed")
    if looks_like_itch(head):
        return "itch"
    raise SourceError(f"{path}: unknown format (not pcap, pcapng or a NASDAQ binary ITCH 5.0 file)")


def looks_like_itch(head: bytes) -> bool:
    """True when the first records are known ITCH types with their exact lengths (up to an End of Session, a
    zero-length record)."""
    from xdpfeed.multicast.itch.schema import LENGTHS  # numpy: the module itself imports none

    pos = seen = 0
    while pos + 2 <= len(head) and seen < 4:
        n = int.from_bytes(head[pos : pos + 2], "big")
        if n == 0:
            return seen > 0
        if pos + 3 > len(head) or LENGTHS[head[pos + 2]] != n:
            return False
        seen += 1
        pos += 2 + n
    return seen > 0
