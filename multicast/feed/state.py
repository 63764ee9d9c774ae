"""Typed, read-only views of a feed's state: what the sequencer (its one owner) knows, as named fields.

`FeedState` is a picture of the whole feed (SYNCHRONIZED / GAP_FILL / STALE / SNAPSHOT and why, where it stands,
what it delivered, dropped and lost, its STALE episodes); `LineState` one line's (A, B, or the two
recovery lines). Nothing outside the sequencer reads its compiled state records; everything else
(recovery, metrics, the CLI, summaries, consumers) reads these.
"""

from dataclasses import asdict, dataclass

SYNCHRONIZED, GAP_FILL, STALE, SNAPSHOT = "SYNCHRONIZED", "GAP_FILL", "STALE", "SNAPSHOT"
STATES = (SYNCHRONIZED, GAP_FILL, STALE, SNAPSHOT)  # index = the number metrics export; SNAPSHOT: joining late
LINE_NAMES = ("A", "B", "rerequest", "replay")


@dataclass(frozen=True, slots=True)
class FeedState:
    state: str  # SYNCHRONIZED, GAP_FILL, STALE or SNAPSHOT (a late join waiting for its snapshot)
    reason: str  # why the feed is STALE ("" when it is not)
    session: str  # the MoldUDP64 session followed ("" before the first packet)
    next_seq: int  # next sequence number to deliver (0 before the first packet)
    highest_seq: int  # next sequence number known to exist
    held: int  # messages waiting in the hold queue
    missing: int  # messages known to exist, neither delivered nor held
    end_of_session: bool
    delivered: int
    duplicates: int
    gaps: int  # gaps detected
    gap_messages: int  # messages in those gaps when detected
    hold_overflow: int  # messages dropped because the hold queue was full (recovered later, or lost)
    old_session_packets: int  # packets of a session already left behind
    wrong_session_answers: int  # recovery answers for another session
    sessions: int  # sessions followed
    abandoned: int  # messages of a left session never delivered
    stale_episodes: int  # times the feed went STALE, recovered ones included
    stale_seconds_total: float  # time spent STALE, an open episode up to now
    stale_seconds_longest: float
    snapshots: int = 0  # snapshots the feed continued from (late join, resync)
    snapshot_covered: int = 0  # held messages a snapshot already contained (dropped; neither duplicate nor lost)
    snapshot_skipped: int = 0  # messages after the last delivered one that a resync snapshot stood in for
    awaiting_snapshot: bool = False  # a late join still waiting for its snapshot

    @property
    def stale(self) -> bool:
        return self.state == STALE

    @property
    def finished(self) -> bool:
        """End of Session seen and nothing missing: the session is complete (a late join once its snapshot came:
        one that joins after the end still delivers the day's final state)."""
        return self.end_of_session and self.next_seq >= self.highest_seq and not self.awaiting_snapshot

    @property
    def lost(self) -> int:
        """Messages known to exist and not delivered: missing or held now, or abandoned with a session."""
        return self.abandoned + max(0, self.highest_seq - self.next_seq)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LineState:
    packets: int
    messages: int  # message blocks received
    first: int  # messages whose first copy came on this line
    duplicates: int
    gaps: int  # gaps this line shows on its own
    gap_messages: int
    last_packet_ns: int  # receive time of its last packet
    next_seq: int  # the line's own next sequence number
    heartbeats: int
    end_of_session: int  # End of Session packets seen

    def as_dict(self) -> dict:
        return asdict(self)
