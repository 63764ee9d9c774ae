"""Latency by stage: the compiled histograms are HdrHistogram's own (index for index), a live feed measures
every stage from the packet's receive timestamp (and the venue's time on the wire), later stages never read
less than earlier ones, the file `run --latency-out` writes is an HdrHistogram log that `xdpfeed latency`
shows as a table, JSON and a plot, SIGUSR1 writes it during a run, and Prometheus gets the histograms."""

import json
import os
import signal
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from test_cli_run import REPO, XDPFEED, env, finish, start_handler, start_venue, stop_venue
from test_handler import day  # noqa: F401  (a fixture)

from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.feed.consumers import Consumer
from xdpfeed.multicast.latency import hdr, report
from xdpfeed.multicast.latency.stages import FeedLatency

from helpers import eventually, free_port, lines_pair, venue_and_feed


# -- the histograms --------------------------------------------------------------------------------------
def test_the_compiled_histogram_is_hdrhistograms_layout():
    rng = np.random.default_rng(3)
    values = np.concatenate([np.arange(0, 5000), rng.integers(1, 10 ** 12, 200_000),
                             [hdr.HIGHEST, 2 ** 31, 2 ** 31 - 1, 2 ** 40]]).astype(np.int64)
    counts = np.zeros((1, hdr.COUNTS_LEN), dtype=np.int64)
    stats = np.zeros((1, hdr.N_STATS), dtype=np.int64)
    hdr.record_values(counts, 0, values, stats)
    ref = HdrHistogram(hdr.LOWEST, hdr.HIGHEST, hdr.SIGNIFICANT_FIGURES)
    for v in values.tolist():
        ref.record_value(v)
    ours = hdr.to_hdrh(counts[0])
    assert np.array_equal(np.frombuffer(ours.counts, dtype=np.int64), np.frombuffer(ref.counts, dtype=np.int64))
    for p in (0, 50, 90, 99, 99.9, 99.99, 100):
        assert ours.get_value_at_percentile(p) == ref.get_value_at_percentile(p)
        assert hdr.value_at_percentile(counts[0], p) == ref.get_value_at_percentile(p)  # computed without hdrh
    assert hdr.max_value(counts[0]) == ref.get_max_value()
    assert ours.get_total_count() == values.size and ours.get_max_value() == ref.get_max_value()
    # what HdrHistogram's tools read back is the same histogram
    back = HdrHistogram.decode(ours.encode())
    assert back.get_total_count() == values.size
    assert back.get_value_at_percentile(99.9) == ref.get_value_at_percentile(99.9)


def test_record_since_skips_unknown_and_counts_out_of_range():
    counts = np.zeros((2, hdr.COUNTS_LEN), dtype=np.int64)
    stats = np.zeros((2, hdr.N_STATS), dtype=np.int64)
    ts = np.array([0, 0, 900, 900, 900, 990, 2000, -5], dtype=np.int64)  # 0 and below: unknown
    hdr.record_since(counts, 1, 1000, ts, 0, ts.size, stats)
    h = hdr.to_hdrh(counts[1])
    assert h.get_total_count() == 5 and stats[1].tolist() == [3, 0, 1] and counts[0].sum() == 0
    assert h.get_count_at_value(100) == 3 and h.get_count_at_value(10) == 1 and h.get_count_at_value(0) == 1
    hdr.record_since(counts, 0, hdr.HIGHEST * 2, np.array([1], dtype=np.int64), 0, 1, stats)
    assert stats[0, hdr.SATURATED] == 1 and hdr.to_hdrh(counts[0]).get_max_value() >= hdr.HIGHEST


def test_prometheus_buckets_from_the_histogram():
    counts = np.zeros(hdr.COUNTS_LEN, dtype=np.int64)
    values = np.array([500, 1000, 1001, 2500, 10 ** 6, 3 * 10 ** 9], dtype=np.int64)
    for v in values:
        counts[hdr.index_of(v)] += 1
    bounds = np.array([1000, 2000, 10 ** 6, 10 ** 9, 10 ** 10], dtype=np.int64)
    below, total, sum_ns = hdr.cumulative_at(counts, bounds)
    # a value counts below a bound when its HDR bucket ends there or before (0.1 % resolution): 10**6 sits in
    # the bucket [999,936, 1,000,447], so the 1 ms bucket does not hold it
    assert hdr.INDEX_VALUES[hdr.index_of(10 ** 6)] == 1_000_447
    assert below.tolist() == [2, 3, 4, 5, 6] and total == 6
    assert abs(sum_ns - values.sum()) / values.sum() < 0.001


