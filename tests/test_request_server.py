"""The MoldUDP64 re-request server over loopback UDP: what it answers (sequence = requested start, whole
messages that fit, byte-identical to the store), partial answers, and every case it stays silent."""

import socket
import struct

import pytest

from xdpfeed.multicast.exchange.request_server import RequestServer
from xdpfeed.multicast.exchange.store import DayStore
from xdpfeed.multicast.exchange.synthetic import generate

SESSION = b"REQTEST001"


@pytest.fixture(scope="module")
def store():
    return DayStore(generate(5_000, seed=3)[0], SESSION)


@pytest.fixture
def client():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s


def request(seq, count, session=SESSION):
    return session + struct.pack(">QH", seq, count)


def ask(client, server, payload, timeout=2.0):
    """The server's answer to `payload`, or None when nothing came within `timeout`."""
    client.settimeout(timeout)
    client.sendto(payload, server.address)
    try:
        return client.recv(65536)
    except TimeoutError:
        return None


def check(store, reply, first, max_payload=1472):
    """Header, size and bytes of an answer starting at `first`; returns its message count."""
    session, seq, n = struct.unpack_from(">10sQH", reply)
    assert session == SESSION and seq == first and n >= 1
    assert len(reply) <= max_payload
    assert reply[20:] == store.block_bytes(first, first + n).tobytes()
    return n


def test_answers_the_requested_messages(store, client):
    with RequestServer(store) as srv:
        assert srv.address[0] == "127.0.0.1" and srv.address[1] > 0
        assert check(store, ask(client, srv, request(100, 10)), 100) == 10
        assert check(store, ask(client, srv, request(1, 1)), 1) == 1
        assert check(store, ask(client, srv, request(4990, 100)), 4990) == 11  # up to the last message
        assert srv.stats["answered"] == 3 and srv.stats["messages_sent"] == 22 and srv.stats["requests"] == 3


@pytest.mark.parametrize("max_payload", [1472, 200, 60])
def test_answer_is_as_many_whole_messages_as_fit(store, client, max_payload):
    with RequestServer(store, max_payload=max_payload) as srv:
        for first in (1, 2000, 4900):
            n = check(store, ask(client, srv, request(first, 0xFFFE)), first, max(max_payload, 72))
            assert n < 0xFFFE
            nxt = store.offsets[first + n] - store.offsets[first - 1]  # blocks of one more message
            assert 20 + nxt > max_payload or first + n == store.next_seq
            assert 20 + store.offsets[first + n - 1] - store.offsets[first - 1] <= max_payload or n == 1


def test_partial_answer_stops_at_published(store, client):
    published = [150]
    with RequestServer(store, published=lambda: published[0]) as srv:
        assert check(store, ask(client, srv, request(140, 50)), 140) == 10
        assert ask(client, srv, request(150, 5), timeout=0.3) is None
        assert ask(client, srv, request(4000, 5), timeout=0.3) is None
        assert srv.stats["beyond_end"] == 2
        published[0] = 4001
        assert check(store, ask(client, srv, request(4000, 5)), 4000) == 1
        assert ask(client, srv, request(5001, 1), timeout=0.3) is None  # past the store as well
        assert srv.stats["beyond_end"] == 3 and srv.stats["answered"] == 2


def test_no_answer_to_malformed_or_foreign_requests(store, client):
    with RequestServer(store) as srv:
        bad = [request(1, 1)[:19], request(1, 1) + b"\0", b"", request(0, 5), request(3, 0)]
        for payload in bad:
            assert ask(client, srv, payload, timeout=0.2) is None
        assert ask(client, srv, request(1, 1, b"OTHER00001"), timeout=0.2) is None
        assert check(store, ask(client, srv, request(7, 2)), 7) == 2  # still serving after all of that
        assert srv.stats == {"requests": 7, "answered": 1, "messages_sent": 2, "dropped": 0, "malformed": 5,
                             "wrong_session": 1, "beyond_end": 0}


def test_drop_is_seeded(store):
    a = RequestServer(store, drop=0.5, seed=9)
    b = RequestServer(store, drop=0.5, seed=9)
    c = RequestServer(store, drop=0.5, seed=10)
    try:
        runs = [[s.answer(request(i + 1, 1)) is None for i in range(200)] for s in (a, b, c)]
    finally:
        for s in (a, b, c):
            s.stop()
    assert runs[0] == runs[1] != runs[2]
    assert 60 < sum(runs[0]) < 140 and a.stats["dropped"] == sum(runs[0])
    assert a.stats["answered"] == 200 - a.stats["dropped"]


def test_silent_server_never_answers(store, client):
    with RequestServer(store, silent=True) as srv:
        for first in (1, 50, 100):
            assert ask(client, srv, request(first, 3), timeout=0.2) is None
        assert srv.stats["dropped"] == 3 and srv.stats["answered"] == 0


def test_answer_goes_back_to_each_requester(store):
    with RequestServer(store) as srv, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as one, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as two:
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        one.sendto(request(10, 1), srv.address)
        two.sendto(request(20, 1), srv.address)
        one.settimeout(2)
        two.settimeout(2)
        assert struct.unpack_from(">Q", one.recv(2048), 10)[0] == 10
        assert struct.unpack_from(">Q", two.recv(2048), 10)[0] == 20


def test_bad_arguments(store):
    with pytest.raises(ValueError, match="max_payload"):
        RequestServer(store, max_payload=20)
    with pytest.raises(ValueError, match="drop"):
        RequestServer(store, drop=2.0)
