"""Hardware receive time stamps: ask the NIC to time-stamp received packets (SIOCSHWTSTAMP, as
`hwstamp_ctl` and linuxptp do), and the socket options that hand those stamps to a socket.

`enable_rx(ifname)` reads the interface's configuration (SIOCGHWTSTAMP); when it time-stamps nothing yet,
asks for every received packet (HWTSTAMP_FILTER_ALL), leaving its transmit setting alone; it never turns
time stamping off (PTP daemons may rely on it). It returns whether received packets carry hardware stamps
and the reason in words ("SIOCGHWTSTAMP lo: Operation not supported" on loopback and veth, which have no
clock; EPERM without CAP_NET_ADMIN). A socket then asks for them with SO_TIMESTAMPING (TIMESTAMPING_FLAGS:
hardware and software, so every packet has at least the kernel's stamp); AF_PACKET rings with
PACKET_TIMESTAMP.
"""

import ctypes
import fcntl
import socket
import struct

SIOCSHWTSTAMP, SIOCGHWTSTAMP = 0x89B0, 0x89B1
HWTSTAMP_FILTER_NONE, HWTSTAMP_FILTER_ALL = 0, 1
SO_TIMESTAMPING = 37  # SO_TIMESTAMPING_OLD on x86-64 and arm64: cmsgs carry struct timespec ts[3]
SOF_TIMESTAMPING_RX_HARDWARE = 1 << 2
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_RAW_HARDWARE = 1 << 6
TIMESTAMPING_FLAGS = (SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE | SOF_TIMESTAMPING_RX_SOFTWARE
                      | SOF_TIMESTAMPING_SOFTWARE)
IFREQ_SIZE = 40


class _Config(ctypes.Structure):  # struct hwtstamp_config
    _fields_ = [("flags", ctypes.c_int), ("tx_type", ctypes.c_int), ("rx_filter", ctypes.c_int)]


def _ioctl(sock: socket.socket, request: int, ifname: str, cfg: _Config) -> None:
    ifr = struct.pack("16sP", ifname.encode()[:15], ctypes.addressof(cfg))
    fcntl.ioctl(sock.fileno(), request, ifr.ljust(IFREQ_SIZE, b"\0"))


def enable_rx(ifname: str) -> tuple[bool, str]:
    """(received packets are hardware time-stamped on `ifname`, why or why not)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        cfg = _Config()
        try:
            _ioctl(s, SIOCGHWTSTAMP, ifname, cfg)
        except OSError as e:
            return False, f"SIOCGHWTSTAMP {ifname}: {e.strerror}"
        if cfg.rx_filter != HWTSTAMP_FILTER_NONE:
            return True, f"{ifname} time-stamps received packets (rx_filter {cfg.rx_filter})"
        want = _Config(0, cfg.tx_type, HWTSTAMP_FILTER_ALL)
        try:
            _ioctl(s, SIOCSHWTSTAMP, ifname, want)
        except OSError as e:
            return False, f"SIOCSHWTSTAMP {ifname}: {e.strerror}"
        if want.rx_filter == HWTSTAMP_FILTER_NONE:
            return False, f"{ifname}: the NIC cannot time-stamp received packets"
        return True, f"{ifname}: hardware time stamping of received packets turned on (rx_filter {want.rx_filter})"


def iface_of_address(addr: str) -> str | None:
    """The interface that holds IPv4 address `addr` (SIOCGIFADDR on each), or None."""
    packed = socket.inet_aton(addr)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                res = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            if res[20:24] == packed:
                return name
    return None


def timestamp_source(hardware: int, hardware_what: str, software_what: str, unit: str = "packets") -> dict:
    """A source's `timestamp_source` (multicast.latency): hardware once `hardware` packets carried the NIC's
    (or driver's) time, else software, each in words."""
    if hardware:
        return {"source": "hardware", "reason": f"{hardware_what} ({hardware} {unit} so far)",
                "hardware_packets": hardware}
    return {"source": "software", "reason": software_what}
