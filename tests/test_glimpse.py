"""Late join and resynchronisation from a GLIMPSE 5.0 snapshot: the venue's snapshot rebuilds its book,
a handler joining at 60 % of a day with loss on both lines ends at the venue's book with every message after
the snapshot delivered once and in order, a gap that recovery gives up on is resolved by a fresh snapshot,
and the faults (login rejected, connection cut mid-snapshot, a snapshot older than what was delivered,
no server at all) end in another server, a retry, or STALE with the reason."""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from test_handler import venue_book
from test_sinks import book_levels, dbn_levels

from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange.glimpse import SnapshotBuilder
from xdpfeed.multicast.exchange.glimpse_server import GlimpseFault, GlimpseServer
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.feed.config import ConfigError
from xdpfeed.multicast.feed.consumers import MessageBatch
from xdpfeed.multicast.feed.feed import Feed
from xdpfeed.multicast.feed.metrics import FeedCollector
from xdpfeed.multicast.wire.glimpse import count_records, encode_end_of_snapshot, parse_end_of_snapshot

from helpers import eventually, venue_for

F_SNAPSHOT = 0x20


@pytest.fixture(scope="module")
def day():
    return DayStore(synthetic.generate(200_000, 60, seed=21)[0], "GLIMPSE001")


class Recorder:
    """What a consumer saw: live batches (first seq, count), snapshot messages, status events in order."""

    def __init__(self):
        self.live, self.snapshot, self.events, self.order = [], 0, [], []

    def on_messages(self, batch):
        if batch.snapshot:
            self.snapshot += batch.count
            self.order.append("snapshot")
        else:
            self.live.append((batch.first_seq, batch.count))
            self.order.append("live")

    def on_status(self, event):
        self.events.append(event)
        if event.kind in ("snapshot_begin", "snapshot_end"):
            self.order.append(event.kind)

    def kinds(self):
        return [e.kind for e in self.events]

    def of(self, kind):
        return [e for e in self.events if e.kind == kind]

    def live_seqs(self):
        return np.concatenate([np.arange(a, a + n) for a, n in self.live]) if self.live else np.zeros(0, np.int64)


def decode(stream):
    """Every message of an ITCH stream, as the decoder's per-type tables."""
    stream = np.ascontiguousarray(stream)
    n = int(count_records(stream))
    return MessageBatch(n).set(stream, 1, n, np.zeros(n, dtype=np.int64)).decoded()


def wait_published(venue, n):
    while venue.publisher.published <= n:
        time.sleep(0.002)


def extra_glimpse(venue, fault):
    """Another GLIMPSE server of the same venue, misbehaving as told. Start the venue first: this server binds
    port 0, and the kernel may hand it the port venue_for picked for the venue's replay server, free until the
    venue binds it (a bind that then failed: Address already in use)."""
    return GlimpseServer(venue.store, venue.config.users, published=lambda: venue.publisher.published,
                         fault=fault).start()


def address(server):
    return "{}:{}".format(*server.address)


# -- the venue's snapshot ------------------------------------------------------------------------------
def test_end_of_snapshot_message():
    g = encode_end_of_snapshot(123456)
    assert g == b"G123456" + b" " * 14 and len(g) == 21 and parse_end_of_snapshot(g) == 123456
    for bad in (b"G" + b"x" * 20, b"A" + b"1" * 20, b"G12"):
        with pytest.raises(ValueError):
            parse_end_of_snapshot(bad)
    with pytest.raises(ValueError, match="does not fit"):
        encode_end_of_snapshot(10 ** 20)


