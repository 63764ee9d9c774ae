"""Recovery: the control plane that fills the sequencer's gaps, by MoldUDP64 re-request for small
gaps and SoupBinTCP replay for large ones or after re-requests keep failing.

`Recovery.poll()` is called by the handler's loop whenever a socket is readable or a timer is due.
It reads re-request answers and replay data (both enter the sequencer), then plans: the missing
ranges the sequencer reports are the gaps (coalesced by construction); each remembers when it was
first seen, its failed attempts and the request in flight for it, so nothing in flight is asked for
twice. Policy (RecoveryPolicy): gaps up to `rerequest_max` messages are re-requested, one request
in flight per gap, the remainder asked for as soon as an answer makes progress (answers hold only
what fits in a datagram); a request without progress within `request_timeout` is a failure, retried
on the next server after a backoff; after `rerequest_attempts` failures, or for a larger gap, one
TCP replay session covers every such gap from the lowest missing sequence, servers tried in order
with backoff, resuming where a broken session stopped. A gap older than `deadline` makes the feed
STALE (loudly, with the last failure); recovery keeps trying at the longest backoff, and the feed
is SYNCHRONIZED again the moment the gap closes. The clock is injected.
"""

import bisect
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from xdpfeed.multicast.feed.ratelog import RateLimitedLog
from xdpfeed.multicast.feed.replay_client import ReplayClient
from xdpfeed.multicast.feed.rerequest import MAX_REQUEST, RerequestClient
from xdpfeed.multicast.feed.sequencer import LINE_REPLAY, LINE_REREQUEST, Sequencer
from xdpfeed.multicast.feed.status import GapFilled, RecoveryAttempt, RecoveryFailed
from xdpfeed.multicast.wire.graceful_close import wait_closed

log = logging.getLogger("xdpfeed.recovery")


