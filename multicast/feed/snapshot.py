"""Snapshots for a late join and for a resync: the control plane that gets the venue's state from its
GLIMPSE 5.0 servers (docs/snapshot.md).

`SnapshotLoader.start(session, resync)` begins: log into the servers in order (multicast.feed.glimpse_client)
for the feed's session; `poll()` drives the connection from the handler's loop (`fileobjs()` to wait on,
`next_timer()` for the retry); `take()` hands over a complete snapshot once, `applied()` counts it.
A failed attempt — login rejected, connection refused or dropped mid-snapshot, server silent, End of
Session before End of Snapshot, or a snapshot the Feed refused with `refuse(reason)` (older than what it
delivered) — is logged, reported (SnapshotFailed) and retried on the next server after a backoff that doubles up to the
policy's longest; a partial snapshot is dropped. `failing_since` says how long no snapshot has come, so
the Feed can go STALE with the last reason while the loader keeps trying. The clock is injected.
"""

import logging
from dataclasses import dataclass, field

from xdpfeed.multicast.feed.glimpse_client import GlimpseClient
from xdpfeed.multicast.feed.status import SnapshotFailed
from xdpfeed.multicast.wire import soupbintcp as sb

log = logging.getLogger("xdpfeed.snapshot")


@dataclass
class Snapshot:
    records: object  # uint8 array: [uint16 length][message] records, End of Snapshot not included
    messages: int
    itch_seq: int  # the venue's state after this ITCH message
    server: str
    seconds: float  # from the first attempt to its arrival
    resync: bool


@dataclass
class SnapshotStats:
    attempts: int = 0
    snapshots: int = 0  # complete snapshots handed over
    messages: int = 0
    failures: dict = field(default_factory=dict)  # reason → count
    last_seconds: float | None = None  # start to complete, the latest one

    def as_dict(self) -> dict:
        return {"attempts": self.attempts, "snapshots": self.snapshots, "messages": self.messages,
                "failures": dict(self.failures), "last_seconds": self.last_seconds}


class SnapshotLoader:
    def __init__(self, servers, user: str, password: str, clock, policy, on_status=None):
        self.servers = list(servers)
        self.user, self.password = user, password
        self.clock, self.policy, self.on_status = clock, policy, on_status
        self.client: GlimpseClient | None = None
        self.active = False
        self.resync = False
        self.session = b""
        self.failures = 0  # failed attempts in a row (picks the server and the backoff)
        self.retry_at = 0.0
        self.started = 0.0
        self.failing_since: float | None = None
        self.last_error = ""
        self.stats = SnapshotStats()
        self._ready: Snapshot | None = None

    @staticmethod
    def _name(server) -> str:
        return "{}:{}".format(*server)

    def start(self, session: str, resync: bool) -> None:
        """Get a snapshot of `session` (no-op while one is being fetched)."""
        if self.active:
            return
        self.active, self.resync, self._ready = True, resync, None
        self.session = sb.normalize_session(session)
        self.failures, self.retry_at, self.started = 0, 0.0, self.clock()
        self.failing_since, self.last_error = None, ""
        log.info("snapshot of session %r wanted (%s)", session, "resync" if resync else "late join")
        self._connect()

    def cancel(self) -> None:
        """No snapshot needed any more (the gap was recovered after all)."""
        if self.client is not None:
            self.client.close()
            self.client = None
        self.active, self._ready = False, None

    def close(self) -> None:
        self.cancel()

    def _connect(self) -> None:
        server = self.servers[self.failures % len(self.servers)]
        self.stats.attempts += 1
        self.client = GlimpseClient(server, self.user, self.password, self.session, self.clock,
                                    heartbeat_interval=self.policy.heartbeat_interval,
                                    server_timeout=self.policy.server_timeout,
                                    connect_timeout=self.policy.connect_timeout)
        self.client.poll()

    # -- the handler's loop ---------------------------------------------------------------------
    def fileobjs(self) -> tuple[list, list]:
        c = self.client
        if c is None or not c.live:
            return [], []
        return [c], [c] if c.wants_write else []

    def next_timer(self) -> float:
        if not self.active:
            return 1.0
        if self.client is None:
            return max(0.0, self.retry_at - self.clock())
        return self.policy.heartbeat_interval / 2

    def poll(self) -> None:
        if not self.active or self._ready is not None:
            return
        c = self.client
        if c is None:
            if self.clock() >= self.retry_at:
                self._connect()
            return
        c.poll()
        if c.complete:
            now = self.clock()
            server = self._name(c.address)
            self._ready = Snapshot(c.snapshot, c.snapshot_messages, c.itch_seq, server, round(now - self.started, 6),
                                   self.resync)
            log.info("snapshot from %s: %d messages, the state after ITCH message %d (%.3f s)", server,
                     self._ready.messages, c.itch_seq, now - self.started)
            self.client = None
        elif c.state == "failed":
            self._failed(c.reason, self._name(c.address))

    def _failed(self, reason: str, server: str) -> None:
        p, now = self.policy, self.clock()
        if self.client is not None:
            self.client.close()
            self.client = None
        self.failures += 1
        self.stats.failures[reason] = self.stats.failures.get(reason, 0) + 1
        self.last_error = f"snapshot from {server}: {reason}"
        if self.failing_since is None:
            self.failing_since = now
        delay = min(p.max_backoff, p.backoff * (1 << min(self.failures - 1, 30)))
        self.retry_at = now + delay
        nxt = self._name(self.servers[self.failures % len(self.servers)])
        log.warning("%s; trying %s in %.2f s", self.last_error, nxt, delay)
        if self.on_status is not None:
            self.on_status(SnapshotFailed(now, server, reason, nxt))

    def take(self) -> Snapshot | None:
        """A complete snapshot, once; the Feed applies it (and says so with `applied`), or refuses it."""
        snap, self._ready = self._ready, None
        if snap is not None:
            self.active = False
        return snap

    def applied(self, snap: Snapshot) -> None:
        """The Feed went on from `snap`: counted."""
        self.stats.snapshots += 1
        self.stats.messages += snap.messages
        self.stats.last_seconds = snap.seconds

    def refuse(self, snap: Snapshot, reason: str) -> None:
        """The Feed cannot use `snap`: count it as a failure and try again."""
        self.active = True
        self._failed(reason, snap.server)