@pytest.mark.parametrize("upto", [1, 20_000, 120_000, 199_999])
def test_snapshot_rebuilds_the_venue_book(day, upto):
    snap, n = SnapshotBuilder(day).records(upto)
    raw = np.frombuffer(snap, dtype=np.uint8)
    ref = OrderBook()
    ref.apply_stream(day.records, 0, int(day.offsets[upto]))
    mine = OrderBook()
    mine.apply_stream(raw)  # End of Snapshot is not ITCH: counted as an unknown type, nothing else
    assert mine.checksum() == ref.checksum() and mine.live_orders == ref.live_orders
    assert mine.stat()["unknown_refs"] == 0 and mine.stat()["duplicate_adds"] == 0
    assert parse_end_of_snapshot(snap[-21:]) == upto
    tables = decode(raw[:-23])
    before = decode(day.records[: int(day.offsets[upto])])
    kinds = {t: len(tables[t]) for t in "SRHYhNAFEXDUCPQBLIKVWJ"}
    assert n == sum(kinds.values()) + 1  # and 'G'
    assert {t for t, k in kinds.items() if k} <= set("SRHYhNAF")
    assert kinds["R"] == len(set(before["R"]["stock_locate"].tolist()))
    for loc in range(1, 61):
        assert mine.symbol(loc) == ref.symbol(loc) and mine.trading_state(loc) == ref.trading_state(loc)
    # an order added with attribution (F) keeps its MPID; the others in F are replacements of attributed ones
    attributed = dict(zip(before["F"]["order_reference_number"].tolist(), before["F"]["attribution"].tolist(),
                          strict=True))
    got = dict(zip(tables["F"]["order_reference_number"].tolist(), tables["F"]["attribution"].tolist(), strict=True))
    kept = {r: m for r, m in got.items() if r in attributed}
    assert kept == {r: attributed[r] for r in kept} and (len(kept) > 0) == (upto > 1000)
    assert set(got) - set(kept) <= set(before["U"]["new_order_reference_number"].tolist())
    assert not set(tables["A"]["order_reference_number"].tolist()) & set(attributed)
    # reference order: the order they entered the book
    refs = np.concatenate([tables["A"]["order_reference_number"], tables["F"]["order_reference_number"]])
    assert len(refs) == ref.live_orders and len(set(refs.tolist())) == len(refs)


# -- late join -----------------------------------------------------------------------------------------
def test_late_join_at_60_percent_with_loss_on_both_lines(day, tmp_path):
    from xdpfeed.multicast.feed.warmup import warm_up

    warm_up()  # compiled before the venue starts: a cold cache must not make the handler join after the end
    rec = Recorder()
    with venue_for(day, venue={"rate": 40_000, "loss_a": 0.05, "loss_b": 0.05, "seed": 7,
                               "glimpse_port": 0}) as (v, keys):
        v.start()
        wait_published(v, int(day.count * 0.6))
        with Feed(**keys, start="snapshot", glimpse=[v.glimpse_address], consumers=[rec],
                  outputs=[f"dbn:{tmp_path}/day.dbn", f"itch:{tmp_path}/day.itch"]) as f:
            assert f.state.state == "SNAPSHOT"
            why = f.run(until_eos=True, idle_timeout=30)
            s = f.summary()
            assert why == "complete" and s["lost"] == 0 and s["state"] == "SYNCHRONIZED"
            assert f.book.checksum() == venue_book(day)
    begin, = rec.of("snapshot_begin")
    end, = rec.of("snapshot_end")
    assert not begin.resync and end.skipped == 0 and end.next_seq == begin.itch_seq + 1
    assert day.count * 0.6 <= begin.itch_seq < day.count
    assert begin.messages == rec.snapshot == s["snapshots"]["messages"] > 1000
    # the snapshot comes between its events, before any live message; then every message after it, once, in order
    first = rec.order.index("snapshot_begin")
    assert rec.order[first:].count("snapshot") == rec.order.count("snapshot")
    assert "live" not in rec.order[:rec.order.index("snapshot_end")]
    seqs = rec.live_seqs()
    assert np.array_equal(seqs, np.arange(end.next_seq, day.next_seq))
    assert s["delivered"] == day.count - begin.itch_seq
    assert s["gaps"] > 0 and s["filled_rerequest"] + s["filled_replay"] > 0  # the loss was recovered
    assert s["snapshots"]["covered"] > 0  # lines were held while the snapshot came
    # DBN: the snapshot's records flagged F_SNAPSHOT, first; replayed the standard way, the venue's book
    import databento as db

    recs = db.DBNStore.from_file(f"{tmp_path}/day.dbn").to_ndarray()
    snap = (recs["flags"] & F_SNAPSHOT) != 0
    assert snap.sum() >= begin.messages - 200 and snap[: snap.sum()].all()
    levels, _ = dbn_levels(f"{tmp_path}/day.dbn")
    book = OrderBook()
    book.apply_stream(day.records)
    assert levels == book_levels(book)
    # itch: the snapshot, then the day from its sequence on
    raw = np.fromfile(f"{tmp_path}/day.itch", dtype=np.uint8)
    live = day.records[int(day.offsets[end.next_seq - 1]):]
    assert raw[-live.size:].tobytes() == live.tobytes()


