"""The Feed as a library: consumers get exactly the delivered stream (live, with loss on both lines and
both kinds of recovery: byte for byte the venue's day, every seq once and in order), top-of-book events
carry the seq of the message that caused them, status events are typed and tell the state the sequencer
holds, a consumer that raises stops the feed or is detached, numba consumers get arrays, captures replay
through the same code, and the Feed takes the config's keys."""

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from xdpfeed import CompiledConsumer, ConfigError, Consumer, Feed, status
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.itch.decoder import ItchTables, decode_stream
from xdpfeed.multicast.itch.schema import TYPES
from xdpfeed.multicast.wire import counters as C

from conftest import REPO
from helpers import venue_and_feed

EXAMPLES = os.path.join(REPO, "examples")
N = 200_000  # messages in the capture


@pytest.fixture(scope="module")
def day():
    return DayStore(synthetic.generate(60_000, seed=23)[0], "FEEDTEST01")


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    d = tmp_path_factory.mktemp("capture")
    itch, pcap = str(d / "day.itch"), str(d / "day.pcap")
    synthetic.generate_to_file(itch, N, seed=5, pcap_path=pcap)  # many batches: 1,024 packets per read
    return itch, pcap


class Collect:
    """Keeps copies of everything it is given."""

    name = "collect"

    def __init__(self):
        self.streams, self.seqs, self.firsts, self.ts, self.events, self.batch_events, self.status = ([] for _ in
                                                                                                      range(7))
        self.decoded_counts = dict.fromkeys(TYPES, 0)

    def on_messages(self, batch):
        assert batch.count == batch.seq.size == batch.timestamp_ns.size and batch.seq[0] == batch.first_seq
        self.streams.append(batch.stream.tobytes())
        self.seqs.append(batch.seq.copy())
        self.firsts.append((batch.first_seq, batch.count))
        self.ts.append(batch.timestamp_ns.copy())
        tables = batch.decoded()
        assert batch.decoded() is tables  # decoded once per batch
        for t in TYPES:
            rows = tables[t]
            self.decoded_counts[t] += len(rows)
            if len(rows):  # each row's seq is that of its message in the batch
                assert rows["seq"].min() >= batch.first_seq and rows["seq"].max() < batch.first_seq + batch.count

    def on_top_of_book(self, events):
        first, count = self.firsts[-1]
        assert ((events["seq"] >= first) & (events["seq"] < first + count)).all()  # caused by this batch
        self.events.append(events.copy())

    def on_status(self, event):
        self.status.append(event)


def reference_events(records: np.ndarray) -> np.ndarray:
    """The book's top-of-book events for the whole day, each message numbered from 1."""
    got = []
    book = OrderBook(on_events=lambda e: got.append(e.copy()))
    book.apply_stream(records, first_seq=1)
    book.flush_events()
    return np.concatenate(got)


def test_a_consumer_gets_exactly_the_delivered_stream_live_with_loss_and_recovery(day):
    c = Collect()
    with venue_and_feed(day, consumers=[c], rerequest_max=1000,
                        venue={"loss_a": 0.1, "loss_b": 0.1, "burst_loss": 3000, "bursts": 2, "seed": 3,
                               "reorder": 0.01, "duplicate": 0.01}) as (venue, feed):
        venue.start()
        why = feed.run(until_eos=True, idle_timeout=60)
        s = feed.summary()
    assert why == "complete" and s["lost"] == 0
    assert s["filled_rerequest"] > 0 and s["filled_replay"] >= 6000  # both kinds of recovery were needed
    assert b"".join(c.streams) == bytes(day.records)  # byte for byte the venue's day
    seqs = np.concatenate(c.seqs)
    assert (seqs == np.arange(1, day.count + 1)).all()  # every seq once, in order
    assert (np.concatenate(c.ts) > 0).all()  # each message's receive time
    events = np.concatenate(c.events)
    want = reference_events(day.records)
    for col in ("seq", "locate", "bid_price", "bid_shares", "ask_price", "ask_shares", "timestamp"):
        assert (events[col] == want[col]).all(), col  # the seq of the message that caused it, and the rest
    assert sum(c.decoded_counts.values()) == day.count
    # typed status events, in the order they happened; the last state is the sequencer's
    assert c.status == list(feed.status_log)
    kinds = {type(e) for e in c.status}
    assert {status.SessionChanged, status.GapOpened, status.GapFilled, status.StateChanged, status.EndOfSession,
            status.RecoveryAttempt} <= kinds
    changes = [e for e in c.status if isinstance(e, status.StateChanged)]
    assert changes[0].state == "GAP_FILL" and changes[-1].state == feed.state.state == "SYNCHRONIZED"
    assert all(a.state == b.previous for a, b in zip(changes, changes[1:], strict=False))
    gaps = [e for e in c.status if isinstance(e, status.GapOpened)]
    assert len(gaps) == s["gaps"] and all(e.line in ("A", "B", "rerequest", "replay") for e in gaps)
    methods = {e.method for e in c.status if isinstance(e, status.RecoveryAttempt)}
    assert methods == {"rerequest", "replay"}


class Boom:
    name = "boom"

    def __init__(self, after: int):
        self.after, self.batches = after, 0

    def on_messages(self, batch):
        self.batches += 1
        if self.batches > self.after:
            raise ValueError("strategy bug")


