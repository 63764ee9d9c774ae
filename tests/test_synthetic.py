"""The synthetic ITCH day: decodable, the right mix, book-consistent, deterministic, and a valid pcap.

The book check replays the day with the plain-Python reference decoder and a dict of live orders,
so it does not rely on the compiled decoder or on the generator's own bookkeeping.
"""

import os

import numpy as np
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from xdpfeed.capture.batch import FrameBatch
from xdpfeed.capture.pcapfile import PcapSource
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.itch.decoder import ItchTables, decode_batch, decode_stream
from xdpfeed.multicast.itch.reference import decode, iter_file
from xdpfeed.multicast.itch.schema import TYPE_CODE, TYPES
from xdpfeed.multicast.wire import counters as C
from xdpfeed.multicast.wire.moldudp64 import PacketIndex, Sessions, extract_batch

N = 200_000
STOCKS = 500
PEAK = 20_000
SEED = 11
GROUP = ((233 << 24 | 54 << 16 | 12 << 8 | 111, 26477),)


@pytest.fixture(scope="module")
def day():
    data, info = synthetic.generate(N, n_stocks=STOCKS, seed=SEED, peak_live_orders=PEAK)
    return data, info


@pytest.fixture(scope="module")
def decoded(day):
    """The day through the compiled file decoder: (tables, counters, final position, cut)."""
    data, _ = day
    out = ItchTables(1 << 18)
    cnt = C.new()
    args = out.tables, out.rows, out.order_type, out.order_row
    pos, n, cut = decode_stream(data, 0, data.size, 0, *args, 0, cnt)
    out.count = n
    return out, cnt, pos, cut


@pytest.fixture(scope="module")
def messages(day):
    """Every message as a dict, from the reference decoder."""
    return [decode(m) for m in iter_file(day[0].tobytes())]


def test_every_message_decodes(day, decoded):
    data, info = day
    out, cnt, pos, cut = decoded
    assert (pos, cut) == (data.size, 0)
    assert cnt[C.MESSAGES] == N and out.count == N and out.rows.sum() == N
    assert cnt[C.UNKNOWN_TYPES] == 0 and cnt[C.BAD_LENGTH_MESSAGES] == 0
    for t in TYPES:
        assert out.rows[TYPE_CODE[t]] == info["counts"].get(t, 0), t


def test_mix_and_every_type(decoded):
    out = decoded[0]
    frac = {t: out.rows[TYPE_CODE[t]] / N for t in TYPES}
    for t, want, tol in (("A", 0.44, 0.005), ("D", 0.43, 0.005), ("U", 0.07, 0.004), ("E", 0.02, 0.002),
                         ("X", 0.01, 0.0015)):
        assert abs(frac[t] - want) <= tol, (t, frac[t])
    rest = 1 - sum(frac[t] for t in "ADUEX")
    assert 0.02 <= rest <= 0.035, rest
    assert all(out.rows[TYPE_CODE[t]] >= 1 for t in TYPES), dict(zip(TYPES, out.rows, strict=True))
    assert out.rows[TYPE_CODE["R"]] == STOCKS


def test_day_structure(messages):
    assert all(m is not None for m in messages)
    events = [m["event_code"] for m in messages if m["type"] == "S"]
    assert events == list("OSQMEC")
    assert messages[0]["type"] == "S" and messages[-1]["type"] == "S"
    assert [m["type"] for m in messages[1 : 1 + STOCKS]] == ["R"] * STOCKS
    symbols = [m["stock"] for m in messages[1 : 1 + STOCKS]]
    assert len(set(symbols)) == STOCKS and [m["stock_locate"] for m in messages[1 : 1 + STOCKS]] == list(
        range(1, STOCKS + 1)
    )
    ts = np.array([m["timestamp"] for m in messages], dtype=np.int64)
    assert np.all(np.diff(ts) > 0)
    assert ts[0] >= 4 * 3600 * 10**9 and ts[-1] <= 20 * 3600 * 10**9
    hours = {m["event_code"]: m["timestamp"] for m in messages if m["type"] == "S"}
    assert hours["Q"] == 9 * 3600 * 10**9 + 1800 * 10**9 and hours["M"] == 16 * 3600 * 10**9
    # the stock named on an order is the one its locate was given in the directory
    by_locate = dict(zip(range(1, STOCKS + 1), symbols, strict=True))
    for m in messages:
        if m["type"] in "AFPIJhHYNL":
            assert by_locate[m["stock_locate"]] == m["stock"], m


