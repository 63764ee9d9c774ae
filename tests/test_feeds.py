"""Several venues in one handler: the several-feeds config, one loop over generated venue days and the real
Nasdaq captures, and the consolidated book against a plain-Python one built from the venues' books; a STALE
venue left out and taken in again; `book --venue ... --consolidated`; `demo --venues 3`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from xdpfeed.multicast.book import reference
from xdpfeed.multicast.book.consolidated import CEVENT, CROSSED, EXCLUDED, LOCKED, VENUE_STATE, ConsolidatedBook
from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.book.storage import EVENT
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange import venues as V
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.feed import config as cfgmod
from xdpfeed.multicast.feed.feeds import Feeds
from xdpfeed.multicast.feed.state import STALE, SYNCHRONIZED
from xdpfeed.multicast.feed.status import FeedStatus, StateChanged

from conftest import REPO
from helpers import PASSWORD, venue_for

XDPFEED = [sys.executable, "-m", "xdpfeed.multicast.cli"]
NAMES = ("nasdaq", "bx", "psx")


def env():
    e = dict(os.environ)
    e.pop("NUMBA_BOUNDSCHECK", None)
    e.pop("NUMBA_CACHE_DIR", None)
    return e


def quote(bbo):
    bid, ask = bbo
    return tuple(bid) if bid else None, tuple(ask) if ask else None


def assert_matches_reference(cons: ConsolidatedBook, books: dict) -> dict:
    want = reference.consolidated(books)
    assert want, "no quotes at all"
    for sym, q in want.items():
        assert quote(cons.bbo(sym)) == (q["bid"], q["ask"]), sym
    assert set(cons.view(1)) == set(want)
    return want


@pytest.fixture(scope="module")
def venue_pcaps(tmp_path_factory):
    d = tmp_path_factory.mktemp("venues")
    out = {}
    for v in NAMES:
        records, _ = V.venue_day(v, 60_000, seed=4)
        out[v] = (str(d / f"{v}.pcap"), records)
        synthetic.write_moldudp64_pcap(out[v][0], records, session=V.session(v, 4).encode())
    return out


# -- the consolidated book alone -----------------------------------------------------------------------
def events(rows):
    """EVENT records from (seq, locate, bid price, bid shares, ask price, ask shares)."""
    ev = np.zeros(len(rows), dtype=EVENT)
    for i, (seq, loc, bp, bs, ap, ash) in enumerate(rows):
        ev[i] = (seq, 1000 + seq, bs, ash, bp, ap, loc)
    return ev


class Named:
    """A book that only knows its symbols."""

    def __init__(self, symbols):
        self.symbols = symbols

    def symbol(self, loc):
        return self.symbols.get(loc, "")


def test_consolidated_best_across_venues_locked_crossed_and_a_venue_left_out():
    got = []
    cb = ConsolidatedBook(["nasdaq", "bx"], [Named({1: "AAPL", 2: "MSFT"}), Named({7: "AAPL"})],
                          on_events=lambda e: got.append(e.copy()))
    cb.apply(0, events([(1, 1, 1000, 100, 1010, 200), (2, 2, 500, 10, 0, 0)]))
    cb.apply(1, events([(1, 7, 1000, 50, 1020, 300)]))  # the same best bid: shares summed, both venues
    assert cb.bbo("AAPL") == ((1000, 150, "bx,nasdaq"), (1010, 200, "nasdaq"))
    assert cb.bbo("MSFT") == ((500, 10, "nasdaq"), None)
    last = got[-1][-1]
    assert last["feed"] == 1 and last["seq"] == 1 and last["bid_venues"] == 0b11 and last["flags"] == 0
    cb.apply(1, events([(2, 7, 1010, 50, 1020, 300)]))  # bx bids at nasdaq's offer: locked
    assert got[-1][-1]["flags"] == LOCKED and cb.summary()["locked_now"] == 1
    cb.apply(1, events([(3, 7, 1015, 50, 1020, 300)]))  # above it: crossed, reported, not "fixed"
    assert got[-1][-1]["flags"] == CROSSED and cb.bbo("AAPL")[0] == (1015, 50, "bx")
    s = cb.summary()
    assert (s["locked_now"], s["crossed_now"], s["locked_entered"], s["crossed_entered"]) == (0, 1, 1, 1)
    n = len(got)
    cb.set_included(1, False)  # bx STALE: its quotes leave the consolidated book, and the events say why
    ev = np.concatenate(got[n:])
    assert (ev["feed"] == 1).all() and (ev["flags"] & VENUE_STATE).all() and (ev["flags"] & EXCLUDED).all()
    assert cb.bbo("AAPL") == ((1000, 100, "nasdaq"), (1010, 200, "nasdaq")) and cb.summary()["crossed_now"] == 0
    cb.apply(1, events([(4, 7, 990, 5, 1030, 5)]))  # kept while left out, not shown
    assert cb.bbo("AAPL")[0] == (1000, 100, "nasdaq")
    cb.set_included(1, True)
    assert cb.bbo("AAPL") == ((1000, 100, "nasdaq"), (1010, 200, "nasdaq"))
    cb.apply(1, events([(5, 7, 1005, 5, 1008, 5)]))
    assert cb.bbo("AAPL") == ((1005, 5, "bx"), (1008, 5, "bx"))
    cb.clear_venue(1)  # a new session at bx: its quotes are gone
    assert cb.bbo("AAPL") == ((1000, 100, "nasdaq"), (1010, 200, "nasdaq"))


def test_more_changes_than_the_event_buffer_holds_are_all_handed_over():
    got = []
    cb = ConsolidatedBook(["a", "b"], [Named({i: f"S{i}" for i in range(1, 301)})] * 2,
                          on_events=lambda e: got.append(e.copy()), events=16)
    rows = [(i, 1 + i % 300, 100 + i, 1, 0, 0) for i in range(1, 1001)]
    cb.apply(0, events(rows))
    ev = np.concatenate(got)
    assert ev.dtype == CEVENT and len(ev) == 1000 and (ev["seq"] == np.arange(1, 1001)).all()
    assert all(len(g) <= 16 for g in got)


# -- several feeds, one loop ---------------------------------------------------------------------------
def feeds_config(venue_pcaps, **extra):
    return cfgmod.feeds_from_dict({"feeds": [{"name": v, "line_a": f"pcap:{p}", **extra}
                                             for v, (p, _) in venue_pcaps.items()]})


def test_generated_venue_days_through_one_loop_and_the_consolidated_book(venue_pcaps):
    seen = []

    class Watch:
        def on_consolidated(self, ev):
            seen.append(ev.copy())

    with Feeds(feeds_config(venue_pcaps), consumers=[Watch()], metrics=None) as feeds:
        assert feeds.run() == "sources exhausted"
        assert feeds.whys == dict.fromkeys(NAMES, "sources exhausted")
        books = {}
        for v, (_, records) in venue_pcaps.items():
            own = OrderBook()
            own.apply_stream(records)
            assert feeds.feed(v).book.checksum() == own.checksum()  # each venue's book is the venue's
            books[v] = feeds.feed(v).book
        want = assert_matches_reference(feeds.consolidated, books)
        s = feeds.summary()
    # the same symbol on every venue, at different locates
    assert len(want) == s["consolidated"]["symbols"] and s["consolidated"]["unknown_locates"] == 0
    locs = {v: feeds.feed(v).book.locate_of("AAA") for v in NAMES}
    assert len(set(locs.values())) == 3
    ev = np.concatenate(seen)
    assert len(ev) == s["consolidated"]["events"] and set(np.unique(ev["feed"])) == {0, 1, 2}
    assert (ev["seq"] > 0).all()  # every change carries the seq of the message that caused it
    assert s["consolidated"]["locked_entered"] > 0 and s["consolidated"]["crossed_entered"] > 0


def test_the_real_nasdaq_captures_through_the_several_feeds_config(tmp_path):
    """Every OMI TotalView-ITCH capture as a feed of its own (8: the most a consolidated book takes). They are
    fragments of a day: `Multiple.Packets.pcap` holds packets 4.2M sequence numbers apart, a gap no
    recovery can fill here, so that feed ends STALE and the consolidated book leaves it out."""
    caps = sorted(os.listdir(f"{REPO}/pcaps/omi/itch50"))
    names = [c.removesuffix(".pcap").removesuffix("Message").lower().replace(".", "_") for c in caps]
    toml = tmp_path / "venues.toml"
    toml.write_text("[metrics]\naddr = \"off\"\n" + "".join(
        f'[[feeds]]\nname = "{n}"\nline_a = "pcap:{REPO}/pcaps/omi/itch50/{c}"\nstart = "first"\n'
        for n, c in zip(names, caps, strict=True)))
    cfg = cfgmod.load_any(str(toml))
    assert [f.name for f in cfg.feeds] == names and all(f.venue == f.name for f in cfg.feeds)
    with Feeds(cfg, metrics=None) as feeds:
        assert feeds.run() == "stale"
        assert feeds.whys == {n: "stale" if n == "multiple_packets" else "sources exhausted" for n in names}
        assert feeds.consolidated.summary()["excluded_venues"] == ["multiple_packets"]
        books = {f.name: f.book for f in feeds.feeds}
        want = reference.consolidated(books, excluded={"multiple_packets"})
        assert want == {sym: dict(zip(("bid", "ask"), quote(feeds.consolidated.bbo(sym)), strict=True))
                        for sym in feeds.consolidated.view(1)}
    assert want["IVOO"]["bid"] == (873900, 1600, "addordernompidattribution")  # the capture's one add


def test_a_stale_venue_is_left_out_and_taken_in_again():
    days = {v: DayStore(V.venue_day(v, 30_000, seed=6)[0], V.session(v, 6)) for v in ("nasdaq", "psx")}
    states, excluded = [], []

    class Watch:
        def on_status(self, st):
            assert isinstance(st, FeedStatus)
            if isinstance(st.event, StateChanged):
                states.append((st.feed, st.event.state))

        def on_consolidated(self, ev):
            excluded.extend(ev[(ev["flags"] & VENUE_STATE) != 0]["feed"].tolist())

    with venue_for(days["nasdaq"], venue={"rate": 20_000, "loss_a": 0.02, "seed": 3}) as (v1, k1), \
            venue_for(days["psx"], venue={"rate": 20_000, "burst_loss": 2000, "bursts": 1, "seed": 3,
                                          "recovery_outage": 2.5}) as (v2, k2):
        entries = [{"name": "nasdaq", **_keys(k1)}, {"name": "psx", **_keys(k2, deadline=0.5, max_backoff=0.3)}]
        cfg = cfgmod.feeds_from_dict({"feeds": entries})
        for f in cfg.feeds:
            f.password = PASSWORD
        with Feeds(cfg, consumers=[Watch()], metrics=None) as feeds:
            v1.start()
            v2.start()
            why = feeds.run(until_eos=True, idle_timeout=60)
            assert why == "complete", feeds.whys
            s = feeds.summary()
            want = assert_matches_reference(feeds.consolidated, {f.name: f.book for f in feeds.feeds})
        outages = v2.summary()["recovery_outages"]
    assert len(outages) == 1 and outages[0][1] is not None
    psx = [state for feed, state in states if feed == "psx"]
    assert STALE in psx and psx[-1] == SYNCHRONIZED
    assert 1 in excluded  # the consolidated book said when it left psx out and took it in again
    assert s["feeds"]["psx"]["stale_episodes"] >= 1 and s["feeds"]["psx"]["lost"] == 0
    assert not s["consolidated"]["excluded_venues"] and want


def _keys(k, **recovery):
    return {"line_a": k["line_a"], "line_b": k["line_b"],
            "recovery": {"rerequest": k["rerequest"], "replay": k["replay"], "user": k["user"], **recovery}}


# -- the command line ---------------------------------------------------------------------------------------
def test_book_consolidated_prints_the_view_from_the_live_code(venue_pcaps):
    args = [a for v, (p, _) in venue_pcaps.items() for a in ("--venue", f"{v}={p}")]
    r = subprocess.run(XDPFEED + ["book", *args, "--consolidated", "-T", "json", "--depth", "3"],
                       capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    view = json.loads(r.stdout)
    books = {}
    for v, (_, records) in venue_pcaps.items():
        books[v] = OrderBook()
        books[v].apply_stream(records)
    want = reference.consolidated(books)
    assert set(view) == set(want)
    shared = 0
    for sym, q in view.items():
        assert (tuple(q["bid"]) if q["bid"] else None, tuple(q["ask"]) if q["ask"] else None) == \
            (want[sym]["bid"], want[sym]["ask"])
        for lv in q["depth"]["bid"] + q["depth"]["ask"]:
            assert lv[1] == sum(lv[2].values()) and list(lv[2]) == sorted(lv[2])
        if q["bid"] and "," in q["bid"][2]:
            shared += 1
            assert q["bid"][2] == ",".join(sorted(q["bid"][2].split(",")))
    assert shared > 0  # venues quoting the same best price: shares summed, venues listed sorted
    r = subprocess.run(XDPFEED + ["book", *args, "--consolidated", "--symbol", "AAA"], capture_output=True,
                       text=True, env=env(), cwd=REPO, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("AAA  bid "), r.stdout + r.stderr
    for bad, needle in ((["--venue", "x=/nonexistent.pcap", "--consolidated"], "no such file"),
                        (["--venue", "nasdaq"], "NAME=CAPTURE"), (["--consolidated"], "--venue NAME=CAPTURE")):
        r = subprocess.run(XDPFEED + ["book", *bad], capture_output=True, text=True, env=env(), cwd=REPO, timeout=60)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_run_takes_a_several_feeds_config_and_names_bad_keys(venue_pcaps, tmp_path):
    toml = tmp_path / "v.toml"
    toml.write_text("".join(f'[[feeds]]\nname = "{v}"\nline_a = "pcap:{p}"\n' for v, (p, _) in venue_pcaps.items()))
    r = subprocess.run(XDPFEED + ["run", "-c", str(toml), "-T", "json", "-q", "--metrics-addr", "off"],
                       capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert set(s["feeds"]) == set(NAMES) and all(f["delivered"] == 60_000 for f in s["feeds"].values())
    assert s["consolidated"]["symbols"] > 0
    one = subprocess.run(XDPFEED + ["run", "-c", str(toml), "--feed", "bx", "-T", "json", "-q", "--metrics-addr",
                                    "off"], capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)
    assert one.returncode == 0 and json.loads(one.stdout)["delivered"] == 60_000, one.stderr
    for text, needle in (('[[feeds]]\nname = "a"\nline_a = "bogus:x"\n', "feeds[0] (a).line_a: unknown source"),
                         ('[[feeds]]\nname = "a"\nline_a = "pcap:x"\n[feeds.recovery]\nuser = "TOOLONGUSER"\n',
                          "feeds[0] (a).recovery.user"),
                         ('[[feeds]]\nname = "a"\nfoo = 1\n', "feeds[0] (a): unknown key foo"),
                         ('[[feeds]]\nline_a = "pcap:x"\n', "feeds[0]: needs a name"),
                         ('[[feeds]]\nname = "a"\nline_a = "pcap:x"\n[[feeds]]\nname = "a"\nline_a = "pcap:y"\n',
                          "names must differ")):
        toml.write_text(text)
        r = subprocess.run(XDPFEED + ["run", "-c", str(toml)], capture_output=True, text=True, env=env(), cwd=REPO,
                           timeout=60)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    toml.write_text("".join(f'[[feeds]]\nname = "{v}"\nline_a = "pcap:{p}"\n' for v, (p, _) in venue_pcaps.items()))
    r = subprocess.run(XDPFEED + ["run", "-c", str(toml), "-a", "pcap:x"], capture_output=True, text=True, env=env(),
                       cwd=REPO, timeout=60)
    assert r.returncode == 2 and "is for one feed" in r.stderr, r.stderr


def test_demo_with_three_venues():
    r = subprocess.run(XDPFEED + ["demo", "--venues", "3", "--messages", "120000", "--rate", "150000", "--json",
                                  "--metrics-addr", "off"], capture_output=True, text=True, env=env(), cwd=REPO,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(s["venues"]) == set(NAMES)
    for name, v in s["venues"].items():
        assert v["published"] == v["delivered"] == 120_000 and v["lost"] == 0 and v["book_matches"], name
    psx = s["venues"]["psx"]
    assert psx["recovery_outages"] and psx["stale_episodes"] >= 1  # it went STALE and came back
    assert s["consolidated"]["matches"] and s["consolidated"]["symbols_checked"] > 0


def test_one_metrics_server_for_every_feed_and_the_consolidated_book(venue_pcaps, promtool):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from xdpfeed.multicast.exchange.ports import free_port
    from xdpfeed.multicast.feed import metrics

    port = free_port()
    with Feeds(feeds_config(venue_pcaps), metrics=f"127.0.0.1:{port}") as feeds:
        feeds.run()
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        summary = feeds.summary()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    delivered = {s.labels["feed"]: s.value for s in fams["xdpfeed_delivered_messages"].samples}
    assert delivered == dict.fromkeys(NAMES, 60_000.0)
    c = summary["consolidated"]
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    assert values[("xdpfeed_consolidated_events_total", ())] == c["events"] > 0
    assert values[("xdpfeed_consolidated_crossings_total", (("kind", "crossed"),))] == c["crossed_entered"]
    assert values[("xdpfeed_consolidated_crossed_symbols", (("kind", "locked"),))] == c["locked_now"]
    assert all(values[("xdpfeed_consolidated_venue_included", (("feed", v),))] == 1 for v in NAMES)
    for name in metrics.CONSOLIDATED_METRIC_NAMES:
        assert any(n == name or n == name.removesuffix("_total") for n in fams), name
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr  # each family once, with every feed's samples


def test_consolidated_outputs_parquet_and_nats(venue_pcaps, tmp_path):
    import pyarrow.parquet as pq

    from xdpfeed.multicast.sinks.nats_local import LocalCluster
    from xdpfeed.multicast.sinks.subscriber import Subscriber

    seen = []

    class Watch:
        def on_consolidated(self, ev):
            seen.append(ev.copy())

    with LocalCluster(1) as cluster:
        uri = cluster.uri("CONSOLIDATED")
        cfg = feeds_config(venue_pcaps)
        cfg.consolidated_outputs = [f"parquet:{tmp_path}/pq", uri]
        with Feeds(cfg, consumers=[Watch()], metrics=None) as feeds:
            with Subscriber(uri, top_of_book=True, symbols=["AAA"], start_seq="new") as sub:
                assert feeds.run() == "sources exhausted"
                ev = np.concatenate(seen)
                aaa = ev[ev["symbol"] == feeds.consolidated.symbol_id("AAA")]
                got = []
                while sum(len(x) for x in got) < len(aaa):
                    item = sub.top_of_book(10)
                    assert item is not None and item[0] == "AAA"
                    got.append(item[1])
            names = feeds.names
    assert (np.concatenate(got) == aaa).all() and len(aaa) > 0
    table = pq.read_table(f"{tmp_path}/pq/consolidated.parquet").to_pydict()
    assert table["seq"] == ev["seq"].tolist() and len(table["seq"]) == len(ev)
    assert set(table["feed"]) == set(names) and "AAA" in table["symbol"]
    both = [i for i, v in enumerate(table["bid_venues"]) if "," in v]
    assert both and all(table["bid_venues"][i] == ",".join(sorted(table["bid_venues"][i].split(","))) for i in both)
