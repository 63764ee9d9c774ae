"""Status events: what happened to a feed, one small typed object each, for `on_status` consumers.

The sequencer and recovery report in their own terms; the Feed turns that into these events (and logs
them), so a consumer matches on the class (`isinstance(e, GapOpened)`, or `match e: case StateChanged(
state="STALE")`) instead of parsing strings. Every event carries `time` (the Feed's clock) and `kind`
(a short name, the same as in JSON).
"""

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class StatusEvent:
    time: float
    kind: str = field(init=False, default="status")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GapOpened(StatusEvent):
    """Sequences [first, end) are missing (seen on `line`)."""
    first: int
    end: int
    line: str
    kind: str = field(init=False, default="gap_opened")


@dataclass(frozen=True, slots=True)
class GapFilled(StatusEvent):
    """A gap is closed: every message of [first, end) was delivered, `seconds` after it was detected."""
    first: int
    end: int
    seconds: float
    kind: str = field(init=False, default="gap_filled")


@dataclass(frozen=True, slots=True)
class StateChanged(StatusEvent):
    """SYNCHRONIZED, GAP_FILL, STALE or SNAPSHOT; `reason` says why a feed went STALE."""
    state: str
    previous: str
    reason: str
    kind: str = field(init=False, default="state_changed")


@dataclass(frozen=True, slots=True)
class SessionChanged(StatusEvent):
    """Now following `session`; `abandoned` messages of the previous one were never delivered (-1: the
    first session)."""
    session: str
    abandoned: int
    kind: str = field(init=False, default="session_changed")


@dataclass(frozen=True, slots=True)
class EndOfSession(StatusEvent):
    """The session ends before `next_seq` (seen on `line`)."""
    next_seq: int
    line: str
    kind: str = field(init=False, default="end_of_session")


@dataclass(frozen=True, slots=True)
class RecoveryAttempt(StatusEvent):
    """Recovery asks `server` for [first, end) by `method` ("rerequest" or "replay")."""
    method: str
    first: int
    end: int
    server: str
    kind: str = field(init=False, default="recovery_attempt")


@dataclass(frozen=True, slots=True)
class RecoveryFailed(StatusEvent):
    """A recovery attempt failed: `reason` (a re-request unanswered, a login rejected, ...)."""
    method: str
    reason: str
    server: str
    kind: str = field(init=False, default="recovery_failed")


@dataclass(frozen=True, slots=True)
class SnapshotBegin(StatusEvent):
    """The snapshot from `server` (the venue's state after ITCH message `itch_seq`) is delivered now: the
    batches until SnapshotEnd carry `messages` snapshot messages (`batch.snapshot` is True) and the book
    is rebuilt from them (it was cleared: `resync` True when a gap that could not be recovered caused it)."""
    server: str
    itch_seq: int
    messages: int
    resync: bool
    kind: str = field(init=False, default="snapshot_begin")


@dataclass(frozen=True, slots=True)
class SnapshotEnd(StatusEvent):
    """The snapshot is delivered; the feed goes on from `next_seq` (= its ITCH sequence + 1). `skipped`
    messages after the last one delivered before it were never delivered: the snapshot stands in for
    them (a resync; 0 on a late join). `seconds`: from the first login attempt to now."""
    server: str
    next_seq: int
    skipped: int
    seconds: float
    kind: str = field(init=False, default="snapshot_end")


@dataclass(frozen=True, slots=True)
class SnapshotFailed(StatusEvent):
    """A snapshot attempt failed (a login rejected, the connection dropped mid-snapshot, a snapshot older
    than what was delivered, ...); the next one goes to `retry_server` after a backoff."""
    server: str
    reason: str
    retry_server: str
    kind: str = field(init=False, default="snapshot_failed")


@dataclass(frozen=True, slots=True)
class WrongSession(StatusEvent):
    """A recovery answer for another session was dropped."""
    session: str
    kind: str = field(init=False, default="wrong_session")


@dataclass(frozen=True, slots=True)
class ConsumerFailed(StatusEvent):
    """A consumer raised; it was detached (`detached`) or the feed stops."""
    consumer: str
    error: str
    detached: bool
    kind: str = field(init=False, default="consumer_failed")


@dataclass(frozen=True, slots=True)
class FeedStatus(StatusEvent):
    """In a handler of several feeds (multicast.feed.feeds): `event` happened to feed `feed`."""
    feed: str
    event: StatusEvent
    kind: str = field(init=False, default="feed_status")
