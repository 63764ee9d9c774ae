"""Opening a packet source from the URI spelling every tool shares.

- `pcap:PATH[?speed=1.0|max]` — pcap or pcapng file (a bare path means `pcap:`), optionally paced
  at the recorded speed times `speed`;
- `udp:GROUP:PORT@IFACE_OR_ADDR[?source=S]` — kernel UDP socket with an IGMP (or source-specific)
  join;
- `afxdp:IFACE?group=G:P[&group=...][&queue=0][&mode=auto|native|skb][&zerocopy=auto|on|off]
  [&frames=4096][&busy_poll=US]` — AF_XDP socket fed by our XDP program, which redirects only UDP
  to the groups given (everything else goes on to the kernel);
- `packet:IFACE[?group=G:P...][&fanout=ID][&fanout_mode=hash|lb|cpu|rollover|rnd|qm][&blocks=N]
  [&block_size=BYTES][&retire_ms=MS]` — AF_PACKET TPACKET_V3 ring;
- `dpdk:PCI_ADDRESS_OR_VDEV[,devargs][?group=G:P...][&rxd=N][&mbufs=N][&mbuf_size=B][&burst=N]
  [&timestamp=auto|pmd|host][&promisc=0|1][&huge=auto|on|off][&mem=MB][&cores=LIST][&eal=ARGS]` — a
  DPDK port (capture/dpdk.py); the last four are EAL options (capture/dpdk_eal.py).
Any other scheme, or an option a scheme does not know, is an error that names what is accepted.
"""

from urllib.parse import parse_qs

from xdpfeed.capture.errors import SourceError

SCHEMES = ("pcap", "udp", "afxdp", "packet", "dpdk")
_OPTIONS = {
    "pcap": {"speed"},
    "udp": {"source"},
    "afxdp": {"group", "queue", "mode", "zerocopy", "frames", "busy_poll"},
    "packet": {"group", "fanout", "fanout_mode", "blocks", "block_size", "retire_ms"},
    "dpdk": {"group", "rxd", "mbufs", "mbuf_size", "burst", "timestamp", "promisc", "huge", "mem", "cores", "eal"},
}


def _groups(uri: str, values: list[str]) -> list[tuple[str, int]]:
    out = []
    for v in values:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SourceError(f"bad source {uri!r}: group={v!r} is not GROUP:PORT")
        out.append((host, int(port)))
    return out


def _int(uri: str, opts: dict, key: str, default: int | None, lo: int = 0, hi: int = 1 << 40) -> int | None:
    if key not in opts:
        return default
    v = opts[key][-1]
    if not v.isdigit() or not lo <= int(v) <= hi:
        raise SourceError(f"bad source {uri!r}: {key}={v!r} must be an integer in {lo}..{hi}")
    return int(v)


def _choice(uri: str, opts: dict, key: str, default: str, allowed: tuple[str, ...]) -> str:
    v = opts.get(key, [default])[-1]
    if v not in allowed:
        raise SourceError(f"bad source {uri!r}: {key}={v!r}; expected one of {', '.join(allowed)}")
    return v


def parse(uri: str) -> tuple[str, str, dict[str, list[str]]]:
    """(scheme, the part before '?', options) with unknown schemes and options refused."""
    scheme, sep, rest = uri.partition(":")
    if not sep or "/" in scheme:  # a bare path
        scheme, rest = "pcap", uri
    if scheme not in _OPTIONS:
        raise SourceError(f"unknown source scheme {scheme!r} in {uri!r}; known: {', '.join(SCHEMES)}")
    spec, _, query = rest.partition("?")
    opts = parse_qs(query, keep_blank_values=True)
    unknown = set(opts) - _OPTIONS[scheme]
    if unknown:
        raise SourceError(f"bad source {uri!r}: unknown option {sorted(unknown)[0]!r}; "
                          f"{scheme}: takes {', '.join(sorted(_OPTIONS[scheme]))}")
    if not spec:
        raise SourceError(f"bad source {uri!r}: nothing after '{scheme}:'")
    return scheme, spec, opts


