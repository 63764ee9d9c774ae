"""SoupBinTCP replay over 127.0.0.1: ReplayClient against ReplayServer (and against a hand-driven raw
server for framing and protocol errors). Client timeouts run on a fake clock; a real-time deadline only
bounds each loop so a broken test fails instead of hanging."""

import contextlib
import select
import selectors
import socket
import struct
import threading
import time

import numpy as np
import pytest

from xdpfeed.multicast.exchange.replay_server import ReplayFault, ReplayServer
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.exchange.synthetic import generate
from xdpfeed.multicast.feed.replay_client import ReplayClient
from xdpfeed.multicast.wire import soupbintcp as sb

from helpers import eventually

USERS = {"feed": "secret"}
DEADLINE = 20.0  # real seconds any one loop may take before the test fails


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Blocks:
    """on_blocks that keeps copies and checks the runs are contiguous."""

    def __init__(self):
        self.runs: list[tuple[int, int, bytes]] = []

    def __call__(self, buf, offset, count, first_seq):
        assert isinstance(buf, np.ndarray) and buf.dtype == np.uint8
        if self.runs:
            prev_first, prev_count, _ = self.runs[-1]
            assert first_seq == prev_first + prev_count
        self.runs.append((first_seq, count, bytes(buf[offset:])))

    @property
    def data(self) -> bytes:
        return b"".join(r[2] for r in self.runs)

    @property
    def first(self) -> int:
        return self.runs[0][0]


@pytest.fixture(scope="module")
def store():
    return DayStore(generate(20000, seed=11)[0])


_clients: list[ReplayClient] = []


@pytest.fixture(autouse=True)
def close_clients():
    yield
    while _clients:
        _clients.pop().close()


def client(address, on_blocks, first_seq=1, end_seq=None, clock=None, session=b"", user="feed",
           password="secret", **kw) -> ReplayClient:
    c = ReplayClient(address, user, password, session, first_seq, end_seq, clock or FakeClock(), on_blocks, **kw)
    _clients.append(c)
    return c


def run(c: ReplayClient, until=lambda: False, tick=None) -> None:
    """Drive `c` with a selector until it is done/failed or until() holds; tick() runs every round."""
    if c.state in ("done", "failed"):
        return
    sel = selectors.DefaultSelector()
    sel.register(c.fileno(), selectors.EVENT_READ | selectors.EVENT_WRITE)
    deadline = time.monotonic() + DEADLINE
    try:
        while c.state not in ("done", "failed") and not until():
            assert time.monotonic() < deadline, f"client stuck in {c.state} at {c.next_seq}"
            sel.modify(c.fileno(), selectors.EVENT_READ | (selectors.EVENT_WRITE if c.wants_write else 0))
            sel.select(0.05)
            if tick:
                tick()
            c.poll()
    finally:
        sel.close()


# ------------------------------------------------------------------------- client ↔ ReplayServer
def test_full_replay_is_byte_identical(store):
    got = Blocks()
    with ReplayServer(store, USERS) as srv:
        c = client(srv.address, got, buffer_bytes=1 << 17)  # small buffer: many receives, carried partials
        run(c)
        assert (c.state, c.reason) == ("done", "end of session")
        assert c.session == store.session and c.messages == store.count and c.next_seq == store.next_seq
        assert got.first == 1 and got.data == bytes(store.block_bytes(1, store.next_seq))
        assert len(got.runs) > 1
        assert srv.stats["logins"] == 1 and srv.stats["messages_sent"] == store.count


def test_sub_range_caught_up(store):
    got = Blocks()
    with ReplayServer(store, USERS) as srv:
        c = client(srv.address, got, first_seq=5000, end_seq=6000, session=store.session)
        run(c)
        assert (c.state, c.reason) == ("done", "caught up")
        assert got.first == 5000 and c.next_seq >= 6000 and c.messages == c.next_seq - 5000
        assert got.data == bytes(store.block_bytes(5000, c.next_seq))


def test_login_rejected_bad_password(store):
    with ReplayServer(store, USERS) as srv:
        c = client(srv.address, Blocks(), password="wrong")
        run(c)
        assert (c.state, c.reason) == ("failed", "login rejected: not authorized")
        assert srv.stats["rejected_logins"] == 1 and srv.stats["logins"] == 0


