"""Ethernet / 802.1Q / QinQ, Linux cooked (SLL, SLL2) and raw IPv4 frames down to the UDP payload
(or, for the order-entry tools, the TCP segment).

`udp_payload` is compiled and inlined into the MoldUDP64 walk. It trusts nothing: every length is
checked against the captured bytes, IPv4 options are skipped by IHL, fragments and non-UDP traffic are
reported with a status the caller counts.
"""

from xdpfeed.capture.batch import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    LINKTYPE_UDP_PAYLOAD,
)
from xdpfeed.capture.byteorder import be16, be32
from xdpfeed.capture.jit import njit
from xdpfeed.multicast.wire import counters as C

ETH_P_IPV4 = 0x0800
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
MAX_VLAN_TAGS = 4

OK = -1  # status: payload found; any other status is the counter index to bump


@njit(cache=True, inline="always")
def ipv4_header(b, off, length, linktype):
    """(status, offset of the IPv4 header, end of the frame) for one frame: link layer and VLAN tags
    stepped over; status OK or the counter index saying why there is no IPv4 header."""
    end = off + length
    if linktype == LINKTYPE_ETHERNET:
        if length < 14:
            return C.TRUNCATED_FRAMES, 0, end
        p = off + 12
    elif linktype == LINKTYPE_LINUX_SLL:
        if length < 16:
            return C.TRUNCATED_FRAMES, 0, end
        p = off + 14
    elif linktype == LINKTYPE_LINUX_SLL2:
        if length < 20:
            return C.TRUNCATED_FRAMES, 0, end
        p = -(off + 20)  # protocol is at offset 0, payload at 20: marked negative, handled below
    elif linktype == LINKTYPE_RAW or linktype == LINKTYPE_IPV4:
        p = -1
    else:
        return C.UNSUPPORTED_LINKTYPE, 0, end

    if p == -1:
        ip = off
    else:
        if p < 0:
            ethertype = be16(b, off)
            ip = -p
        else:
            ethertype = be16(b, p)
            ip = p + 2
        tags = 0
        while ethertype == 0x8100 or ethertype == 0x88A8 or ethertype == 0x9100:
            tags += 1
            if tags > MAX_VLAN_TAGS:
                return C.BAD_HEADERS, 0, end
            if ip + 4 > end:
                return C.TRUNCATED_FRAMES, 0, end
            ethertype = be16(b, ip + 2)
            ip += 4
        if ethertype != ETH_P_IPV4:
            return C.NON_IPV4, 0, end
    return OK, ip, end


@njit(cache=True, inline="always")
def ipv4_payload(b, off, length, linktype, protocol):
    """(status, ip offset, payload offset, payload length) of an unfragmented IPv4 packet of the
    given protocol (17 UDP, 6 TCP); status OK or the counter index saying why not."""
    st, ip, end = ipv4_header(b, off, length, linktype)
    if st != OK:
        return st, 0, 0, 0
    if ip + 20 > end:
        return C.TRUNCATED_FRAMES, 0, 0, 0
    vihl = b[ip]
    if vihl >> 4 != 4:
        return C.NON_IPV4, 0, 0, 0
    ihl = (vihl & 0x0F) * 4
    total = be16(b, ip + 2)
    if ihl < 20 or total < ihl:
        return C.BAD_HEADERS, 0, 0, 0
    if be16(b, ip + 6) & 0x3FFF:  # more-fragments flag or a fragment offset
        return C.IP_FRAGMENTS, 0, 0, 0
    if b[ip + 9] != protocol:
        return C.NON_UDP, 0, 0, 0
    if ip + total > end:
        return C.TRUNCATED_FRAMES, 0, 0, 0
    return OK, ip, ip + ihl, total - ihl


@njit(cache=True, inline="always")
def udp_payload(b, off, length, linktype):
    """(status, payload_offset, payload_length, dst_ip, dst_port) for one frame.

    status is OK, or one of the counters.* indices saying why the frame has no UDP payload."""
    if linktype == LINKTYPE_UDP_PAYLOAD:
        return OK, off, length, 0, 0
    st, ip, udp, ulen_ip = ipv4_payload(b, off, length, linktype, 17)
    if st != OK:
        return st, 0, 0, 0, 0
    if ulen_ip < 8:
        return C.BAD_HEADERS, 0, 0, 0, 0
    ulen = be16(b, udp + 4)
    if ulen < 8 or ulen > ulen_ip:
        return C.BAD_HEADERS, 0, 0, 0, 0
    return OK, udp + 8, ulen - 8, be32(b, ip + 16), be16(b, udp + 2)
