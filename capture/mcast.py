"""Multicast membership through the kernel, for sources that take frames before it does (AF_XDP,
AF_PACKET, DPDK vdevs on a kernel interface): one UDP socket per group with IP_ADD_MEMBERSHIP on the
interface, kept open by the source, so that IGMP reports go out, switches forward the group and the
NIC accepts its MAC address. Closing the socket leaves the group."""

import socket
import struct


def join(group: str, ifindex: int) -> socket.socket:
    """A socket that holds `group` joined on interface `ifindex`; raises OSError."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # struct ip_mreqn: group, local address (any), interface index
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     socket.inet_aton(group) + bytes(4) + struct.pack("@i", ifindex))
    except OSError:
        s.close()
        raise
    return s
