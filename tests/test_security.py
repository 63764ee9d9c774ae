"""Credentials stay secret and listeners stay local unless told otherwise.

Passwords come from $XDPFEED_PASSWORD or a 0600 file (the file's mode and the refusal of --password
are tested in test_cli_run); here: no password in any log line, status line, summary, metrics page,
error message or repr, even when logins fail; every listener binds 127.0.0.1 by default; the
simulated servers refuse wrong credentials."""

import io
import logging
import random
import urllib.request

import pytest

from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.cli.run import build_handler, format_summary, start_metrics, status_line
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange.gateway import Gateway
from xdpfeed.multicast.exchange.replay_server import ReplayFault
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.exchange.venue import Venue, VenueConfig
from xdpfeed.multicast.feed import metrics
from xdpfeed.multicast.feed.config import FeedConfig
from xdpfeed.multicast.feed.recovery import Recovery, RecoveryPolicy
from xdpfeed.multicast.wire import soupbintcp as sb

SECRET = "Zq7sEcRet9"  # 10 characters: the longest SoupBinTCP allows
VENUE_PW = "VenuePw42"


def test_password_never_in_logs_status_summary_or_metrics():
    r = random.Random()
    line_a = (f"239.251.{r.randrange(1, 255)}.{r.randrange(1, 255)}", r.randrange(20000, 60000))
    line_b = (line_a[0], line_a[1] + 1)
    store = DayStore(synthetic.generate(20_000, seed=5)[0], "SECRET0001")
    # the venue knows another password for this user: every replay login is rejected and logged
    vcfg = VenueConfig(line_a=line_a, line_b=line_b, users={"TEST01": VENUE_PW}, start_delay=0.2, loss_a=0.05,
                       loss_b=0.05, burst_loss=3000, bursts=1, replay_fault=ReplayFault())
    cfg = FeedConfig(line_a=f"udp:{line_a[0]}:{line_a[1]}@lo", line_b=f"udp:{line_b[0]}:{line_b[1]}@lo",
                     user="TEST01", password=SECRET, policy=RecoveryPolicy(deadline=1.5, rerequest_max=10))
    logs = io.StringIO()
    handler_log = logging.StreamHandler(logs)
    root = logging.getLogger("xdpfeed")
    root.addHandler(handler_log)
    root.setLevel(logging.DEBUG)
    h = build_handler(cfg, OrderBook(window=1 << 16, hash_orders=1 << 12, levels=1 << 12))
    server = start_metrics(h, "127.0.0.1:0", "security")
    venue = Venue(vcfg, store)
    try:
        venue.start()
        rq, rp = [venue.request_address], [venue.replay_address]
        h.attach_recovery(lambda s, sink, clock: Recovery(s, sink, clock, cfg.policy, rq, rp, cfg.user, cfg.password))
        why = h.run(until_eos=True, idle_timeout=30)
        page = urllib.request.urlopen("http://{}:{}/metrics".format(*server.server_address[:2]), timeout=5).read()
    finally:
        h.close()
        venue.stop()
        server.shutdown()
        server.server_close()
        root.removeHandler(handler_log)
    text = logs.getvalue()
    assert why in ("complete", "stale") and "login rejected: not authorized" in text  # failed logins logged...
    outputs = [text, page.decode(), status_line(h, 0.0), format_summary(h.summary()), repr(cfg), repr(vcfg)]
    for out in outputs:
        assert SECRET not in out and VENUE_PW not in out  # ...without their passwords
    assert venue.summary()["replay_server"]["rejected_logins"] >= 1


@pytest.mark.parametrize("password", ["far-too-long-password", "pässwörd"])
def test_bad_passwords_are_refused_without_being_quoted(password):
    with pytest.raises(ValueError) as e:
        sb.encode_login_request("USER01", password, b"", 1)
    assert password not in str(e.value) and "password" in str(e.value)


def test_listeners_bind_loopback_by_default():
    assert metrics.DEFAULT_ADDR[0] == "127.0.0.1"
    v = VenueConfig()
    assert (v.replay_host, v.request_host) == ("127.0.0.1", "127.0.0.1")
    with Gateway("5.0", {"U1": "pw"}) as gw:
        assert gw.address[0] == "127.0.0.1"


def test_simulated_servers_require_credentials():
    from test_gateway import drive

    from xdpfeed.multicast.ouch.session import OuchClient

    with Gateway("4.2", {"U1": "right"}) as gw:
        c = OuchClient(gw.address, "U1", "wrong", "4.2")
        drive([c], lambda: c.state == "failed")
        assert c.reason == "login rejected: not authorized"
        c = OuchClient(gw.address, "U2", "right", "4.2")
        drive([c], lambda: c.state == "failed")
        assert c.reason == "login rejected: not authorized" and gw.stats["rejected_logins"] == 2