def test_a_consumer_that_raises_stops_the_feed_with_its_name(capture, caplog):
    _, pcap = capture
    c = Collect()
    with Feed(line_a=f"pcap:{pcap}", consumers=[Boom(after=1), c]) as feed:
        why = feed.run()
        summary = feed.summary()
    assert why == "consumer failed" and feed.consumers.failed == ("boom", "on_messages: ValueError: strategy bug")
    assert summary["consumers"]["boom"] == {"batches": 1, "errors": 1, "detached": True}
    assert "consumer boom failed in on_messages: ValueError: strategy bug; the feed stops" in caplog.text
    failed = [e for e in feed.status_log if isinstance(e, status.ConsumerFailed)]
    assert [(e.consumer, e.detached) for e in failed] == [("boom", False)]
    assert summary["delivered"] < N  # stopped early


def test_detach_lets_the_feed_go_on_without_the_failed_consumer(capture):
    itch, pcap = capture
    c = Collect()
    with Feed(line_a=f"pcap:{pcap}", consumers=[Boom(after=2), c], on_consumer_error="detach") as feed:
        why = feed.run()
        summary = feed.summary()
    assert why == "sources exhausted" and feed.consumers.failed is None
    assert summary["consumers"]["boom"]["detached"] and summary["consumers"]["collect"]["errors"] == 0
    assert b"".join(c.streams) == open(itch, "rb").read()  # the others got everything


@njit(cache=True)
def _count_types(stream, seq, timestamp_ns, counts, seen):
    p = 0
    k = 0
    while p + 2 <= stream.size:
        n = (np.int64(stream[p]) << 8) | np.int64(stream[p + 1])
        counts[stream[p + 2]] += 1
        p += 2 + n
        k += 1
    seen[0] += k
    seen[1] = seq[-1]


@njit(cache=True)
def _count_events(events, counts, seen):
    seen[2] += events.size


def test_a_numba_consumer_gets_the_arrays(capture):
    itch, pcap = capture
    counts, seen = np.zeros(256, dtype=np.int64), np.zeros(3, dtype=np.int64)
    py = Collect()
    compiled = CompiledConsumer(on_messages=_count_types, on_top_of_book=_count_events, state=(counts, seen))
    with Feed(line_a=f"pcap:{pcap}", consumers=[compiled, py]) as feed:
        assert feed.run() == "sources exhausted"
    records = np.fromfile(itch, dtype=np.uint8)
    want = np.zeros(256, dtype=np.int64)
    tables, cnt = ItchTables(N), C.new()
    decode_stream(records, 0, records.size, np.uint16(0), tables.tables, tables.rows, tables.order_type,
                  tables.order_row, 0, cnt)
    for t in TYPES:
        want[ord(t)] = len(tables[t])
    assert (counts == want).all() and seen[0] == N and seen[1] == N
    assert seen[2] == sum(len(e) for e in py.events) > 0


def test_a_capture_replays_through_the_same_code(capture):
    itch, pcap = capture
    c = Collect()
    with Feed(line_a=f"pcap:{pcap}", consumers=[c]) as feed:
        assert feed.step(0) > 0  # a caller that owns its loop
        why = feed.run()
        checksum = feed.book.checksum()
    book = OrderBook()
    book.apply_stream(np.fromfile(itch, dtype=np.uint8))
    assert why == "sources exhausted" and checksum == book.checksum()
    assert b"".join(c.streams) == open(itch, "rb").read()


def test_plain_functions_as_a_consumer(capture):
    _, pcap = capture
    counted = []
    fn = Consumer(on_messages=lambda b: counted.append(b.count), name="fn")
    with Feed(line_a=f"pcap:{pcap}", consumers=[fn], book=False) as feed:
        feed.run()
        assert feed.book is None and sum(counted) == feed.state.delivered == N


def test_the_feed_takes_the_config_keys_and_names_a_bad_one(capture, tmp_path):
    _, pcap = capture
    with pytest.raises(ConfigError, match="unknown key 'line_c'"):
        Feed(line_a=f"pcap:{pcap}", line_c="x", warm=False)
    with pytest.raises(ConfigError, match="sequencer.hold_messages"):
        Feed(line_a=f"pcap:{pcap}", hold_messages=1, warm=False)
    with pytest.raises(ConfigError, match="recovery.deadline"):
        Feed(line_a=f"pcap:{pcap}", deadline=-1, warm=False)
    with pytest.raises(ConfigError, match="no line to read"):
        Feed(warm=False)
    with pytest.raises(ConfigError, match="needs recovery.user"):
        Feed(line_a=f"pcap:{pcap}", replay=["127.0.0.1:1"], warm=False)
    cfg = tmp_path / "feed.toml"
    cfg.write_text(f'[feed]\nname = "cfg"\nline_a = "pcap:{pcap}"\nbook = false\n[sequencer]\nhold_messages = 4096\n')
    with Feed.from_config(str(cfg), book=True, warm=False) as feed:  # an override wins over the file
        assert feed.name == "cfg" and feed.book is not None and feed.config.hold_messages == 4096
        assert feed.run() == "sources exhausted"


@pytest.mark.parametrize("script", sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py")))
def test_every_example_runs(script):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_BOUNDSCHECK", "NUMBA_CACHE_DIR")}
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, script)], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip()


def test_the_readme_library_example_runs(capture, tmp_path):
    """The example under "Use it as a library" in README.md, run as written on a capture."""
    text = open(os.path.join(REPO, "README.md")).read()
    section = text[text.index("## Use it as a library"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("\n```", section.index("```python"))]
    script = tmp_path / "readme_example.py"
    script.write_text(code.replace("pcap:day.pcap", f"pcap:{capture[1]}"))
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_BOUNDSCHECK", "NUMBA_CACHE_DIR")}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"sources exhausted {N} SYNCHRONIZED" in r.stdout