def test_login_rejected_by_fault(store):
    with ReplayServer(store, USERS, fault=ReplayFault(reject_login=True)) as srv:
        c = client(srv.address, Blocks())
        run(c)
        assert (c.state, c.reason) == ("failed", "login rejected: not authorized")


def test_unknown_session_rejected(store):
    with ReplayServer(store, USERS) as srv:
        c = client(srv.address, Blocks(), session=b"NOSUCH")
        run(c)
        assert (c.state, c.reason) == ("failed", "login rejected: session not available")


def test_session_mismatch(store):
    with ReplayServer(store, USERS, fault=ReplayFault(session=b"OTHER")) as srv:
        c = client(srv.address, Blocks(), session=store.session)
        run(c)
        assert (c.state, c.reason) == ("failed", "session mismatch: wanted XDPFEED001, got OTHER")
        assert c.session == b"OTHER     "


def test_close_mid_stream_then_resume(store):
    first, second = Blocks(), Blocks()
    with ReplayServer(store, USERS, fault=ReplayFault(close_after=7000)) as srv:
        c1 = client(srv.address, first)
        run(c1)
    assert (c1.state, c1.reason) == ("failed", "disconnected")
    assert c1.next_seq == 7001 and c1.messages == 7000
    with ReplayServer(store, USERS) as srv:
        c2 = client(srv.address, second, first_seq=c1.next_seq)
        run(c2)
    assert (c2.state, c2.reason) == ("done", "end of session")
    assert second.first == 7001
    assert first.data + second.data == bytes(store.block_bytes(1, store.next_seq))  # no loss, no duplicate


def test_stalled_server_is_detected_on_the_clock(store):
    clock = FakeClock()
    with ReplayServer(store, USERS, heartbeat_interval=0.01, fault=ReplayFault(stall_after=3000)) as srv:
        c = client(srv.address, Blocks(), clock=clock)
        run(c, until=lambda: c.messages == 3000)
        clock.t += 15.0  # not yet: silence must exceed the timeout
        c.poll()
        assert c.state == "streaming" and c.server_heartbeats == 0
        clock.t += 0.5
        c.poll()
        assert (c.state, c.reason) == ("failed", "server silent for 15.0 s")
        assert c.next_seq == 3001


def test_heartbeats_both_ways(store):
    clock = FakeClock()
    published = [store.next_seq]

    def tick():
        clock.t += 1.0  # one second per round: the client owes a heartbeat every round

    with ReplayServer(store, USERS, published=lambda: published[0], ended=lambda: False,
                      heartbeat_interval=0.01) as srv:
        c = client(srv.address, Blocks(), clock=clock)
        run(c, until=lambda: c.messages == store.count)
        run(c, until=lambda: srv.stats["heartbeats_received"] >= 20, tick=tick)  # > 15 s of fake time
        assert c.state == "streaming" and c.server_heartbeats > 0  # server 'H' kept the client alive
        seen = c.server_heartbeats  # the server counts each one just after sending it: let it catch up
        eventually(lambda: srv.stats["heartbeats_sent"] >= seen)


def test_waits_beyond_published_then_streams_then_end_of_session(store):
    published, ended = [10001], [False]
    got = Blocks()
    with ReplayServer(store, USERS, published=lambda: published[0], ended=lambda: ended[0],
                      heartbeat_interval=0.01) as srv:
        c = client(srv.address, got, first_seq=15001)
        run(c, until=lambda: c.server_heartbeats >= 3)
        assert c.state == "streaming" and c.messages == 0 and c.next_seq == 15001
        published[0] = store.next_seq
        run(c, until=lambda: c.messages == store.next_seq - 15001)
        assert got.data == bytes(store.block_bytes(15001, store.next_seq))
        ended[0] = True
        run(c)
        assert (c.state, c.reason) == ("done", "end of session")


def test_sequence_zero_starts_at_published_and_want_logs_out(store):
    published = [10001]
    got = Blocks()
    with ReplayServer(store, USERS, published=lambda: published[0], ended=lambda: False,
                      heartbeat_interval=0.01) as srv:
        c = client(srv.address, got, first_seq=0)
        run(c, until=lambda: c.state == "streaming")
        assert c.next_seq == 10001 and c.messages == 0
        published[0] = 12001
        run(c, until=lambda: c.messages == 2000)
        assert got.first == 10001 and got.data == bytes(store.block_bytes(10001, 12001))
        c.want(12001)
        assert (c.state, c.reason) == ("done", "caught up")
        eventually(lambda: srv.stats["logouts"] == 1)


