"""Go-live: a live parallel run (`xdpfeed run --shadow`) compares the same feed through two paths while both
run; the comparison itself (multicast.compare.live) counts divergences exactly, resumes after a new session,
and says what it could not compare."""

import json
import urllib.request

import numpy as np
from test_cli_run import finish, start_handler, start_venue, stop_venue

from xdpfeed.multicast.compare.live import LiveCompare
from xdpfeed.multicast.compare.shadow import Shadow
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.feed.config import FeedConfig
from xdpfeed.multicast.feed.consumers import MessageBatch

from helpers import eventually, free_port, lines_pair


def batch(msgs: list[bytes], first: int, ts0: int = 1000, session: str = "S1") -> MessageBatch:
    stream = np.frombuffer(b"".join(len(m).to_bytes(2, "big") + m for m in msgs), dtype=np.uint8).copy()
    ts = np.arange(ts0, ts0 + len(msgs), dtype=np.int64)
    return MessageBatch(max(1, len(msgs))).set(stream, first, len(msgs), ts, session)


def msgs(n: int, start: int = 0) -> list[bytes]:
    return [b"S" + bytes(10) + bytes([65 + (i % 26)]) + i.to_bytes(4, "big") for i in range(start, start + n)]


def test_live_compare_counts_exactly():
    c = LiveCompare(window=1 << 10)
    a = msgs(300)
    b = list(a)
    b[120] = b"X" + a[120][1:]  # one message differs
    c.primary.on_messages(batch(a[:200], 1, ts0=1000))
    c.shadow.on_messages(batch(b[:150], 1, ts0=1500))  # the shadow receives 500 ns later
    c.shadow.on_messages(batch(b[150:], 151, ts0=1650))
    c.primary.on_messages(batch(a[200:], 201, ts0=1200))
    s = c.summary()
    assert (s["compared"], s["divergent"], s["first_divergence"], s["uncompared"]) == (300, 1, 121, 0)
    assert (s["primary_first"], s["shadow_first"], s["same_time"]) == (299, 0, 0)
    assert s["receive_time_difference"]["p50"] == 500 and s["receive_time_difference"]["count"] == 299


def test_live_compare_starts_over_on_a_new_session_and_counts_what_it_cannot_compare():
    c = LiveCompare(window=1 << 6)
    c.primary.on_messages(batch(msgs(200), 1))  # 200 ahead: the shadow's first 136 are gone from the window
    c.shadow.on_messages(batch(msgs(200), 1))
    s = c.summary()
    assert (s["compared"], s["uncompared"], s["divergent"]) == (64, 136, 0)
    c.primary.on_messages(batch(msgs(10), 1, session="S2"))  # a new day on both
    c.shadow.on_messages(batch(msgs(10), 1, session="S2"))
    s = c.summary()
    assert (s["compared"], s["uncompared"], s["divergent"]) == (74, 136, 0) and s["shadow_next"] == 11


def test_a_subscription_as_the_shadow_is_polled():
    """The shadow path as another handler's output (ipc:/nats://): whatever the subscription has is compared."""
    class Queue:  # what Subscriber.receive returns, in order
        def __init__(self, batches):
            self.batches = list(batches)

        def receive(self, timeout=0.0):
            return self.batches.pop(0) if self.batches else None

        def close(self):
            pass

    sh = Shadow.__new__(Shadow)
    sh.compare, sh.feed, sh.uris = LiveCompare(), None, ["ipc:x"]
    sh.sub = Queue([batch(msgs(50), 1), batch(msgs(50, 50), 51)])
    sh.compare.primary.on_messages(batch(msgs(100), 1))
    sh.pump()
    assert sh.summary()["compared"] == 100 and sh.summary()["divergent"] == 0


def test_run_shadow_compares_two_paths_of_one_feed(tmp_path):
    """`run --shadow`: the primary on lines A and B, the shadow on its own sockets of the same lines; every
    message compared, none divergent, and the metrics say so."""
    path = str(tmp_path / "day.itch")
    synthetic.generate_to_file(path, 40_000, seed=17)
    a, b = lines_pair()
    port = free_port()
    h, seen = start_handler(["-a", f"udp:{a}@lo", "-b", f"udp:{b}@lo", "--shadow", f"udp:{a}@lo", "--shadow",
                             f"udp:{b}@127.0.0.1", "--until-eos", "-T", "json", "--idle-timeout", "60",
                             "--metrics-addr", f"127.0.0.1:{port}"])
    venue, _ = start_venue(path, a, b, "--rate", "40000")
    try:
        text = []

        def scraped():
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:  # not serving yet
                return False
            if "xdpfeed_shadow_compared_messages_total" in body:  # the comparison is served with the feed
                text.append(body)
                return True
            return False

        eventually(scraped, 60)
        code, out, err = finish(h, seen)
    finally:
        stop_venue(venue)
    assert code == 0, err[-2000:]
    s = json.loads(out)
    sh = s["shadow"]
    assert (sh["compared"], sh["divergent"], sh["uncompared"]) == (40_000, 0, 0)
    assert sh["primary_first"] + sh["shadow_first"] + sh["same_time"] == 40_000
    assert sh["shadow_state"] == {"state": "SYNCHRONIZED", "delivered": 40_000, "lost": 0}
    assert 'xdpfeed_shadow_divergent_messages_total{feed="feed"} 0.0' in text[0]


def test_shadow_arguments_are_checked():
    cfg = FeedConfig(line_a="udp:239.1.1.1:5000@lo")
    for uris, message in ((["ipc:a", "udp:239.1.1.1:5001@lo"], "one subscription"),
                          (["udp:239.1.1.1:5001@lo"] * 3, "at most two source URIs")):
        try:
            Shadow(cfg, uris)
        except ValueError as e:
            assert message in str(e)
        else:
            raise AssertionError("accepted")