# -- a live feed ------------------------------------------------------------------------------------------
def test_every_stage_of_a_live_feed(day, tmp_path):  # noqa: F811
    def slow(batch):
        time.sleep(0.003)

    with venue_and_feed(day, venue={"rate": 50_000, "loss_a": 0.02, "loss_b": 0.02, "seed": 4, "stamp_time": True},
                        venue_time=True, metrics=f"127.0.0.1:{free_port()}",
                        consumers=[Consumer(on_messages=slow, name="slow")],
                        outputs=[f"itch:{tmp_path}/day.itch"]) as (venue, feed):
        venue.start()
        assert feed.run(until_eos=True, idle_timeout=30) == "complete"
        s = feed.summary()
        port = feed.metrics_server.server_address[1]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        feed.latency.write(f"{tmp_path}/lat.hlog", "itch")
    lat = s["latency"]["stages"]
    assert list(lat) == ["venue", "venue_to_delivered", "read", "delivered", "book", "consumer:slow",
                         f"output:itch:{tmp_path}/day.itch"]
    packets = sum(ln["source"]["packets"] for ln in s["lines"].values())
    assert lat["read"]["count"] == packets and lat["read"]["unit"] == "packet"
    assert lat["delivered"]["count"] == lat["book"]["count"] == lat["consumer:slow"]["count"] == day.count
    # each message goes through the stages in order: no percentile of a later stage is below an earlier one's
    order = ["delivered", "book", "consumer:slow", f"output:itch:{tmp_path}/day.itch"]
    for p in ("p50", "p90", "p99", "p99.9", "max"):
        got = [lat[st][p] for st in order]
        assert got == sorted(got), (p, got)
    # the slow consumer's 3 ms per batch shows in its stage and every one after it
    assert lat["consumer:slow"]["p50"] - lat["book"]["p50"] >= 2_900_000
    # the venue's send time (stamped, same clock): the time on the wire, per packet of lines A and B
    wire = lat["venue"]
    assert 0 < wire["count"] <= packets and wire["negative"] == 0 and wire["p50"] < 20_000_000
    # end to end, per message: the wire and the handler; recovered messages carry the day's own times (the
    # simulator's replay), not a send time, and are left out and counted
    e2e = lat["venue_to_delivered"]
    recovered = s["filled_rerequest"] + s["filled_replay"]
    assert e2e["count"] + e2e["unknown_timestamps"] == day.count and recovered > 0
    assert e2e["count"] >= day.count - recovered  # every message sent live has its send time
    assert e2e["p50"] >= wire["p50"] and e2e["p99"] >= lat["delivered"]["p50"]
    sources = s["latency"]["timestamps"]
    assert set(sources) == {"A", "B"}
    assert all(t["source"] == "software" and "SIOCGHWTSTAMP lo" in t["reason"] for t in sources.values())
    # Prometheus: every stage's histogram, its count the HdrHistogram's
    for stage, d in lat.items():
        line = next(ln for ln in text.splitlines() if ln.startswith("xdpfeed_stage_latency_seconds_count")
                    and f'stage="{stage}"' in ln)
        assert float(line.rsplit(" ", 1)[1]) == d["count"]
    # the file: HdrHistogram's log, read back to the same numbers
    rep = report.read(f"{tmp_path}/lat.hlog")
    back = report.summary(rep)["itch"]["stages"]
    assert {k: back[k]["p99"] for k in back} == {k: lat[k]["p99"] for k in lat}
    assert back["venue"]["unit"] == "packet" and back["book"]["count"] == day.count