@dataclass
class RecoveryPolicy:
    rerequest_max: int = 10_000  # gaps up to this many messages go to the re-request server
    rerequest_attempts: int = 3  # failed re-requests of a gap before it goes to TCP replay
    replay_attempts: int = 3  # failed replay sessions in a row before large gaps go back to re-request
    request_delay: float = 0.002  # a new gap waits this long for the other line before it is requested
    request_timeout: float = 0.25  # seconds without progress before a re-request counts as failed
    backoff: float = 0.05  # first retry delay (seconds), doubled per failure
    max_backoff: float = 2.0
    deadline: float = 10.0  # a gap open this long makes the feed STALE
    heartbeat_interval: float = 1.0  # SoupBinTCP client heartbeat
    server_timeout: float = 15.0  # replay server silent this long: give up on that session
    connect_timeout: float = 2.0

    def __post_init__(self):
        for name in ("request_delay", "request_timeout", "backoff", "max_backoff", "deadline", "heartbeat_interval",
                     "server_timeout", "connect_timeout"):
            v = getattr(self, name)
            number = isinstance(v, int | float) and not isinstance(v, bool)
            if not number or not (v >= 0 if name == "request_delay" else v > 0) or v > 3600:
                span = "[0, 3600]" if name == "request_delay" else "(0, 3600]"
                raise ValueError(f"recovery.{name} must be a number of seconds in {span}, not {v!r}")
        for name, hi in (("rerequest_max", 1 << 40), ("rerequest_attempts", 1000), ("replay_attempts", 1000)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
                raise ValueError(f"recovery.{name} must be an integer in 0..{hi}, not {v!r}")


@dataclass
class Gap:
    first: int
    end: int
    detected: float
    failures: int = 0
    request: tuple[int, int, float] | None = None  # (first, end, sent at) of the re-request in flight
    retry_at: float = 0.0
    replay: bool = False  # handed to TCP replay
    no_replay: bool = False  # TCP replay kept failing: re-request whatever the size
    last_error: str = ""
    server: str = ""  # the re-request server asked last


RECOVERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class RecoveryStats:
    gaps_filled: int = 0
    rerequests: int = 0
    rerequest_timeouts: int = 0
    replay_sessions: int = 0
    replay_failures: dict = field(default_factory=dict)  # reason → count
    recovery_seconds: deque = field(default_factory=lambda: deque(maxlen=10_000))  # the latest gaps, for medians
    recovery_buckets: list = field(default_factory=lambda: [0] * (len(RECOVERY_BUCKETS) + 1))  # last: +Inf
    recovery_sum: float = 0.0
    gave_up: int = 0

    def gap_filled(self, seconds: float) -> None:
        self.gaps_filled += 1
        self.recovery_seconds.append(seconds)
        self.recovery_buckets[bisect.bisect_left(RECOVERY_BUCKETS, seconds)] += 1
        self.recovery_sum += seconds


class Recovery:
    def __init__(self, seq: Sequencer, sink, clock, policy: RecoveryPolicy | None = None,
                 rerequest_servers=(), replay_servers=(), user: str = "", password: str = "",
                 rerequest_bind: tuple[str, int] = ("0.0.0.0", 0), on_status=None):
        """on_status(event) gets the typed recovery events (multicast.feed.status): attempts, failures,
        gaps filled."""
        self.seq, self.sink, self.clock = seq, sink, clock
        self.on_status = on_status
        self.policy = policy or RecoveryPolicy()
        self.rerequest_servers = list(rerequest_servers)
        self.replay_servers = list(replay_servers)
        self.user, self.password = user, password
        self.rerequest = RerequestClient(seq.sessions, rerequest_bind) if self.rerequest_servers else None
        self._noise = RateLimitedLog(log, clock, "re-request socket: answers not taken")
        self.replay: ReplayClient | None = None
        self.replay_failures = 0  # failed replay sessions in a row that brought nothing (picks the server)
        self.replay_retry_at = 0.0
        self.gaps: list[Gap] = []
        self.stats = RecoveryStats()

    # -- the handler's loop ---------------------------------------------------------------------
    def fileobjs(self) -> tuple[list, list]:
        """Objects with fileno() to wait on for reading, and for writing (a replay connection opening or
        with output pending)."""
        readers = [self.rerequest] if self.rerequest else []
        writers = []
        c = self.replay
        if c is not None and c.live:
            readers.append(c)
            if c.wants_write:
                writers.append(c)
        return readers, writers

    def poll(self) -> None:
        if self.rerequest is not None:
            self.rerequest.receive(self.seq, self.sink)
            st = self.rerequest.stats
            self._noise.check({"for another session": st["wrong_session"], "unsolicited": st["unsolicited"]})
        if self.replay is not None:
            self.replay.poll()
        self._plan(self.clock())

    def next_timer(self) -> float:
        """Seconds until something is due (for the loop's wait)."""
        now = self.clock()
        due = [0.25] if self.gaps else [1.0]
        for g in self.gaps:
            if g.request is not None:
                due.append(g.request[2] + self.policy.request_timeout - now)
            elif not g.replay:
                due.append(g.retry_at - now)
        if self.replay is not None:
            due.append(self.policy.heartbeat_interval / 2)
        return max(0.0, min(due))

    def restart(self) -> None:
        """The feed goes on from a snapshot: forget the gaps (neither filled nor failed) and any replay."""
        if self.replay is not None:
            self.replay.close()
            self.replay = None
        self.gaps = []
        self.replay_failures = 0
        self.replay_retry_at = 0.0
        if self.rerequest is not None:
            self.rerequest.wanted = []

    def close(self) -> None:
        if self.rerequest is not None:
            self.rerequest.close()
        if self.replay is not None:
            self.replay.close()
            self.replay = None
        wait_closed()  # replay sessions logging out in the background are closed before we return

    # -- planning -------------------------------------------------------------------------------
    def _plan(self, now: float) -> None:
        self._track(self.seq.missing(), now)
        if not self.gaps:
            self._end_replay()
            return
        # the deadline is judged on the gaps just read from the sequencer: planning below may deliver (a new
        # replay session's first poll), and a gap it closes must not make the feed STALE
        oldest = min(g.detected for g in self.gaps)
        if now - oldest > self.policy.deadline and self.seq.state != "STALE":
            g = min(self.gaps, key=lambda x: x.detected)
            reason = (f"gap [{g.first}, {g.end}) open for {now - oldest:.1f} s"
                      + (f" ({g.last_error})" if g.last_error else ""))
            log.error("feed STALE: %s; recovery keeps trying", reason)
            self.stats.gave_up += 1
            self.seq.give_up(reason)
        for g in self.gaps:
            if not g.replay:
                self._rerequest(g, now)
        self._replay(now)

    def _track(self, ranges: list[tuple[int, int]], now: float) -> None:
        """Match the sequencer's missing ranges to the gaps already known (a gap may shrink or split)."""
        old = self.gaps
        new = []
        for a, b in ranges:
            parents = [g for g in old if g.first < b and a < g.end]
            if not parents:
                new.append(Gap(a, b, now, retry_at=now + self.policy.request_delay))
                continue
            p = min(parents, key=lambda g: g.detected)
            req = p.request
            if req is not None and not (req[0] < b and a < req[1]):
                req = None  # this piece is not what the request asked for
            elif req is not None and a > req[0]:  # the answer made progress: ask for the rest now
                req = None
                p.failures = 0
            new.append(Gap(a, b, p.detected, p.failures, req, p.retry_at, p.replay, p.no_replay, p.last_error,
                           p.server))
        for g in old:
            if not any(g.first < b and a < g.end for a, b in ranges):
                self.stats.gap_filled(now - g.detected)
                self._emit(GapFilled(now, g.first, g.end, round(now - g.detected, 6)))
        self.gaps = new
        if self.rerequest is not None:
            self.rerequest.wanted = [(g.first, g.end) for g in new]

    def _rerequest(self, g: Gap, now: float) -> None:
        p = self.policy
        replay_ok = bool(self.replay_servers) and not g.no_replay
        too_big = g.end - g.first > p.rerequest_max
        if self.rerequest is None or replay_ok and (too_big or g.failures >= p.rerequest_attempts):
            g.replay = replay_ok
            return
        if g.request is not None:
            if now - g.request[2] < p.request_timeout:
                return
            g.failures += 1
            self.stats.rerequest_timeouts += 1
            g.last_error = f"re-request of [{g.request[0]}, {g.request[1]}) unanswered"
            log.warning("%s (attempt %d)", g.last_error, g.failures)
            self._emit(RecoveryFailed(now, "rerequest", g.last_error, g.server))
            g.request = None
            g.retry_at = now + min(p.max_backoff, p.backoff * (1 << min(g.failures - 1, 30)))
            if g.failures >= p.rerequest_attempts and replay_ok:
                g.replay = True
                return
        if now < g.retry_at:
            return
        if g.no_replay and g.failures >= p.rerequest_attempts:
            g.no_replay = False  # both ways failed: give TCP replay another chance
            g.failures = 0
        count = min(g.end - g.first, MAX_REQUEST)
        server = self.rerequest_servers[g.failures % len(self.rerequest_servers)]
        session = self.seq.session.encode("ascii").ljust(10)
        if self.rerequest.request(session, g.first, count, server):
            self.stats.rerequests += 1
        g.request = (g.first, g.first + count, now)
        g.server = "{}:{}".format(*server)
        self._emit(RecoveryAttempt(now, "rerequest", g.first, g.first + count, g.server))

    def _replay(self, now: float) -> None:
        wanted = [g for g in self.gaps if g.replay]
        if not wanted:
            return
        first = min(g.first for g in wanted)
        end = max(g.end for g in wanted)
        c = self.replay
        if c is not None and c.state == "failed":
            self._replay_failed(c.reason, now, progress=c.messages > 0)
            c = None
        if c is not None and c.state == "done":
            self._replay_done(c)
            c = None
        if c is not None:
            c.want(max(end, c.next_seq))  # grows with new gaps; at next_seq the client logs out
            return
        if now < self.replay_retry_at:
            return
        server = self.replay_servers[self.replay_failures % len(self.replay_servers)]
        session = self.seq.session.encode("ascii").ljust(10)
        log.info("TCP replay of [%d, %d) from %s:%d", first, end, *server)
        self.stats.replay_sessions += 1
        self._emit(RecoveryAttempt(now, "replay", first, end, "{}:{}".format(*server)))
        self.replay = ReplayClient(server, self.user, self.password, session, first, end, self.clock,
                                   self._on_replay, heartbeat_interval=self.policy.heartbeat_interval,
                                   server_timeout=self.policy.server_timeout,
                                   connect_timeout=self.policy.connect_timeout)
        self.replay.poll()

    def _replay_failed(self, reason: str, now: float, progress: bool) -> None:
        """A session that brought messages before it broke resumes at once on the same server; one
        that brought nothing counts towards the next server, the backoff and the fall-back."""
        p = self.policy
        self.stats.replay_failures[reason] = self.stats.replay_failures.get(reason, 0) + 1
        self._emit(RecoveryFailed(now, "replay", reason, "{}:{}".format(*self.replay.address)))
        if progress:
            log.warning("TCP replay broke off (%s) after %d messages; resuming", reason, self.replay.messages)
            self.replay.close()
            self.replay = None
            return
        self.replay_failures += 1
        delay = min(p.max_backoff, p.backoff * (1 << min(self.replay_failures - 1, 30)))
        self.replay_retry_at = now + delay
        fall_back = self.replay_failures % p.replay_attempts == 0 and self.rerequest is not None
        for g in self.gaps:
            if g.replay:
                g.last_error = f"replay: {reason}"
                if fall_back:  # the replay servers keep failing: re-request these gaps for a while
                    g.replay, g.no_replay, g.failures, g.request = False, True, 0, None
        log.warning("TCP replay failed: %s; %s", reason,
                    "re-requesting instead" if fall_back else f"next server in {delay:.2f} s")
        self.replay.close()
        self.replay = None

    def _replay_done(self, c: ReplayClient) -> None:
        if c.reason == "end of session":  # 'Z': the server has nothing after next_seq in this session
            self.seq.feed_end_of_session(c.next_seq, LINE_REPLAY, self.sink)
        c.close()
        self.replay = None

    def _end_replay(self) -> None:
        if self.replay is not None and self.replay.state == "done":
            self._replay_done(self.replay)
        elif self.replay is not None and self.replay.state == "failed":
            self.replay.close()
            self.replay = None
        elif self.replay is not None:
            self.replay.want(self.replay.next_seq)  # nothing left to fetch: log out

    def _on_replay(self, buf, offset: int, count: int, first_seq: int) -> None:
        self.seq.feed_blocks(buf, offset, count, first_seq, LINE_REPLAY, self.sink, timestamp_ns=time.time_ns())

    def _emit(self, event) -> None:
        if self.on_status is not None:
            self.on_status(event)

    # -- results --------------------------------------------------------------------------------
    def filled(self) -> dict:
        return {"rerequest": self.seq.line(LINE_REREQUEST).first, "replay": self.seq.line(LINE_REPLAY).first}