def test_the_server_closes_after_end_of_session(store):
    """After End of Session the server sends FIN right behind the 'Z' and does not wait for the client to
    leave: a client that keeps the connection open and heartbeating still sees the connection end."""
    with ReplayServer(store, USERS, heartbeat_interval=0.05) as srv, socket.create_connection(srv.address) as s:
        s.sendall(sb.encode_login_request("feed", "secret", b"", store.next_seq))
        s.settimeout(DEADLINE)
        data = b""
        t0 = time.monotonic()
        while chunk := s.recv(65536):
            data += chunk
            s.sendall(sb.CLIENT_HEARTBEAT_PACKET)  # a client that heartbeats instead of leaving
        took = time.monotonic() - t0
    assert data.startswith(b"\x00\x1fA") and data.endswith(sb.END_OF_SESSION_PACKET)
    assert took < 5.0  # the server's FIN came at once, it did not linger while we heartbeat


def test_user_names_are_case_insensitive_passwords_are_not(store):
    with ReplayServer(store, {"FEED01": "Secret"}) as srv:
        ok = client(srv.address, Blocks(), first_seq=1, end_seq=100, user="feed01", password="Secret")
        run(ok)
        bad = client(srv.address, Blocks(), user="FEED01", password="SECRET")
        run(bad)
    assert (ok.state, ok.reason) == ("done", "caught up")
    assert (bad.state, bad.reason) == ("failed", "login rejected: not authorized")


# -------------------------------------------------------------------------------- connection errors
def test_connect_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = s.getsockname()
    c = client(address, Blocks())
    run(c)
    assert (c.state, c.reason) == ("failed", "connect failed: Connection refused")


def test_connect_timeout():
    clock = FakeClock()
    with socket.socket() as ls:  # a listener whose accept queue is full drops further SYNs
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        filler = socket.create_connection(ls.getsockname(), timeout=DEADLINE)
        try:
            c = client(ls.getsockname(), Blocks(), clock=clock)
            c.poll()
            if c.state != "connecting":
                pytest.skip(f"this kernel completed the connection despite the full queue ({c.state})")
            clock.t += 2.5
            c.poll()
            assert (c.state, c.reason) == ("failed", "connect timeout")
        finally:
            filler.close()


class RawServer:
    """A listening socket the test drives by hand: accept, read the login, write any bytes."""

    def __init__(self):
        self.ls = socket.create_server(("127.0.0.1", 0))
        self.address = self.ls.getsockname()

    def accept_login(self, c: ReplayClient) -> tuple[socket.socket, tuple]:
        conn, _ = self.ls.accept()
        conn.settimeout(DEADLINE)
        c.poll()  # connected: sends the login request
        data = b""
        while len(data) < 49:
            data += conn.recv(49 - len(data))
        assert sb.next_packet(data, 0, 49)[0] == ord("L")
        return conn, sb.parse_login_request(data[3:])

    def close(self):
        self.ls.close()


@pytest.fixture
def raw():
    r = RawServer()
    yield r
    r.close()


def test_client_framing_split_at_every_byte(raw):
    msgs = [b"A" * 36, b"D" * 19, b"E" * 31, b"P" * 44]
    stream = (sb.encode_login_accepted(b"", 1) + sb.encode_debug("hello") + sb.encode_sequenced(msgs[0])
              + sb.SERVER_HEARTBEAT_PACKET + b"".join(map(sb.encode_sequenced, msgs[1:])) + sb.END_OF_SESSION_PACKET)
    got = Blocks()
    c = client(raw.address, got)
    conn, login = raw.accept_login(c)
    assert login == ("feed", "secret", b" " * 10, 1)
    with conn:
        for i in range(len(stream)):
            conn.sendall(stream[i : i + 1])
            c.poll()
        run(c)
    assert (c.state, c.reason) == ("done", "end of session")
    assert got.data == b"".join(len(m).to_bytes(2, "big") + m for m in msgs) and c.next_seq == 5
    assert c.server_heartbeats == 1


