"""Opening a packet source from the URI spelling every tool shares.

`pcap:PATH` (pcap or pcapng file) and `udp:GROUP:PORT@IFACE[?source=S]` (kernel socket). A bare
path means `pcap:`. Any other scheme is an error that names the schemes this build knows.
"""

from urllib.parse import parse_qs

from xdpfeed.capture.errors import SourceError

SCHEMES = ("pcap", "udp")


def open_source(uri: str):
    scheme, sep, rest = uri.partition(":")
    if not sep or "/" in scheme:  # a bare path
        scheme, rest = "pcap", uri
    if scheme == "pcap":
        from xdpfeed.capture.pcapfile import PcapSource

        return PcapSource(rest)
    if scheme == "udp":
        from xdpfeed.capture.udp import UdpSource

        spec, _, query = rest.partition("?")
        addr, _, iface = spec.partition("@")
        group, _, port = addr.rpartition(":")
        if not group or not port.isdigit():
            raise SourceError(f"bad source {uri!r}: expected udp:GROUP:PORT@IFACE[?source=S]")
        opts = {k: v[-1] for k, v in parse_qs(query).items()}
        unknown = set(opts) - {"source"}
        if unknown:
            raise SourceError(f"bad source {uri!r}: unknown option {sorted(unknown)[0]!r}")
        return UdpSource(group, int(port), iface or "lo", source=opts.get("source"))
    raise SourceError(f"unknown source scheme {scheme!r} in {uri!r}; known: {', '.join(SCHEMES)}")