def test_book_consistent(messages):
    book = {}  # ref -> [locate, side, shares, price]
    last_ref = 0
    peak = 0
    for m in messages:
        t = m["type"]
        if t in "AF":
            ref = m["order_reference_number"]
            assert ref > last_ref and m["buy_sell_indicator"] in ("B", "S")
            assert m["shares"] > 0 and m["price"] > 0
            last_ref = ref
            book[ref] = [m["stock_locate"], m["buy_sell_indicator"], m["shares"], m["price"]]
        elif t in "DEXCU":
            ref = m["original_order_reference_number"] if t == "U" else m["order_reference_number"]
            assert ref in book, m
            order = book[ref]
            assert order[0] == m["stock_locate"], m
            if t == "D":
                del book[ref]
            elif t == "U":
                new = m["new_order_reference_number"]
                assert new > last_ref and new not in book and m["shares"] > 0
                last_ref = new
                del book[ref]
                book[new] = [order[0], order[1], m["shares"], m["price"]]
            else:
                take = m["canceled_shares"] if t == "X" else m["executed_shares"]
                assert 0 < take <= order[2], (m, order)
                order[2] -= take
                if order[2] == 0:
                    del book[ref]
        peak = max(peak, len(book))
    assert PEAK <= peak <= PEAK * 1.01


def test_deterministic(day):
    again = synthetic.generate_itch_file_bytes(N, n_stocks=STOCKS, seed=SEED, peak_live_orders=PEAK)
    assert np.array_equal(again, day[0])
    other = synthetic.generate_itch_file_bytes(N, n_stocks=STOCKS, seed=SEED + 1, peak_live_orders=PEAK)
    assert not np.array_equal(other[: min(other.size, day[0].size)], day[0][: min(other.size, day[0].size)])


def test_pcap_round_trip(tmp_path, day, decoded):
    data, _ = day
    path = str(tmp_path / "day.pcap")
    info = synthetic.write_moldudp64_pcap(path, data)
    assert info["messages"] == N and info["next_seq"] == N + 1
    frames = FrameBatch(1024)
    index = PacketIndex(4096)
    sessions = Sessions()
    cnt = C.new()
    out = ItchTables(1 << 18)
    seqs = []
    payload_max = 0
    with PcapSource(path) as src:
        assert src.linktype == 1
        while src.recv(frames):
            payload_max = max(payload_max, int(frames.length[: frames.count].max()))
            start = 0
            while start < frames.count:
                start = extract_batch(frames, start, np.array(GROUP, dtype=np.int64), sessions, index, cnt)
                seqs.append(index.message_seqs())
                decode_batch(frames.data, index, 0, out, cnt)
    seq = np.concatenate(seqs)
    assert np.array_equal(seq, np.arange(1, N + 1, dtype=np.uint64))
    assert payload_max - synthetic.FRAME_OVERHEAD <= synthetic.MAX_BLOCK_BYTES
    assert cnt[C.PACKETS] == info["packets"] and cnt[C.END_OF_SESSION] == 1
    for bad in (C.MALFORMED_PACKETS, C.FILTERED, C.UNKNOWN_TYPES, C.BAD_LENGTH_MESSAGES, C.TRUNCATED_FRAMES):
        assert cnt[bad] == 0, C.names()[bad]
    assert cnt[C.DECODED] == N and sessions.names() == ["SYNTH00001"]
    ref = decoded[0]
    for t in TYPES:  # same messages as decoding the file, bar the origin columns
        a, b = out[t], ref[t]
        for f in a.dtype.names[2:]:
            assert np.array_equal(a[f], b[f]), (t, f)


