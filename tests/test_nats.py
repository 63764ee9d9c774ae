"""nats: outputs and subscriptions against a real JetStream cluster of 3 nats-server processes on loopback
(replicated stream, R3): two handlers publishing one feed as one through a handler and a node dying, a late
consumer, a restarted handler; subscriptions from any sequence; credentials; the bounded buffer."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from xdpfeed.multicast.book.order_book import OrderBook
from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.feed.consumers import MessageBatch
from xdpfeed.multicast.sinks.base import SinkError
from xdpfeed.multicast.sinks.nats_local import LocalCluster
from xdpfeed.multicast.sinks.nats_wire import retry
from xdpfeed.multicast.sinks.subscriber import Subscriber, SubscriberError
from xdpfeed.multicast.sinks.uri import open_sink

from conftest import REPO
from helpers import PASSWORD, USER, eventually, venue_for

XDPFEED = [sys.executable, "-m", "xdpfeed.multicast.cli"]
LOSSY = {"loss_a": 0.05, "loss_b": 0.05, "burst_loss": 3000, "bursts": 2, "seed": 8, "rate": 15_000}


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3) as c:
        yield c


@pytest.fixture(scope="module")
def day():
    return DayStore(synthetic.generate(100_000, seed=31)[0], "NATSTEST01")


def env(**extra):
    e = dict(os.environ)
    e.pop("NUMBA_BOUNDSCHECK", None)  # subprocesses use the production build and cache
    e.pop("NUMBA_CACHE_DIR", None)
    return {**e, **extra}


def stream_name() -> str:
    return f"T{uuid.uuid4().hex[:10].upper()}"


async def _stream(cluster, stream, with_chunks):
    import nats

    nc = await nats.connect(servers=cluster.servers())
    try:  # a node that just came back, or a leader being elected, may not answer at once: retried like the sinks
        js = nc.jetstream()
        info = await retry(lambda: js.stream_info(stream), stream, "stream info", seconds=30)
        chunks = []
        if with_chunks:
            for s in range(info.state.first_seq, info.state.last_seq + 1):
                m = await retry(lambda s=s: js.get_msg(stream, seq=s), stream, f"get {s}", seconds=30)
                chunks.append((m.headers, m.data))
        return info, chunks
    finally:
        await nc.close()


def stream_info(cluster, stream):
    return asyncio.run(_stream(cluster, stream, False))[0]


def stream_chunks(cluster, stream):
    """(headers, payload) of every message of the stream, in order (an independent read: nats-py's get)."""
    return asyncio.run(_stream(cluster, stream, True))[1]


def check_stream_holds_the_day(chunks, day) -> dict:
    """The stream holds the day exactly once and in order; chunks per publisher."""
    expect, body, publishers = 1, [], {}
    for h, data in chunks:
        first, count = int(h["Xdpfeed-First-Seq"]), int(h["Xdpfeed-Count"])
        assert first == expect, f"chunk from {first}, expected {expect}"
        ts = np.frombuffer(data[: 8 * count], "<i8")
        assert (ts > 0).all()
        body.append(data[8 * count:])
        expect = first + count
        publishers[h["Xdpfeed-Publisher"]] = publishers.get(h["Xdpfeed-Publisher"], 0) + count
    assert expect == day.count + 1 and b"".join(body) == bytes(day.records)
    return publishers


class Collector:
    """A Subscriber read on a thread until it has the whole day: the stream it got and every seq."""

    def __init__(self, uri, count, **opts):
        self.sub = Subscriber(uri, **opts)
        self.count, self.parts, self.seqs = count, [], []
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while self.sub.next_seq <= self.count:
                b = self.sub.receive(0.2)
                if b is not None:
                    self.parts.append(b.stream.tobytes())
                    self.seqs.append(b.seq.copy())
        except Exception as e:  # noqa: BLE001 — reported by the test
            self.error = e

    def finish(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"subscriber stuck at {self.sub.next_seq}"
        self.sub.close()
        assert self.error is None, self.error
        return b"".join(self.parts), np.concatenate(self.seqs)


def write_config(path, keys, name) -> str:
    with open(path, "w") as f:
        f.write(f'[feed]\nname = "{name}"\nline_a = "{keys["line_a"]}"\nline_b = "{keys["line_b"]}"\n'
                f'[recovery]\nrerequest = ["{keys["rerequest"][0]}"]\nreplay = ["{keys["replay"][0]}"]\n'
                f'user = "{USER}"\nrerequest_max = 1000\n')
    return str(path)


def start_handler(config, uri, log_path, *extra):
    log = open(log_path, "w")
    p = subprocess.Popen(XDPFEED + ["run", "-c", config, "--out", uri, "--until-eos", "-T", "json",
                                    "--metrics-addr", "off", *extra],
                         stdout=subprocess.PIPE, stderr=log, text=True, env=env(XDPFEED_PASSWORD=PASSWORD), cwd=REPO)
    log.close()
    eventually(lambda: "ready: line A" in open(log_path).read() or p.poll() is not None, 60)
    assert p.poll() is None, open(log_path).read()
    return p


def finish_handler(p, log_path) -> dict:
    out, _ = p.communicate(timeout=180)
    assert p.returncode == 0, open(log_path).read()[-3000:]
    return json.loads(out)


def test_two_handlers_publish_the_day_once_through_a_handler_and_a_node_dying(cluster, day, tmp_path):
    stream = stream_name()
    uri = cluster.uri(stream)
    with venue_for(day, venue=LOSSY) as (venue, keys):
        config = write_config(tmp_path / "feed.toml", keys, name=stream.lower())
        h1 = start_handler(config, uri, tmp_path / "h1.log")
        h2 = start_handler(config, uri, tmp_path / "h2.log")
        early = Collector(uri, day.count)  # before the first chunk: reads from the stream's start
        venue.start()
        eventually(lambda: early.sub.next_seq > day.count // 4, 60)
        h1.kill()  # SIGKILL: mid-chunk, chunks in flight
        h1.wait(10)
        leader = stream_info(cluster, stream).cluster.leader
        victim = int(leader[1:])  # the stream's leader: its node dies
        cluster.kill(victim)
        eventually(lambda: early.sub.next_seq > day.count // 2, 60)
        late = Collector(uri, day.count)  # late: the day so far from the stream, then live
        from_mid = Collector(uri, day.count, start_seq=day.count // 2 + 7)
        h1b = start_handler(config, uri, tmp_path / "h1b.log")  # comes back: replays the day from 1
        s2 = finish_handler(h2, tmp_path / "h2.log")
        s1 = finish_handler(h1b, tmp_path / "h1b.log")
    cluster.start(victim)
    cluster.wait_ready()  # the node back in the cluster before the independent read below
    # the stream: the venue's day once, in order
    publishers = check_stream_holds_the_day(stream_chunks(cluster, stream), day)
    assert sum(publishers.values()) == day.count and len(publishers) >= 2  # h1 stored some before it died
    # every consumer: the day (from where it began), each seq once, in order; its book is the venue's
    records = bytes(day.records)
    book = OrderBook()
    book.apply_stream(day.records)
    for c in (early, late):
        got, seqs = c.finish()
        assert got == records and (seqs == np.arange(1, day.count + 1)).all()
        assert c.sub.stats()["gaps"] == 0 and c.sub.stats()["duplicates"] == 0
        theirs = OrderBook()
        theirs.apply_stream(np.frombuffer(got, np.uint8))
        assert theirs.checksum() == book.checksum()
    got, seqs = from_mid.finish()
    assert (seqs == np.arange(day.count // 2 + 7, day.count + 1)).all()
    assert records.endswith(got)
    # what the handlers say: h2 went on alone after h1 died, h1 came back and found the day stored
    for s in (s1, s2):
        assert s["delivered"] == day.count and s["lost"] == 0 and s["filled_replay"] > 0
        (out,) = s["outputs"].values()
        assert out["messages"] == day.count and out["stored"] + out["twin"] == day.count
        assert out["dropped_messages"] == 0 and out["unpublished"] == 0 and out["gaps"] == 0
    out2, out1 = next(iter(s2["outputs"].values())), next(iter(s1["outputs"].values()))
    assert out2["stored"] > 0 and out1["twin"] > day.count // 2  # the restarted one trimmed what was stored
    assert publishers[out2["publisher"]] == out2["stored"] and publishers.get(out1["publisher"], 0) == out1["stored"]


def publish_day(uri, day, batch=5_000, session=None, **opts):
    """The day through a nats: output directly, in batches of `batch` messages; the sink's stats."""
    feed = uri.rpartition("/")[2].lower()  # a subject of its own (a subject belongs to one stream)
    sink = open_sink(uri + ("?" + "&".join(f"{k}={v}" for k, v in opts.items()) if opts else ""), feed=feed)
    b, pos, seq = MessageBatch(batch), 0, 1
    records, session = day.records, session or day.session.decode()
    while pos < records.size:
        start, n = pos, 0
        while pos < records.size and n < batch:
            pos += 2 + ((int(records[pos]) << 8) | int(records[pos + 1]))
            n += 1
        sink.on_messages(b.set(records[start:pos], seq, n, np.full(n, time.time_ns(), np.int64), session))
        seq += n
    sink.close()
    return sink.stats()


def test_a_subscriber_starts_at_any_sequence_and_resumes_where_it_stopped(cluster, day):
    stream = stream_name()
    uri = cluster.uri(stream)
    st = publish_day(uri, day, chunk=1000)
    assert st["stored"] == day.count and st["messages"] == day.count
    records = bytes(day.records)
    for start in (1, 2, 999, 1000, 1001, day.count // 3, day.count):
        with Subscriber(uri, start_seq=start, idle_timeout=1.0) as sub:
            batches = [(b.stream.tobytes(), b.seq.copy()) for b in sub]
        seqs = np.concatenate([s for _, s in batches])
        assert (seqs == np.arange(start, day.count + 1)).all(), start
        assert records.endswith(b"".join(d for d, _ in batches))
    # a reader that stops and comes back with start_seq=next_seq misses nothing and repeats nothing
    with Subscriber(uri) as sub:
        head = b"".join(sub.receive(5).stream.tobytes() for _ in range(3))
        resume = sub.next_seq
    assert 1 < resume < day.count
    assert head + _collect_from(uri, resume) == records
    with pytest.raises(SubscriberError, match="no stream"):
        Subscriber(cluster.uri("NOSUCHSTREAM"))


def test_a_new_session_follows_the_last_one_in_the_stream(cluster, day):
    """Tomorrow's handler finds today's session at the end of the stream: it publishes after it (a session it
    never saw is an earlier one), and a subscriber starting at a sequence number reads the latest session."""
    stream = stream_name()
    uri = cluster.uri(stream)
    small = DayStore(synthetic.generate(3_000, seed=2)[0], "DAY0000001")
    assert publish_day(uri, small)["stored"] == 3_000
    st = publish_day(uri, day, session="DAY0000002")
    assert st["stored"] == day.count and st["twin"] == 0 and st["superseded"] == 0
    sessions = [h["Xdpfeed-Session"] for h, _ in stream_chunks(cluster, stream)]
    assert sessions == sorted(sessions) and set(sessions) == {"DAY0000001", "DAY0000002"}
    assert _collect_from(uri, 1) == bytes(day.records)


def _collect_from(uri, start) -> bytes:
    with Subscriber(uri, start_seq=start, idle_timeout=1.0) as sub:
        return b"".join(b.stream.tobytes() for b in sub)


@pytest.fixture(scope="module")
def day_pcap(tmp_path_factory):
    base = tmp_path_factory.mktemp("natsday") / "day"
    synthetic.generate_to_file(f"{base}.itch", 5_000, seed=5, pcap_path=f"{base}.pcap")
    return f"pcap:{base}.pcap"


def run_xdpfeed(*args, **env_extra):
    return subprocess.run(XDPFEED + list(args), capture_output=True, text=True, env=env(**env_extra), cwd=REPO,
                          timeout=120)


def test_bad_credentials_and_a_password_in_the_uri_are_one_line(tmp_path, day_pcap):
    with LocalCluster(1, auth={"user": "feed", "password": "right-one"}) as c:
        port = c.client_ports[0]
        good = f"nats://feed@127.0.0.1:{port}/AUTHED"
        pw = tmp_path / "nats.pw"
        pw.write_text("right-one\n")
        pw.chmod(0o600)
        st = publish_day(good, DayStore(synthetic.generate(2_000, seed=3)[0], "AUTHTEST01"), password_file=pw)
        assert st["stored"] == 2_000
        pw.write_text("wrong\n")
        with pytest.raises(SinkError, match="refused the credentials"):
            open_sink(f"{good}?password_file={pw}")
        for uri, needle in ((f"{good}?password_file={pw}", "refused the credentials"),
                            (f"nats://feed:right-one@127.0.0.1:{port}/AUTHED", "a password does not belong in the URI"),
                            (good, "needs a password")):
            r = run_xdpfeed("run", "-a", day_pcap, "--out", uri, "--metrics-addr", "off")
            assert r.returncode == 2 and needle in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
        # the password from the environment
        r = run_xdpfeed("run", "-a", day_pcap, "--out", good + "2", "--metrics-addr", "off", "-T", "json",
                        XDPFEED_NATS_PASSWORD="right-one")
        assert r.returncode == 0, r.stderr
        (out,) = json.loads(r.stdout)["outputs"].values()
        assert out["stored"] == out["messages"] == 5_000


def test_past_its_bound_the_output_drops_counts_and_never_blocks_the_feed(day):
    with LocalCluster(1) as c:
        uri = c.uri("BOUNDED") + "?buffer_mb=1&ack_timeout=0.5"
        sink = open_sink(uri, feed="bounded")
        c.kill(0)  # the only node dies: nothing can be stored
        b = MessageBatch(day.count)
        t0 = time.monotonic()
        for _ in range(40):  # 40 × the day's 3 MB, far past 1 MB
            sink.on_messages(b.set(day.records, 1, day.count, np.zeros(day.count, np.int64), day.session.decode()))
        assert time.monotonic() - t0 < 2.0  # copies, never waits for NATS
        st = sink.stats()
        assert st["dropped_batches"] >= 39 and st["dropped_messages"] == st["dropped_batches"] * day.count
        sink.close(timeout=1.0)
        st = sink.stats()
        assert st["unpublished"] == (40 - st["dropped_batches"]) * day.count and st["stored"] == 0


def test_run_exits_3_when_an_output_could_not_publish_everything(tmp_path):
    day = DayStore(synthetic.generate(60_000, seed=13)[0], "NATSDROP01")
    with LocalCluster(1) as c, venue_for(day, venue={"rate": 20_000}) as (venue, keys):
        uri = c.uri("DROPS") + "?buffer_mb=1&ack_timeout=0.3&close_timeout=1"
        h = start_handler(write_config(tmp_path / "feed.toml", keys, "drops"), uri, tmp_path / "h.log", "-T", "text")
        c.kill(0)  # NATS gone before the day starts: 2.3 MB of messages cannot be published, 1 MB may wait
        venue.start()
        out, _ = h.communicate(timeout=120)
    err = open(tmp_path / "h.log").read()
    assert h.returncode == 3, err
    assert "end of session" in err and f"delivered {day.count:,}" in out  # the feed went on, whole
    line = next(x for x in err.splitlines() if "is incomplete" in x)
    dropped = int(line.split(": ")[-1].split(" messages dropped")[0].replace(",", ""))
    assert 0 < dropped < day.count and f"dropped {dropped:,}" in out


def test_top_of_book_goes_to_per_symbol_subjects(cluster, day_pcap):
    from xdpfeed import Feed

    records = np.fromfile(day_pcap[len("pcap:"):-len(".pcap")] + ".itch", np.uint8)
    seen = []
    ref = OrderBook(events=1 << 16, on_events=lambda ev: seen.append(ev.copy()))
    ref.apply_stream(records, first_seq=1)
    ref.flush_events()
    events = np.concatenate(seen)
    locs, counts = np.unique(events["locate"], return_counts=True)
    loc = int(locs[np.argmax(counts)])
    symbol = ref.symbol(loc)
    want = events[events["locate"] == loc]
    stream = stream_name()
    uri = cluster.uri(stream)
    with Feed(line_a=day_pcap, outputs=[uri], name=stream.lower(), metrics=None) as feed:
        with Subscriber(uri, top_of_book=True, symbols=[symbol], start_seq="new") as sub:
            assert feed.run() == "sources exhausted"
            got = []
            while sum(len(e) for e in got) < len(want):
                item = sub.top_of_book(10)
                assert item is not None, f"{sum(len(e) for e in got)} of {len(want)} events"
                assert item[0] == symbol
                got.append(item[1])
            assert sub.top_of_book(0.5) is None  # and nothing of another symbol
    got = np.concatenate(got)
    assert (got == want).all() and (got["locate"] == loc).all()


def test_tail_reads_a_stream_as_decode_prints(cluster, day, tmp_path):
    stream = stream_name()
    uri = cluster.uri(stream)
    publish_day(uri, day)
    r = run_xdpfeed("tail", uri, "-T", "jsonl", "--type", "A", "-c", "5", "--from", "100")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 5 and all(x["type"] == "A" and x["seq"] >= 100 for x in lines)
    r = run_xdpfeed("tail", uri, "-T", "summary", "--idle-timeout", "1")
    assert r.returncode == 0 and f"messages: {day.count}" in r.stdout, r.stdout + r.stderr


def test_bridge_moves_publishing_out_of_the_handler_and_records_a_stream_elsewhere(cluster, day_pcap, tmp_path):
    from xdpfeed import Feed

    stream, name = stream_name(), f"br{uuid.uuid4().hex[:10]}"
    uri = cluster.uri(stream)
    records = np.fromfile(day_pcap[len("pcap:"):-len(".pcap")] + ".itch", np.uint8).tobytes()
    with Feed(line_a=day_pcap, outputs=[f"ipc:{name}?history=64"], name=stream.lower(), metrics=None) as feed:
        bridge = subprocess.Popen(XDPFEED + ["bridge", f"ipc:{name}", "--out", uri, "--idle-timeout", "30"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
        eventually(lambda: feed.sinks[0].subscribers == 1 or bridge.poll() is not None, 60)
        assert bridge.poll() is None, bridge.stderr.read()
        assert feed.run() == "sources exhausted"
        # the handler's samples live in its shared memory: it stays until the bridge has passed them on
        eventually(lambda: stream_info(cluster, stream).state.messages > 0
                   and sum(int(h["Xdpfeed-Count"]) for h, _ in stream_chunks(cluster, stream)) == 5_000, 60)
    _, err = bridge.communicate(timeout=120)  # the handler's ipc: output is gone: the bridge ends
    assert bridge.returncode == 0, err
    assert "5,000 messages" in err and "missed 0" in err
    chunks = stream_chunks(cluster, stream)
    assert b"".join(d[8 * int(h["Xdpfeed-Count"]):] for h, d in chunks) == records
    # on another host: the stream recorded as an ITCH file
    r = run_xdpfeed("bridge", uri, "--out", f"itch:{tmp_path}/copy.itch", "--idle-timeout", "1", "-q")
    assert r.returncode == 0, r.stderr
    assert open(f"{tmp_path}/copy.itch", "rb").read() == records
    r = run_xdpfeed("bridge", "ipc:nosuchservice", "--out", f"itch:{tmp_path}/x.itch")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no such service" in r.stderr


def _certificates(d) -> dict:
    """A CA and a server certificate for 127.0.0.1 it signed (PEM files in d)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("xdpfeed test CA")).issuer_name(name("xdpfeed test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    paths = {k: str(d / f"{k}.pem") for k in ("ca", "cert", "key")}
    open(paths["ca"], "wb").write(ca.public_bytes(serialization.Encoding.PEM))
    open(paths["cert"], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(paths["key"], "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return paths


def test_tls_and_an_nkey(tmp_path):
    import nkeys

    small = DayStore(synthetic.generate(2_000, seed=7)[0], "TLSTEST001")
    tls = _certificates(tmp_path)
    with LocalCluster(1, tls=tls) as c:
        uri = f"nats://127.0.0.1:{c.client_ports[0]}/SECURE"
        assert publish_day(uri, small, tls=1, ca=tls["ca"])["stored"] == 2_000
        with pytest.raises(SinkError, match="no NATS server answered.*(CERTIFICATE_VERIFY_FAILED|certificate)"):
            open_sink(uri + "?tls=1", feed="secure")  # the system's CAs do not know this one
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    seed_file = tmp_path / "feed.nk"
    seed_file.write_bytes(seed + b"\n")
    seed_file.chmod(0o600)
    public = nkeys.from_seed(seed).public_key.decode()
    with LocalCluster(1, auth={"nkey": public, "seed_file": str(seed_file)}) as c:
        uri = f"nats://127.0.0.1:{c.client_ports[0]}/SIGNED"
        assert publish_day(uri, small, nkey=seed_file)["stored"] == 2_000
        other = tmp_path / "other.nk"
        other.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER) + b"\n")
        with pytest.raises(SinkError, match="refused the credentials"):
            open_sink(f"{uri}?nkey={other}", feed="signed")
