"""Prometheus metrics of a live handler: scraped over HTTP while the venue injects loss; the numbers
move as they should and agree with the handler's own summary; promtool accepts the exposition."""

import subprocess
import threading
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_handler import day  # noqa: F401  (a fixture)

from xdpfeed.multicast.feed import metrics
from xdpfeed.multicast.feed.consumers import Consumer
from xdpfeed.multicast.sinks.nats_local import LocalCluster

from helpers import eventually, free_port, venue_and_feed


def scrape(port: int) -> tuple[str, dict]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, values


def value(values, name, **labels):
    return values[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def live(day, tmp_path):  # noqa: F811
    """A feed fed by the venue with loss on both lines and bursts, metrics served on a free port, writing an
    itch: file, publishing on an ipc: service and to a one-node NATS JetStream."""
    nats = LocalCluster(1)
    try:
        yield from _live(day, tmp_path, nats.uri("METRICS"))
    finally:
        nats.close()


def _live(day, tmp_path, nats_uri):  # noqa: F811
    with venue_and_feed(day, venue={"loss_a": 0.1, "loss_b": 0.1, "burst_loss": 3000, "bursts": 2, "seed": 12,
                                    "rate": 40_000}, name="itch", rerequest_max=1000,
                        metrics=f"127.0.0.1:{free_port()}",
                        consumers=[Consumer(on_messages=lambda batch: None, name="noop")],
                        outputs=[f"itch:{tmp_path}/day.itch", f"ipc:metrics{uuid.uuid4().hex[:12]}", nats_uri]) \
            as (venue, feed):
        venue.start()
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("why", feed.run(until_eos=True, idle_timeout=60)))
        t.start()
        try:
            yield feed, feed.metrics_server.server_address[1], t, result
        finally:
            t.join(120)


def test_metrics_move_during_the_run_and_agree_with_the_summary(live, day, promtool):  # noqa: F811
    h, port, t, result = live
    snapshots = []
    while t.is_alive():
        snapshots.append(scrape(port)[1])
        t.join(0.2)
    assert result["why"] == "complete"
    # the run is over; NATS confirms what the feed handed over on the output's own thread, so wait for it
    nats_sink = next(k for k in h.sinks if k.name.startswith("nats:"))
    eventually(lambda: nats_sink.messages == day.count)
    text, end = scrape(port)
    s = h.summary()
    f = {"feed": "itch"}
    delivered = [value(v, "xdpfeed_delivered_messages_total", **f) for v in snapshots + [end]]
    assert delivered == sorted(delivered) and delivered[-1] == s["delivered"] == day.count
    assert len(set(delivered)) > 2  # it moved while the feed flowed
    assert value(end, "xdpfeed_sequence_gaps_total", **f) == s["gaps"] > 0
    assert value(end, "xdpfeed_duplicate_messages_total", **f) == s["duplicates"]
    assert value(end, "xdpfeed_recovered_messages_total", method="rerequest", **f) == s["filled_rerequest"] > 0
    assert value(end, "xdpfeed_recovered_messages_total", method="replay", **f) == s["filled_replay"] >= 6000
    assert value(end, "xdpfeed_recovery_requests_total", method="replay", **f) == s["recovery"]["replay_sessions"]
    assert value(end, "xdpfeed_recovery_seconds_count", **f) == s["recovery"]["gaps_filled"] > 0
    assert value(end, "xdpfeed_lost_messages", **f) == s["lost"] == 0
    assert value(end, "xdpfeed_feed_state", state="SYNCHRONIZED", **f) == 1
    assert value(end, "xdpfeed_feed_state", state="STALE", **f) == 0
    assert value(end, "xdpfeed_hold_queue_messages", **f) == 0
    assert value(end, "xdpfeed_next_sequence", **f) == day.count + 1
    assert value(end, "xdpfeed_end_of_session", **f) == 1
    assert sum(v for (n, _), v in end.items() if n == "xdpfeed_messages_total") == day.count
    for line in ("A", "B"):
        ls = s["lines"][line]
        assert value(end, "xdpfeed_line_first_messages_total", line=line, **f) == ls["first"]
        assert value(end, "xdpfeed_line_gaps_total", line=line, **f) == ls["gaps"] > 0
        assert value(end, "xdpfeed_line_packets_total", line=line, **f) == ls["packets"]
        assert value(end, "xdpfeed_receive_packets_total", line=line, source="udp", **f) == ls["source"]["packets"]
        assert value(end, "xdpfeed_receive_drop_total", line=line, source="udp", reason="kernel", **f) == 0
        assert value(end, "xdpfeed_line_last_packet_age_seconds", line=line, **f) < 60
    assert value(end, "xdpfeed_delivery_latency_seconds_count", **f) > 0
    assert value(end, "xdpfeed_book_live_orders", **f) == h.book.live_orders
    noop = s["consumers"]["noop"]
    assert value(end, "xdpfeed_consumer_batches_total", consumer="noop", **f) == noop["batches"] > 0
    assert value(end, "xdpfeed_consumer_errors_total", consumer="noop", **f) == noop["errors"] == 0
    outputs = s["outputs"]
    assert len(outputs) == 3
    for name, out in outputs.items():
        assert value(end, "xdpfeed_output_messages_total", output=name, **f) == out["messages"] == day.count
        assert value(end, "xdpfeed_output_bytes_total", output=name, **f) == out["bytes"] > 0
        assert value(end, "xdpfeed_output_failed", output=name, **f) == 0
    ipc = next(n for n in outputs if n.startswith("ipc:"))
    assert value(end, "xdpfeed_output_subscribers", output=ipc, **f) == outputs[ipc]["subscribers"] == 0
    nats = next(n for n in outputs if n.startswith("nats:"))  # alone on its stream: it stored every message
    assert value(end, "xdpfeed_output_twin_messages_total", output=nats, **f) == outputs[nats]["twin"] == 0
    assert value(end, "xdpfeed_output_dropped_messages_total", output=nats, **f) == 0
    assert value(end, "xdpfeed_output_connected", output=nats, **f) == 1
    names = {n for n, _ in end}
    for name in metrics.METRIC_NAMES:  # every documented family is served
        assert any(n == name or n.startswith(name + "_") or n == name + "_total" for n in names), name
    # the exposition passes Prometheus' own linter
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_metrics_addr_is_checked_and_local_by_default():
    assert metrics.DEFAULT_ADDR[0] == "127.0.0.1"
    assert metrics.parse_addr("0.0.0.0:9000") == ("0.0.0.0", 9000)
    with pytest.raises(ValueError, match="--metrics-addr: expected HOST:PORT"):
        metrics.parse_addr("nope")
