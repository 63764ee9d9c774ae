"""Nasdaq's three equity venues as the simulator plays them: Nasdaq, Nasdaq BX and Nasdaq PSX each publish
TotalView-ITCH 5.0 over MoldUDP64 with their own lines, recovery servers, session and stock locates.

`venue_day(venue, n_messages, seed)` makes one venue's synthetic day (multicast.exchange.synthetic) so that the
three share a universe: the same symbols ("AAA", "AAB", ... for the same stock index), each venue with its own
locate for a symbol (a permutation of its own), mid prices drawn from one generator for all three (`seed`)
and moved per venue (BX one tick down, PSX two up), so their books quote near each other and the
consolidated book sees one venue's bid at or above another's offer now and then. The order flow itself is
the venue's own.
"""

from dataclasses import dataclass

import numpy as np

from xdpfeed.multicast.exchange import synthetic


@dataclass(frozen=True)
class VenueProfile:
    name: str
    title: str
    dataset: str  # Databento's dataset of the venue's TotalView-ITCH
    index: int
    mid_offset_ticks: int
    session_prefix: str


VENUES = {
    "nasdaq": VenueProfile("nasdaq", "Nasdaq", "XNAS.ITCH", 0, 0, "NSDQ"),
    "bx": VenueProfile("bx", "Nasdaq BX", "XBOS.ITCH", 1, -1, "BXEQ"),
    "psx": VenueProfile("psx", "Nasdaq PSX", "XPSX.ITCH", 2, 2, "PSXE"),
}


def profile(venue: str) -> VenueProfile:
    try:
        return VENUES[venue]
    except KeyError:
        raise ValueError(f"unknown venue {venue!r}: one of {', '.join(VENUES)}") from None


def locates(venue: str, n_stocks: int) -> np.ndarray:
    """The venue's locate of each symbol of the universe: 1..n in order for Nasdaq, a permutation of its own
    for the others (the same symbol, another locate)."""
    p = profile(venue)
    if p.index == 0:
        return np.arange(1, n_stocks + 1, dtype=np.int64)
    rng = np.random.default_rng(0x5EED + p.index)
    return rng.permutation(n_stocks).astype(np.int64) + 1


def session(venue: str, seed: int) -> str:
    """A 10-character MoldUDP64 session for the venue's day."""
    return f"{profile(venue).session_prefix}{seed % 1_000_000:06d}"


def venue_day(venue: str, n_messages: int, seed: int = 1, n_stocks: int | None = None,
              **kw) -> tuple[np.ndarray, dict]:
    """(ITCH binary file, stats) of the venue's synthetic day in the shared universe of `seed`."""
    p = profile(venue)
    n_stocks, _, _ = synthetic._plan(n_messages, n_stocks, kw.get("peak_live_orders"))
    records, info = synthetic.generate(n_messages, n_stocks, seed=seed * 7919 + p.index,
                                       locates=locates(venue, n_stocks), mid_seed=seed,
                                       mid_offset_ticks=p.mid_offset_ticks, **kw)
    info["venue"] = venue
    return records, info