def open_source(uri: str):
    scheme, spec, opts = parse(uri)
    if scheme == "pcap":
        from xdpfeed.capture.pcapfile import PcapSource

        speed = opts.get("speed", ["max"])[-1]
        if speed == "max":
            return PcapSource(spec)
        try:
            value = float(speed)
        except ValueError:
            value = 0.0
        if not 0 < value <= 1e6:
            raise SourceError(f"bad source {uri!r}: speed={speed!r} must be a positive number or 'max'")
        return PcapSource(spec, speed=value)
    if scheme == "udp":
        from xdpfeed.capture.udp import UdpSource

        addr, _, iface = spec.partition("@")
        group, _, port = addr.rpartition(":")
        if not group or not port.isdigit():
            raise SourceError(f"bad source {uri!r}: expected udp:GROUP:PORT@IFACE[?source=S]")
        return UdpSource(group, int(port), iface or "lo", source=opts.get("source", [None])[-1])
    if scheme == "afxdp":
        groups = _groups(uri, opts.get("group", []))
        if not groups:
            raise SourceError(f"bad source {uri!r}: afxdp needs at least one group=GROUP:PORT for its XDP filter")
        kw = dict(queue=_int(uri, opts, "queue", 0, 0, 1023),
                  mode=_choice(uri, opts, "mode", "auto", ("auto", "native", "skb")),
                  zerocopy=_choice(uri, opts, "zerocopy", "auto", ("auto", "on", "off")),
                  groups=groups, frames=_int(uri, opts, "frames", 4096, 64, 1 << 20),
                  busy_poll_us=_int(uri, opts, "busy_poll", 0, 0, 1_000_000))
        from xdpfeed.capture.afxdp import AfXdpSource

        return AfXdpSource(spec, **kw)
    if scheme == "dpdk":
        return _open_dpdk(uri, spec, opts)
    kw = {"groups": _groups(uri, opts.get("group", [])), "fanout": _int(uri, opts, "fanout", None, 0, 0xFFFF),
          "fanout_mode": _choice(uri, opts, "fanout_mode", "hash", ("hash", "lb", "cpu", "rollover", "rnd", "qm"))}
    for key, lo, hi in (("blocks", 1, 1 << 16), ("block_size", 4096, 1 << 30), ("retire_ms", 0, 60_000)):
        v = _int(uri, opts, key, None, lo, hi)
        if v is not None:
            kw[key] = v
    from xdpfeed.capture.packet import PacketSource

    return PacketSource(spec, **kw)


def _open_dpdk(uri: str, spec: str, opts: dict):
    import re
    import shlex

    cores = opts.get("cores", [None])[-1]
    if cores is not None and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", cores):
        raise SourceError(f"bad source {uri!r}: cores={cores!r} must be a CPU list such as 2 or 2-3 or 1,3")
    try:
        extra = tuple(a for v in opts.get("eal", []) for a in shlex.split(v))
    except ValueError as e:
        raise SourceError(f"bad source {uri!r}: eal=: {e}") from None
    from xdpfeed.capture.dpdk_eal import EalOptions

    eal = EalOptions(huge=_choice(uri, opts, "huge", "auto", ("auto", "on", "off")),
                     mem=_int(uri, opts, "mem", None, 16, 1 << 20), cores=cores, extra=extra)
    kw = dict(groups=_groups(uri, opts.get("group", [])), rxd=_int(uri, opts, "rxd", 1024, 64, 32768),
              mbufs=_int(uri, opts, "mbufs", 8191, 256, 1 << 24), burst=_int(uri, opts, "burst", 256, 1, 65535),
              mbuf_size=_int(uri, opts, "mbuf_size", 2176, 192, 65535),
              timestamp=_choice(uri, opts, "timestamp", "auto", ("auto", "pmd", "host")),
              promisc=_choice(uri, opts, "promisc", "0", ("0", "1")) == "1", eal_options=eal)
    from xdpfeed.capture.dpdk import DpdkSource

    return DpdkSource(spec, **kw)
