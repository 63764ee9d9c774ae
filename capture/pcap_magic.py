"""What the first bytes of a pcap or pcapng file are (their magic numbers), and `sniff`, which tells the two from
anything else without importing numba (multicast.itch.input_format). capture.pcapfile reads the files."""

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D


def sniff(head: bytes) -> str | None:
    """'pcap', 'pcapng' or None from the first 4 bytes of a file."""
    if len(head) < 4:
        return None
    le = int.from_bytes(head[:4], "little")
    if le in (PCAP_MAGIC_US, PCAP_MAGIC_NS) or int.from_bytes(head[:4], "big") in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        return "pcap"
    if le == PCAPNG_SHB:
        return "pcapng"
    return None