def test_a_late_join_after_the_end_still_gets_the_final_state(day):
    """Joined once the venue is only repeating End of Session: not complete until the snapshot came; then the
    day's final book, and nothing live to deliver."""
    rec = Recorder()
    with venue_for(day, venue={"rate": 0, "glimpse_port": 0}) as (v, keys):
        v.start()
        assert v.wait(60)
        with Feed(**keys, start="snapshot", glimpse=[v.glimpse_address], consumers=[rec]) as f:
            assert f.run(until_eos=True, idle_timeout=30) == "complete"
            s = f.summary()
            assert f.book.checksum() == venue_book(day)
    end, = rec.of("snapshot_end")
    assert end.next_seq == day.next_seq and s["delivered"] == 0 and s["state"] == "SYNCHRONIZED"
    assert rec.snapshot == s["snapshots"]["messages"] > 0 and not rec.live


def test_late_join_faults_go_to_the_next_server(day):
    """A rejected login, then a connection cut mid-snapshot: each reported, the next server tried; the third
    serves, and the book is the venue's."""
    from xdpfeed.multicast.feed.warmup import warm_up

    warm_up()
    rec = Recorder()
    with venue_for(day, venue={"rate": 50_000, "seed": 8, "glimpse_port": 0}) as (v, keys):
        v.start()
        bad = [extra_glimpse(v, GlimpseFault(reject_login=True)), extra_glimpse(v, GlimpseFault(close_after=500))]
        names = [address(b) for b in bad]
        try:
            good = "{}:{}".format(*v.glimpse_address)
            wait_published(v, day.count // 2)
            with Feed(**keys, start="snapshot", glimpse=[*names, good],
                      consumers=[rec], backoff=0.01) as f:
                assert f.run(until_eos=True, idle_timeout=30) == "complete"
                assert f.book.checksum() == venue_book(day) and f.summary()["lost"] == 0
                snaps = f.summary()["snapshots"]
                samples = {(m.name, tuple(sorted(m.labels.items()))): m.value
                           for fam in FeedCollector(f, "itch").collect() for m in fam.samples}
        finally:
            for b in bad:
                b.stop()
    failed = rec.of("snapshot_failed")
    assert [e.server for e in failed] == names
    assert "login rejected: not authorized" in failed[0].reason
    assert failed[1].reason in ("disconnected", "socket error: [Errno 104] Connection reset by peer")
    assert failed[1].retry_server == good
    assert snaps["snapshots"] == 1 and snaps["attempts"] == 3 and sum(snaps["failures"].values()) == 2
    assert bad[1].stats["snapshot_messages"] == 500
    # Prometheus: the attempts and failures with recovery's (method "snapshot"), the snapshot used
    itch = (("feed", "itch"),)
    assert samples[("xdpfeed_recovery_requests_total", (("feed", "itch"), ("method", "snapshot")))] == 3
    assert samples[("xdpfeed_recovery_failures_total", (("feed", "itch"), ("method", "snapshot"),
                                                        ("reason", failed[0].reason)))] == 1
    assert samples[("xdpfeed_snapshots_total", itch)] == 1 and samples[("xdpfeed_snapshot_skipped_messages_total",
                                                                        itch)] == 0
    assert samples[("xdpfeed_snapshot_messages_total", itch)] == snaps["messages"] > 0
    assert np.array_equal(rec.live_seqs(), np.arange(rec.of("snapshot_end")[0].next_seq, day.next_seq))


def test_late_join_without_a_snapshot_goes_stale_with_the_reason(day):
    with venue_for(day, venue={"rate": 20_000, "seed": 9}) as (v, keys):
        v.start()
        server = extra_glimpse(v, GlimpseFault(reject_login=True))
        try:
            with Feed(**keys, start="snapshot", glimpse=[address(server)], deadline=0.5, backoff=0.01,
                      max_backoff=0.1) as f:
                stop = threading.Event()
                t = threading.Thread(target=lambda: f.run(stop=stop))
                t.start()
                try:
                    eventually(lambda: f.state.state == "STALE")
                finally:
                    stop.set()
                    t.join()
                st = f.state
                assert "login rejected: not authorized" in st.reason and st.delivered == 0
                assert f.book.live_orders == 0 and f.summary()["snapshots"]["attempts"] >= 2
        finally:
            server.stop()


# -- resync ----------------------------------------------------------------------------------------------
def resync_run(day, glimpse_faults=(), outputs=()):
    """A venue whose replay and re-request servers stop answering just before a burst lost on both lines (for
    3 s); the feed gives up on the gap after 0.5 s and resynchronises from GLIMPSE (extra servers with
    `glimpse_faults` first)."""
    rec = Recorder()
    with venue_for(day, venue={"rate": 40_000, "seed": 10, "burst_loss": 3000, "bursts": 1, "recovery_outage": 3.0,
                               "glimpse_port": 0}) as (v, keys):
        v.start()
        extra = [extra_glimpse(v, fault) for fault in glimpse_faults]
        try:
            with Feed(**keys, resync="snapshot", glimpse=[address(x) for x in extra] + [v.glimpse_address],
                      deadline=0.5, backoff=0.01, consumers=[rec], outputs=list(outputs)) as f:
                why = f.run(until_eos=True, idle_timeout=30)
                return rec, why, f.summary(), f.book.checksum(), v.summary()
        finally:
            for x in extra:
                x.stop()


def check_resync(day, rec, why, s, checksum):
    assert why == "complete" and s["state"] == "SYNCHRONIZED" and s["lost"] == 0
    assert checksum == venue_book(day)
    kinds = rec.kinds()
    stale = kinds.index("state_changed")  # SYNCHRONIZED → ... → STALE before the snapshot
    assert any(e.state == "STALE" for e in rec.of("state_changed"))
    begin, = rec.of("snapshot_begin")
    end, = rec.of("snapshot_end")
    assert begin.resync and stale < kinds.index("snapshot_begin") < kinds.index("snapshot_end")
    assert rec.of("state_changed")[-1].state == "SYNCHRONIZED"
    # delivered in order, once: up to the gap, then from the snapshot's sequence + 1 to the end
    seqs = rec.live_seqs()
    cut = int(np.flatnonzero(np.diff(seqs) != 1)[0]) + 1
    assert np.all(np.diff(seqs[:cut]) == 1) and seqs[0] == 1 and np.all(np.diff(seqs[cut:]) == 1)
    assert seqs[cut] == end.next_seq and seqs[-1] == day.count
    assert end.skipped == end.next_seq - seqs[cut - 1] - 1 == s["snapshots"]["skipped"] > 0
    assert s["delivered"] + end.skipped == day.count
    return begin, end


def test_resync_from_a_snapshot_when_recovery_gives_up(day, tmp_path):
    rec, why, s, checksum, venue = resync_run(day, outputs=[f"dbn:{tmp_path}/day.dbn"])
    assert venue["recovery_outages"] and venue["glimpse_server"]["snapshots"] == 1
    check_resync(day, rec, why, s, checksum)
    # DBN: a Clear per instrument opens the snapshot, so the file replayed the standard way is the venue's book
    import databento as db

    recs = db.DBNStore.from_file(f"{tmp_path}/day.dbn").to_ndarray()
    clears = recs[recs["action"] == b"R"]
    assert len(clears) == 60 and ((clears["flags"] & F_SNAPSHOT) != 0).all()
    book = OrderBook()
    book.apply_stream(day.records)
    assert dbn_levels(f"{tmp_path}/day.dbn")[0] == book_levels(book)


def test_a_venue_met_mid_day_serves_what_came_before(day):
    """The baseline of a late join: from sequence 1 by replay, against a venue that starts publishing at
    100,000 (`start_seq`, `xdpfeed simulate --start-seq`)."""
    with venue_for(day, venue={"rate": 100_000, "start_seq": 100_000}) as (v, keys):
        v.start()
        with Feed(**keys) as f:
            assert f.run(until_eos=True, idle_timeout=30) == "complete"
            s = f.summary()
            assert f.book.checksum() == venue_book(day)
    assert s["delivered"] == day.count and s["filled_replay"] >= 99_000 and s["lost"] == 0
    assert 0 < s["lines"]["A"]["messages"] <= day.count - 99_000  # only the day's rest went out live


def test_resync_refuses_a_snapshot_older_than_what_was_delivered(day):
    rec, why, s, checksum, _ = resync_run(day, [GlimpseFault(at_seq=1000)])
    check_resync(day, rec, why, s, checksum)
    failed = rec.of("snapshot_failed")
    assert failed and "older than what was delivered" in failed[0].reason
    assert s["snapshots"]["attempts"] >= 2 and s["snapshots"]["snapshots"] == 1


# -- configuration ---------------------------------------------------------------------------------------
def test_snapshot_needs_glimpse_servers_and_a_login():
    with pytest.raises(ConfigError, match=r'feed.start = "snapshot" needs recovery.glimpse'):
        Feed(line_a="udp:239.1.2.3:5000@lo", start="snapshot", metrics=None)
    with pytest.raises(ConfigError, match=r'recovery.resync = "snapshot" needs recovery.glimpse'):
        Feed(line_a="udp:239.1.2.3:5000@lo", resync="snapshot", metrics=None)
    with pytest.raises(ConfigError, match="recovery.glimpse needs recovery.user"):
        Feed(line_a="udp:239.1.2.3:5000@lo", start="snapshot", glimpse=["127.0.0.1:1"], metrics=None)


# -- the command line ------------------------------------------------------------------------------------
def test_run_start_snapshot_against_simulate_glimpse_port(tmp_path):
    """`xdpfeed simulate --glimpse-port` and `xdpfeed run --start snapshot --glimpse`, as a user runs them:
    the handler joins after a third of the day and ends at the venue's book."""
    from test_cli_run import REPO, env, finish, start_handler, start_venue, stop_venue

    from helpers import lines_pair

    # the handler must join within two seconds of the venue's day: its compiled code is loaded, not compiled
    subprocess.run([sys.executable, "-c", "from xdpfeed.multicast.feed.warmup import warm_up; warm_up()"], env=env(),
                   cwd=REPO, check=True, timeout=600)
    path = str(tmp_path / "day.itch")
    synthetic.generate_to_file(path, 90_000, seed=23)
    a, b = lines_pair()
    venue, addr = start_venue(path, a, b, "--rate", "30000", "--glimpse-port", "0", "--loss-a", "0.02")
    try:
        while True:  # progress lines: "published N/M messages"
            line = venue.stderr.readline()
            assert line, "the venue ended before a third of its day"
            if "published" in line and int(line.split("published ")[1].split("/")[0]) >= 30_000:
                break
        h, seen = start_handler(["-a", f"udp:{a}@lo", "-b", f"udp:{b}@lo", "--start", "snapshot", "--glimpse",
                                 addr["glimpse"], "--rerequest", addr["request"], "--replay", addr["replay"],
                                 "--user", "TEST01", "--until-eos", "-T", "json", "--idle-timeout", "60",
                                 "--metrics-addr", "off"])
        code, out, err = finish(h, seen)
    finally:
        vs = stop_venue(venue)
    assert code == 0, err[-2000:]
    s = json.loads(out)
    snap = s["snapshots"]
    assert snap["snapshots"] == 1 and snap["messages"] > 100 and s["lost"] == 0 and s["exit"] == "complete"
    assert 30_000 <= 90_000 - s["delivered"] < 90_000 and vs["glimpse_server"]["snapshots"] == 1
    book = OrderBook()
    book.apply_stream(np.fromfile(path, dtype=np.uint8))
    assert s["book_checksum"] == book.checksum()


@pytest.mark.parametrize("argv, message", [
    (["--start", "snapshot"], "--start snapshot needs --glimpse HOST:PORT"),
    (["--resync", "snapshot"], "--resync snapshot needs --glimpse HOST:PORT"),
    (["--start", "snapshot", "--glimpse", "nohostport"], "--glimpse: expected HOST:PORT"),
    (["--start", "snapshot", "--glimpse", "127.0.0.1:1"], "--glimpse needs --user"),
])
def test_run_snapshot_flags_are_checked(argv, message):
    from test_cli_run import REPO, XDPFEED, env

    r = subprocess.run(XDPFEED + ["run", "-a", "udp:239.1.1.1:5000@lo", *argv], capture_output=True, text=True,
                       env=env(), cwd=REPO, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
