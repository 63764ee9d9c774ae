"""Whether a capture holds order entry (SoupBinTCP over TCP) rather than a feed: what `xdpfeed decode` asks
before it chooses the OUCH or the ITCH decoder, without importing either."""


def is_tcp_capture(path: str) -> bool:
    """Whether most of the capture's first frames are TCP (an order-entry capture, not a feed)."""
    from xdpfeed.capture.batch import FrameBatch
    from xdpfeed.capture.pcapfile import PcapSource
    from xdpfeed.capture.tcp_stream import count_tcp

    frames = FrameBatch(1024)
    with PcapSource(path) as source:
        if not source.recv(frames):
            return False
        return 2 * count_tcp(frames) > frames.count
