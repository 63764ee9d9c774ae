"""Credentials stay secret and listeners stay local unless told otherwise.

Passwords come from $XDPFEED_PASSWORD or a 0600 file (the file's mode and the refusal of --password
are tested in test_cli_run); here: no password in any log line, status line, summary, metrics page,
error message or repr, even when logins fail; every listener binds 127.0.0.1 by default; the
simulated servers refuse wrong credentials."""

import logging
import urllib.request

import pytest

from xdpfeed.multicast.cli.run import format_summary, status_line
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange.gateway import Gateway
from xdpfeed.multicast.exchange.replay_server import ReplayFault
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.exchange.venue import VenueConfig
from xdpfeed.multicast.feed import metrics
from xdpfeed.multicast.wire import soupbintcp as sb

from helpers import captured_log, free_port, venue_and_feed

SECRET = "Zq7sEcRet9"  # 10 characters: the longest SoupBinTCP allows
VENUE_PW = "VenuePw42"


def test_password_never_in_logs_status_summary_or_metrics():
    store = DayStore(synthetic.generate(20_000, seed=5)[0], "SECRET0001")
    # the venue knows another password for this user: every replay login is rejected and logged
    with captured_log(level=logging.DEBUG) as logs, venue_and_feed(
            store, users={"TEST01": VENUE_PW}, prefix="239.251", password=SECRET, deadline=1.5, rerequest_max=10,
            metrics=f"127.0.0.1:{free_port()}",
            venue={"loss_a": 0.05, "loss_b": 0.05, "burst_loss": 3000, "bursts": 1,
                   "replay_fault": ReplayFault()}) as (venue, feed):
        venue.start()
        why = feed.run(until_eos=True, idle_timeout=30)
        server = feed.metrics_server
        page = urllib.request.urlopen("http://{}:{}/metrics".format(*server.server_address[:2]), timeout=5).read()
    text = logs.getvalue()
    assert why in ("complete", "stale") and "login rejected: not authorized" in text  # failed logins logged...
    outputs = [text, page.decode(), status_line(feed, 0.0), format_summary(feed.summary()), repr(feed.config),
               repr(venue.config), repr(feed), *(repr(e) for e in feed.status_log)]
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
