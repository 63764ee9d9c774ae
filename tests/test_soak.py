"""Soak under faults (bench/soak.py): two sessions on lines A and B with 1% loss per line, bursts of
1000+ messages lost on both lines, reordering, duplication, a session change and End of Session, the
replay server restarted mid-session and the request server dropping requests. Nothing may be lost or
delivered twice (the delivered stream's SHA-256 is the venue's), the book must equal the venue's, and
no file descriptor or namespace may be left behind. A short run of each transport here; 10M messages
each under `make test-slow`."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import soak  # noqa: E402

from xdpfeed.capture.netns import Unavailable  # noqa: E402


def check(r: dict, messages: int) -> None:
    brief = {k: r[k] for k in ("delivered", "lost", "stream_sha256_matches", "book_matches", "fds", "netns", "runs")}
    assert r["ok"], brief
    assert r["delivered"] == messages and r["lost"] == 0 and not r["stale"]
    assert r["stream_sha256_matches"] and r["book_matches"]
    assert r["fds"]["left_open"] == [] and r["netns"]["left_behind"] == []
    first, second = r["venues"][:2]
    assert first["replay_server"]["restarts"] == 1 and first["replay_server"]["messages_sent"] > 0
    assert first["lost_on_both_messages"] >= 2000 and second["lost_on_both_messages"] >= 1000
    assert r["filled_replay"] > 0 and r["filled_rerequest"] > 0 and r["duplicates_dropped"] > 0


def test_short_soak_on_loopback():
    r = soak.soak(messages=300_000, rate=150_000, burst=1200, request_drop=0.2)
    check(r, 300_000)


def soak_or_skip(**kw) -> dict:
    try:
        return soak.soak(**kw)
    except Unavailable as e:  # not root, no iproute2
        pytest.skip(str(e))


@pytest.mark.root
def test_short_soak_across_a_veth_pair_with_af_xdp():
    r = soak_or_skip(messages=200_000, transport="veth-afxdp", rate=100_000, burst=1200, request_drop=0.2)
    check(r, 200_000)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["loopback", "veth-afxdp"])
def test_soak_ten_million_messages(transport):
    r = soak_or_skip(messages=10_000_000, transport=transport, rate=500_000, sessions=4)
    check(r, 10_000_000)
    growth = r["rss_kib"]["settled_last_over_second"]  # the same day each time: no more memory held later
    assert growth < 16 * 1024, f"RSS held after the last session is {growth} KiB above that after the second"
