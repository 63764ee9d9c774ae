"""`xdpfeed orders-demo` end to end, both OUCH versions: client ↔ gateway over TCP with a cut connection
and resume, then the gateway's ITCH over lossy loopback multicast into the live handler."""

import json

import pytest

from xdpfeed.multicast.cli.main import main


@pytest.mark.parametrize("version", ["4.2", "5.0"])
def test_orders_demo_checks_pass(capsys, version):
    rc = main(["orders-demo", "--ouch", version, "--orders", "600", "--loss", "0.05", "--json"])
    out, err = capsys.readouterr()
    s = json.loads(out)
    assert rc == 0, (s["problems"], err)
    assert s["problems"] == [] and s["anomalies"] == 0 and s["lost"] == 0 and s["book_matches"]
    assert s["messages_in"] == 600 and s["resumed_at"] > 1 and s["replayed"] > 0  # fills came during the cut
    assert s["itch_delivered"] == s["itch_published"] > 600
    for state in ("accepted", "filled", "canceled", "replaced", "rejected"):
        assert s["states"].get(state, 0) > 0, state
    assert s["executions"] > 0 and s["rejected"] == s["states"]["rejected"]


def test_orders_demo_bad_arguments_are_one_line(capsys):
    assert main(["orders-demo", "--orders", "3"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