def test_logout_mid_stream_ends_in_fin_not_reset(raw):
    """The client has what it wanted while the server is still writing (a server busy sending reads
    late): its Logout must arrive, followed by an orderly FIN. Closing with the server's bytes unread
    would send a RST instead, and a RST may make the server drop the Logout unread."""
    c = client(raw.address, Blocks(), first_seq=1, end_seq=3, buffer_bytes=1 << 17)  # one read: 128 KiB
    conn, _ = raw.accept_login(c)
    stream = sb.encode_login_accepted(b"", 1) + b"".join(sb.encode_sequenced(b"A" * 36) for _ in range(20_000))

    def write():
        with contextlib.suppress(OSError):
            conn.sendall(stream)

    writer = threading.Thread(target=write, daemon=True)
    with conn:
        writer.start()  # far more than one read: the client leaves with most of it unread
        run(c)
        assert (c.state, c.reason) == ("done", "caught up")
        received = b""
        while chunk := conn.recv(65536):  # a reset raises ConnectionResetError here
            received += chunk
        writer.join(DEADLINE)
    assert received.endswith(sb.LOGOUT_PACKET)


@pytest.mark.parametrize("reply, reason", [
    (sb.encode_login_accepted(b"", 7), "server starts at sequence 7, wanted 1"),
    (b"\x00\x00", "protocol error: SoupBinTCP packet with length 0 at byte 0"),
    (sb.encode_sequenced(b"x"), "protocol error: unexpected packet type 'S' in state login"),
    (sb.encode_login_accepted(b"", 1) + sb.encode_login_accepted(b"", 1),
     "protocol error: unexpected packet type 'A' in state streaming"),
    (b"\x00\x1fA" + b" " * 10 + b"x" * 20, "protocol error: sequence number field"),
    (sb.encode_login_rejected(b"A")[:-1] + b"Q", "login rejected: reason code b'Q'"),
    (b"", "disconnected"),
])
def test_client_protocol_failures(raw, reply, reason):
    c = client(raw.address, Blocks())
    conn, _ = raw.accept_login(c)
    with conn:
        conn.sendall(reply)
        if reply == b"":
            conn.shutdown(socket.SHUT_WR)
        run(c, until=lambda: c.state == "failed")
    assert c.state == "failed" and c.reason.startswith(reason)


def test_reset_mid_stream_is_disconnected(raw):
    got = Blocks()
    c = client(raw.address, got)
    conn, _ = raw.accept_login(c)
    conn.sendall(sb.encode_login_accepted(b"", 1) + sb.encode_sequenced(b"x" * 10) + sb.encode_sequenced(b"y")[:2])
    run(c, until=lambda: c.messages == 1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # linger 0: RST
    run(c)
    assert (c.state, c.reason, c.next_seq) == ("failed", "disconnected", 2)


def test_client_argument_errors():
    with pytest.raises(ValueError, match="buffer_bytes"):
        client(("127.0.0.1", 9), Blocks(), buffer_bytes=1000)
    with pytest.raises(ValueError, match="username"):
        client(("127.0.0.1", 9), Blocks(), user="far-too-long")


@pytest.mark.parametrize("seed", range(6))
def test_garbage_oversize_lengths_and_silence_end_in_failed_with_bounded_memory(raw, seed):
    """After a good login: random bytes, some starting with a maximal length field. The client never raises,
    keeps its fixed buffers, and ends failed (a protocol error, or silence once the clock passes)."""
    rng = np.random.default_rng(seed)
    clock = FakeClock()
    c = client(raw.address, Blocks(), clock=clock)
    conn, _ = raw.accept_login(c)
    buffers = (c._buf.size, c._out.size)
    with conn:
        junk = rng.integers(0, 256, size=int(rng.integers(1, 300_000)), dtype=np.uint8).tobytes()
        if seed % 2:
            junk = b"\xff\xffS" + junk[:1000]  # a 65,535-byte packet announced, a thousand bytes sent
        conn.sendall(sb.encode_login_accepted(b"", 1) + junk)
        end = time.monotonic() + 1.0  # let every byte arrive (or the client fail on them)
        while c.state != "failed" and time.monotonic() < end:
            select.select([c], [], [], 0.05)
            c.poll()
        if c.state != "failed":  # waiting for the rest of a packet that never comes
            clock.t += c.server_timeout + 1
            run(c)
    assert c.state == "failed" and c.reason.startswith(("protocol error", "server silent")), c.reason
    assert (c._buf.size, c._out.size) == buffers
