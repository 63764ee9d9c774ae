"""Addresses for a simulated venue on this host: a pair of multicast lines nobody else is likely to use,
and free ports for its recovery servers, picked before the venue starts so a Feed can be built with them
(and join the lines) before the venue publishes."""

import random
import socket


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port nothing holds on `host` now (TCP by default; socket.SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def line_pair(prefix: str = "239.255", rng: random.Random | None = None) -> tuple[tuple[str, int], tuple[str, int]]:
    """Two multicast lines (group, port) in the administratively scoped prefix, different groups and ports."""
    r = rng or random.Random()
    port = r.randrange(20000, 60000)
    a = f"{prefix}.{r.randrange(1, 255)}.{r.randrange(1, 255)}"
    b = a
    while b == a:
        b = f"{prefix}.{r.randrange(1, 255)}.{r.randrange(1, 255)}"
    return (a, port), (b, port + 1)
