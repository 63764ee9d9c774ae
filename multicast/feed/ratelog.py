"""Warnings about counters that keep growing, logged at most once per interval.

Owns the rule for noisy inputs from the network (answers for another session, unsolicited answers,
garbage): every one is counted where it happens, and the log gets one line per `interval` seconds
naming how many of each arrived since the last line, never one line per packet.
"""


class RateLimitedLog:
    """check(counts) logs `what` with the growth of each counter since the last line, when there was growth
    and at least `interval` seconds of `clock` have passed since that line."""

    def __init__(self, log, clock, what: str, interval: float = 10.0):
        self.log, self.clock, self.what, self.interval = log, clock, what, interval
        self._last: dict[str, int] = {}
        self._at = None
        self.lines = 0

    def check(self, counts: dict[str, int]) -> None:
        now = self.clock()
        if self._at is not None and now - self._at < self.interval:
            return
        grown = {k: v - self._last.get(k, 0) for k, v in counts.items() if v > self._last.get(k, 0)}
        if not grown:
            return
        span = "" if self._at is None else f" in the last {now - self._at:.0f} s"
        self.log.warning("%s: %s%s (counted and dropped)", self.what,
                         ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in grown.items()), span)
        self._last, self._at = dict(counts), now
        self.lines += 1