def test_pcap_frames_are_well_formed(tmp_path):
    data = synthetic.generate_itch_file_bytes(5_000, n_stocks=10, seed=3)
    path = str(tmp_path / "small.pcap")
    info = synthetic.write_moldudp64_pcap(path, data, vlan=77)
    raw = open(path, "rb").read()
    assert raw[:4] == (0xA1B23C4D).to_bytes(4, "little")
    off, n, times = 24, 0, []
    while off < len(raw):
        sec, ns, incl, orig = (int.from_bytes(raw[off + i : off + i + 4], "little") for i in (0, 4, 8, 12))
        assert incl == orig and ns < 10**9
        times.append(sec * 10**9 + ns)
        pkt = Ether(raw[off + 16 : off + 16 + incl])
        assert pkt[Dot1Q].vlan == 77 and pkt[Ether].dst == "01:00:5e:36:0c:6f"
        ip = pkt[IP]
        assert (ip.dst, ip[UDP].dport, ip.flags.DF, ip.frag) == ("233.54.12.111", 26477, True, 0)
        recomputed = IP(bytes(ip))
        del recomputed.chksum  # scapy fills it in again when building
        assert IP(bytes(recomputed)).chksum == ip.chksum
        mold = bytes(ip[UDP].payload)
        assert ip[UDP].len == 8 + len(mold) and mold[:10] == b"SYNTH00001"
        off += 16 + incl
        n += 1
    assert n == info["packets"] and int.from_bytes(mold[18:20], "big") == 0xFFFF  # ends with End of Session
    assert times == sorted(times)
    assert times[0] >= synthetic.MIDNIGHT_2024_01_02_ET_NS + 4 * 3600 * 10**9


def _read(path):
    return np.fromfile(path, dtype=np.uint8)


def test_generate_to_file_caches(tmp_path):
    path = str(tmp_path / "d.itch")
    pcap = str(tmp_path / "d.pcap")
    meta = synthetic.generate_to_file(path, 20_000, seed=5, pcap_path=pcap)
    assert np.array_equal(_read(path), synthetic.generate_itch_file_bytes(20_000, seed=5))
    assert meta["pcap"]["messages"] == 20_000 and os.path.getsize(pcap) == meta["pcap"]["bytes"]
    stamps = os.stat(path).st_mtime_ns, os.stat(pcap).st_mtime_ns
    assert synthetic.generate_to_file(path, 20_000, seed=5, pcap_path=pcap) == meta
    assert (os.stat(path).st_mtime_ns, os.stat(pcap).st_mtime_ns) == stamps
    synthetic.generate_to_file(path, 20_000, seed=6)  # other arguments: regenerated
    assert np.array_equal(_read(path), synthetic.generate_itch_file_bytes(20_000, seed=6))


def test_rejects_impossible_days():
    with pytest.raises(ValueError, match="peak_live_orders"):
        synthetic.generate(50_000, n_stocks=10, peak_live_orders=40_000)
    with pytest.raises(ValueError, match="n_stocks"):
        synthetic.generate(50_000, n_stocks=5_000)
    with pytest.raises(ValueError, match="n_messages"):
        synthetic.generate(500, n_stocks=1)
    with pytest.raises(ValueError, match="recent_share"):
        synthetic.generate(50_000, recent_share=1.5)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_recent_share_sets_how_old_the_orders_acted_on_are(share):
    """At 1.0 every D/E/X/C/U names one of the 256 newest live orders; at 0.0 any live order,
    so mostly older ones."""
    from xdpfeed.multicast.itch import reference as R

    buf, _ = synthetic.generate(60_000, n_stocks=20, seed=9, peak_live_orders=5_000, recent_share=share)
    live, shares = [], {}  # refs in the generator's order (adds append, removals swap-remove); shares left
    young = old = 0
    for m in (R.decode(x) for x in R.iter_file(buf.tobytes())):
        t = m["type"]
        if t in "AF":
            live.append(m["order_reference_number"])
            shares[live[-1]] = m["shares"]
        elif t in "DEXCU":
            ref = m["original_order_reference_number"] if t == "U" else m["order_reference_number"]
            k = live.index(ref)
            if len(live) > 256:
                young += k >= len(live) - 256
                old += k < len(live) - 256
            if t == "U":
                live[k] = m["new_order_reference_number"]
                shares[live[k]] = m["shares"]
                continue
            shares[ref] -= shares[ref] if t == "D" else m["canceled_shares" if t == "X" else "executed_shares"]
            if shares[ref] == 0:
                live[k] = live[-1]
                live.pop()
    assert young + old > 10_000, (young, old)
    assert (old == 0) if share == 1.0 else (old > 3 * young), (young, old)
