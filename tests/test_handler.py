"""The live handler against the simulated venue over loopback multicast: loss on both lines, bursts
that hit both, reordering, duplication, and recovery servers that misbehave. Every run must end with
the delivered stream byte-identical to the venue's day and the same book, or loudly STALE."""

import dataclasses
import io

import pytest

from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange.replay_server import ReplayFault
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.feed.recovery import RecoveryPolicy

from helpers import captured_log, venue_and_feed


@pytest.fixture(scope="module")
def day():
    return DayStore(synthetic.generate(40_000, seed=11)[0], "TESTSESS01")


def venue_book(store) -> str:
    book = OrderBook()
    book.apply_stream(store.records)
    return book.checksum()


def run_feed(store, policy=None, replay=True, rerequest=True, deadline_s=20.0, **venue_kw):
    """Venue (threads) + Feed (this thread) until End of Session is complete or STALE.
    Returns (feed, why, record bytes, book, log text, venue)."""
    record = io.BytesIO()
    policy = dataclasses.asdict(policy or RecoveryPolicy(deadline=deadline_s))
    with captured_log() as logs, venue_and_feed(store, replay=replay, rerequest=rerequest, venue=venue_kw,
                                                consumers=[Record(record)], **policy) as (venue, feed):
        venue.start()
        why = feed.run(until_eos=True, idle_timeout=60)
    return feed, why, record.getvalue(), feed.book, logs.getvalue(), venue


class Record:
    """A consumer that keeps the delivered stream (what --record writes)."""

    def __init__(self, out):
        self.out = out

    def on_messages(self, batch):
        self.out.write(batch.stream.tobytes())


def assert_exact(store, h, why, record, book):
    s = h.summary()
    assert why == "complete", (why, s)
    assert s["lost"] == 0 and not s["stale"] and s["delivered"] == store.count
    assert record == bytes(store.records)  # byte-identical to the venue's day, in delivery order
    assert book.checksum() == venue_book(store)


def test_loss_on_both_lines_recovered_by_rerequest_and_replay(day):
    policy = RecoveryPolicy(rerequest_max=1000)
    h, why, record, book, logs, venue = run_feed(day, policy, loss_a=0.1, loss_b=0.1, burst_loss=3000, bursts=2,
                                                 reorder=0.01, duplicate=0.01, seed=5)
    assert_exact(day, h, why, record, book)
    s = h.summary()
    assert venue.summary()["lost_on_both_messages"] >= 6000
    assert s["filled_replay"] >= 6000 and s["filled_rerequest"] > 0  # bursts by replay, the rest by re-request
    assert s["duplicates"] > 0 and s["gaps"] > 0
    la, lb = s["lines"]["A"], s["lines"]["B"]
    assert la["gaps"] > 0 and lb["gaps"] > 0 and la["first"] > 0 and lb["first"] > 0
    assert la["first"] + lb["first"] + s["filled_rerequest"] + s["filled_replay"] == day.count
    assert "TCP replay of" in logs


def test_no_loss_needs_no_recovery(day):
    h, why, record, book, logs, venue = run_feed(day, seed=2)
    assert_exact(day, h, why, record, book)
    s = h.summary()
    assert s["gaps"] == 0 and s["filled_rerequest"] == 0 and s["filled_replay"] == 0
    assert s["duplicates"] == day.count  # every message came twice: once per line


def test_replay_rejects_login_then_rerequest_fills(day):
    policy = RecoveryPolicy(rerequest_max=100, replay_attempts=2, backoff=0.01)
    h, why, record, book, logs, _ = run_feed(day, policy, burst_loss=2000, bursts=1, seed=3,
                                             replay_fault=ReplayFault(reject_login=True))
    assert_exact(day, h, why, record, book)
    assert "login rejected: not authorized" in logs and "re-requesting instead" in logs
    assert h.summary()["filled_rerequest"] >= 2000


def test_replay_closes_mid_stream_and_resumes(day):
    policy = RecoveryPolicy(rerequest_max=100, backoff=0.01)
    h, why, record, book, logs, _ = run_feed(day, policy, burst_loss=5000, bursts=1, seed=4,
                                             replay_fault=ReplayFault(close_after=1500))
    assert_exact(day, h, why, record, book)
    assert "TCP replay broke off (disconnected) after 1500 messages; resuming" in logs
    assert h.summary()["filled_replay"] >= 5000
    assert h.summary()["recovery"]["replay_sessions"] >= 4  # 1,500 messages per connection


def test_replay_stalls_then_server_silent(day):
    policy = RecoveryPolicy(rerequest_max=100, backoff=0.01, server_timeout=0.3, heartbeat_interval=0.1)
    h, why, record, book, logs, _ = run_feed(day, policy, burst_loss=3000, bursts=1, seed=6,
                                             replay_fault=ReplayFault(stall_after=1000))
    assert_exact(day, h, why, record, book)
    assert "server silent" in logs


def test_a_stale_episode_that_recovered_is_reported(day):
    """The replay server stalls longer than the gap deadline: the feed goes STALE, then recovers. It ends
    SYNCHRONIZED with nothing lost, and the summary still says it was STALE, how often and how long."""
    policy = RecoveryPolicy(rerequest_max=100, backoff=0.01, server_timeout=0.6, heartbeat_interval=0.1,
                            deadline=0.3)
    h, why, record, book, logs, _ = run_feed(day, policy, burst_loss=3000, bursts=1, seed=6,
                                             replay_fault=ReplayFault(stall_after=1000))
    assert_exact(day, h, why, record, book)
    s = h.summary()
    assert s["state"] == "SYNCHRONIZED" and s["stale"] is False
    assert s["stale_episodes"] >= 1 and 0.2 < s["stale_seconds_longest"] <= s["stale_seconds_total"] < 30
    assert "feed STALE: gap [" in logs


def test_replay_answers_another_session(day):
    policy = RecoveryPolicy(rerequest_max=100, replay_attempts=1, backoff=0.01)
    h, why, record, book, logs, _ = run_feed(day, policy, burst_loss=2000, bursts=1, seed=7,
                                             replay_fault=ReplayFault(session=b"OTHERSESS1"))
    assert_exact(day, h, why, record, book)
    assert "session mismatch" in logs


def test_request_server_silent_then_replay(day):
    policy = RecoveryPolicy(rerequest_max=10_000, request_timeout=0.05, backoff=0.01)
    h, why, record, book, logs, _ = run_feed(day, policy, loss_a=0.15, loss_b=0.15, seed=8, request_silent=True)
    assert_exact(day, h, why, record, book)
    assert "unanswered" in logs
    assert h.summary()["filled_replay"] > 0 and h.summary()["filled_rerequest"] == 0


def test_everything_fails_goes_stale_with_the_reason(day):
    policy = RecoveryPolicy(rerequest_max=10_000, request_timeout=0.05, backoff=0.01, deadline=1.0,
                            max_backoff=0.1, server_timeout=1.0)
    h, why, record, book, logs, _ = run_feed(day, policy, burst_loss=2000, bursts=1, seed=9, request_silent=True,
                                             replay_fault=ReplayFault(reject_login=True))
    s = h.summary()
    assert why == "stale" and s["stale"] and s["lost"] >= 2000
    assert "feed STALE: gap [" in logs and ("login rejected" in logs or "unanswered" in logs)
    assert book.is_stale(1)  # consumers see the book flagged
    assert len(record) < day.records.size