def test_latency_off_costs_nothing_and_says_so(day):  # noqa: F811
    with venue_and_feed(day, venue={"rate": 0}, latency=False) as (venue, feed):
        venue.start()
        assert feed.run(until_eos=True, idle_timeout=30) == "complete"
        assert feed.latency is None and "latency" not in feed.summary()


# -- the file and the command ----------------------------------------------------------------------------
def _sample_file(path: str) -> FeedLatency:
    lat = FeedLatency(["strategy"], [], venue_time=False)
    values = np.array([10_000] * 900 + [200_000] * 90 + [5_000_000] * 10, dtype=np.int64)
    hdr.record_values(lat.counts, lat.row["book"], values, lat.stats)
    lat.timestamp_sources["A"] = {"source": "software", "reason": "the kernel's receive time"}
    lat.write(path, "itch")
    return lat


def test_latency_command_table_json_and_plot(tmp_path):
    path = str(tmp_path / "lat.hlog")
    _sample_file(path)
    text = open(path).read()
    assert text.startswith("#[HdrHistogram log written by xdpfeed]") and "\nTag=itch/book," in text
    r = subprocess.run(XDPFEED + ["latency", path, "-T", "json", "--plot", str(tmp_path / "p.png")],
                       capture_output=True, text=True, env=env(), cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    book = json.loads(r.stdout)["itch"]["stages"]["book"]
    assert book["count"] == 1000 and book["unit"] == "message"
    assert book["p50"] == 10_007 and book["p99"] == 200_063 and book["p99.9"] == 5_001_215  # to within 0.1 %
    assert set(book) >= {"p50", "p90", "p99", "p99.9", "p99.99", "max"}
    png = open(tmp_path / "p.png", "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    r = subprocess.run(XDPFEED + ["latency", path], capture_output=True, text=True, env=env(), cwd=REPO, timeout=120)
    assert r.returncode == 0 and "p99.99" in r.stdout and "book" in r.stdout and "software" in r.stdout


@pytest.mark.parametrize("content, message", [
    (b"", "not an xdpfeed latency file"),
    (b"\xff\xfe", "not a latency file (byte 0"),
    (b'#[xdpfeed] {"feeds": {}}\nTag=a/b,0,1,0,NOTBASE64\n', "2: histogram of a/b does not decode"),
    (b'#[xdpfeed] {\nTag=a/b,0,1,0,x\n', "1: bad xdpfeed header"),
])
def test_latency_command_bad_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "bad.hlog"
    path.write_bytes(content)
    r = subprocess.run(XDPFEED + ["latency", str(path)], capture_output=True, text=True, env=env(), cwd=REPO,
                       timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_run_writes_the_latency_file_on_sigusr1_and_at_the_end(tmp_path):
    path = str(tmp_path / "day.itch")
    synthetic.generate_to_file(path, 60_000, seed=31)
    a, b = lines_pair()
    out = str(tmp_path / "lat.hlog")
    h, seen = start_handler(["-a", f"udp:{a}@lo", "-b", f"udp:{b}@lo", "--until-eos", "-T", "json",
                             "--idle-timeout", "60", "--metrics-addr", "off", "--latency-out", out, "--venue-time"])
    venue, _ = start_venue(path, a, b, "--rate", "20000", "--stamp-time")
    try:
        def written_during_the_run() -> bool:
            if os.path.exists(out) and report.summary(report.read(out))["feed"]["stages"]["delivered"]["count"]:
                return True
            h.send_signal(signal.SIGUSR1)  # write it now (again: until messages have flowed)
            time.sleep(0.3)
            return False

        eventually(written_during_the_run, 30)
        during = report.summary(report.read(out))["feed"]["stages"]["delivered"]["count"]
        code, stdout, err = finish(h, seen)
    finally:
        stop_venue(venue)
    assert code == 0, err[-2000:]
    s = json.loads(stdout)
    end = report.summary(report.read(out))["feed"]["stages"]
    assert 0 < during < end["delivered"]["count"] == s["delivered"] == 60_000
    assert end["venue"]["count"] > 0 and end["venue"]["negative"] == 0
    assert s["latency"]["stages"]["book"]["p99"] == end["book"]["p99"]
