"""Every key of the feed configuration refuses a bad value with an error that names the key and says
what it accepts (the range or the form)."""

import pytest

from xdpfeed.multicast.feed import config
from xdpfeed.multicast.feed.recovery import RecoveryPolicy

SECONDS = ("request_delay", "request_timeout", "backoff", "max_backoff", "deadline", "heartbeat_interval",
           "server_timeout", "connect_timeout")
COUNTS = {"rerequest_max": 1 << 40, "rerequest_attempts": 1000, "replay_attempts": 1000}

CASES = [
    ("feed", "name", 5, "feed.name: expected a non-empty string"),
    ("feed", "name", "", "feed.name: expected a non-empty string"),
    ("feed", "line_a", "bogus:x", "feed.line_a: unknown source scheme 'bogus'"),
    ("feed", "line_b", "udp:239.1.1.1:5000@lo?frames=1", "feed.line_b: bad source"),
    ("feed", "start", "two", 'feed.start: expected "one", "first" or "snapshot"'),
    ("recovery", "resync", "never", 'recovery.resync: expected "stale" or "snapshot"'),
    ("feed", "book", "yes", "feed.book: expected true or false"),
    ("feed", "latency", 1, "feed.latency: expected true or false"),
    ("feed", "venue_time", "no", "feed.venue_time: expected true or false"),
    ("feed", "record", "", "feed.record: expected a non-empty string"),
    ("feed", "outputs", 5, "feed.outputs: expected a list of output URIs"),
    ("feed", "venue", "", "feed.venue: expected a non-empty string"),
    ("feed", "outputs", ["csv:day.csv"], "feed.outputs: unknown output 'csv:day.csv': scheme csv: is not one of"),
    ("feed", "outputs", ["parquet:pq?row_group=many"], "feed.outputs: parquet:pq?row_group=many: row_group must be"),
    ("recovery", "rerequest", ["nohostport"], "recovery.rerequest: expected HOST:PORT with a port in 1..65535"),
    ("recovery", "replay", ["h:99999"], "recovery.replay: expected HOST:PORT with a port in 1..65535"),
    ("recovery", "replay", 7, 'recovery.replay: expected a list of "HOST:PORT"'),
    ("recovery", "glimpse", ["nohostport"], "recovery.glimpse: expected HOST:PORT with a port in 1..65535"),
    ("recovery", "user", "TOOLONGUSER", "recovery.user: expected 1..6 ASCII characters"),
    ("recovery", "password_file", "/nonexistent/pw", "recovery.password_file: /nonexistent/pw: No such file"),
    ("metrics", "addr", "nowhere", 'metrics.addr: expected HOST:PORT (e.g. 127.0.0.1:9464), "auto"'),
    ("sequencer", "hold_messages", 1, "sequencer.hold_messages: expected an integer in 2..67108864"),
    ("sequencer", "slot_bytes", True, "sequencer.slot_bytes: expected an integer in 4..65537"),
    ("sequencer", "hold_arena_bytes", 0, "sequencer.hold_arena_bytes: expected an integer in 1..17179869184"),
]
CASES += [("recovery", k, -1, f"recovery.{k} must be a number of seconds in") for k in SECONDS]
CASES += [("recovery", k, "x", f"recovery.{k} must be a number of seconds in") for k in SECONDS]
CASES += [("recovery", k, hi + 1, f"recovery.{k} must be an integer in 0..{hi}") for k, hi in COUNTS.items()]


@pytest.mark.parametrize("section, key, value, message", CASES, ids=lambda x: str(x)[:30])
def test_bad_value_names_the_key_and_what_it_accepts(section, key, value, message):
    with pytest.raises(config.ConfigError) as e:
        config.from_dict({section: {key: value}})
    assert str(e.value).startswith(message), str(e.value)


def test_every_key_has_a_case():
    covered = {(s, k) for s, k, _, _ in CASES}
    known = {(s, k) for s, keys in config._SECTIONS.items() for k in keys}
    assert known == covered, known ^ covered
    assert set(SECONDS) | set(COUNTS) == {f.name for f in __import__("dataclasses").fields(RecoveryPolicy)}
