"""OuchClient against the OUCH Gateway over 127.0.0.1, both versions: login and the sequence numbers of
the outbound stream, orders queued while connecting, fills on the gateway's fake clock, client and
server heartbeats and the silence timeout on the client's fake clock, logout, End of Session, a
disconnect mid-session resumed at the right sequence number (no loss, no duplicate), a login taken
over by a second one, and the Login Rejected reasons. A real-time deadline only bounds each loop."""

import time

import pytest
from test_gateway import USERS, FakeClock, Flow, decode, drive

from xdpfeed.multicast.exchange.gateway import Gateway, no_fills
from xdpfeed.multicast.ouch.session import OuchClient
from xdpfeed.multicast.wire import soupbintcp as sb

from helpers import eventually

_clients: list[OuchClient] = []


@pytest.fixture(autouse=True)
def close_clients():
    yield
    while _clients:
        _clients.pop().close()


@pytest.fixture(params=("4.2", "5.0"))
def v(request):
    return request.param


class Inbox:
    """on_message: keeps (seq, decoded message) and checks that sequence numbers run on by one."""

    def __init__(self, version: str):
        self.version, self.got = version, []

    def __call__(self, seq: int, payload: bytes) -> None:
        if self.got:
            assert seq == self.got[-1][0] + 1
        self.got.append((seq, decode(self.version, "out", payload)))

    @property
    def types(self) -> str:
        return "".join(m["type"] for _, m in self.got)


def client(gw, inbox=None, user="ALICE", password=None, clock=None, **kw) -> OuchClient:
    password = USERS.get(user, "nopass") if password is None else password
    c = OuchClient(gw.address, user, password, gw.version, clock=clock or FakeClock(), on_message=inbox, **kw)
    _clients.append(c)
    return c


def test_login_orders_fills_and_logout(v):
    clock, f = FakeClock(), Flow(v)
    inbox = Inbox(v)
    with Gateway(v, USERS, clock=clock, fill_schedule=lambda o: [(0.0, 25), (10.0, 25)]) as gw:
        c = client(gw, inbox, session="OUCH000001")
        assert c.state == "connecting"
        c.send(f.enter(1, qty=100))  # queued until Login Accepted
        c.send(f.enter(2, "S", 40, price=1_510_000))
        drive([c], lambda: len(inbox.got) >= 5)
        assert (c.state, c.session) == ("active", b"OUCH000001")
        assert inbox.types == "SAEAE" and [s for s, _ in inbox.got] == [1, 2, 3, 4, 5]
        clock.t += 10
        drive([c], lambda: len(inbox.got) >= 7)
        assert inbox.types == "SAEAEEE" and c.next_seq == 8
        c.send(f.cancel(1))
        drive([c], lambda: len(inbox.got) >= 8)
        assert inbox.got[-1][1]["type"] == "C"
        c.logout()
        assert (c.state, c.reason) == ("done", "logged out")
        eventually(lambda: gw.stats["logouts"] == 1)
        assert gw.stats["logins"] == 1 and gw.stats["messages_in"] == 3 and c.sent == 3
        with pytest.raises(RuntimeError, match="logged out"):
            c.send(f.cancel(2))


def test_disconnect_mid_session_resumes_without_loss_or_duplicate(v):
    clock, f = FakeClock(), Flow(v)
    inbox = Inbox(v)
    with Gateway(v, USERS, clock=clock, fill_schedule=lambda o: [(0.0, 10), (1.0, 10), (2.0, 10)]) as gw:
        c = client(gw, inbox)
        for k in range(1, 4):
            c.send(f.enter(k))
        drive([c], lambda: len(inbox.got) >= 7)  # S, then A E for each order
        c.close()  # cut: no logout
        assert (c.state, c.reason, c.next_seq) == ("failed", "closed", 8)
        clock.t += 2  # six fills happen while nobody is connected
        eventually(lambda: len(gw.messages("ALICE")) == 13)
        c.reconnect()  # logs in for next_seq 8
        drive([c], lambda: len(inbox.got) >= 13)
        c.send(f.cancel(2))
        drive([c], lambda: len(inbox.got) >= 14)
        assert c.connections == 2 and c.state == "active"
        assert [s for s, _ in inbox.got] == list(range(1, 15))
        assert [decode(v, "out", m) for m in gw.messages("ALICE")] == [m for _, m in inbox.got]


def test_new_client_resumes_from_next_seq_and_zero_means_only_new(v):
    f = Flow(v)
    with Gateway(v, USERS, clock=FakeClock(), fill_schedule=no_fills) as gw:
        first = Inbox(v)
        c1 = client(gw, first)
        c1.send(f.enter(1))
        c1.send(f.enter(2))
        drive([c1], lambda: len(first.got) >= 3)
        c1.logout()
        second = Inbox(v)
        c2 = client(gw, second, next_seq=3)
        drive([c2], lambda: len(second.got) >= 1)
        assert [s for s, _ in second.got] == [3] and second.got[0][1] == first.got[2][1]
        c2.logout()
        third = Inbox(v)
        c3 = client(gw, third, next_seq=0)
        drive([c3], lambda: c3.state == "active")
        assert c3.next_seq == 4
        c3.send(f.enter(3))
        drive([c3], lambda: len(third.got) >= 1)
        assert third.got[0][0] == 4 and third.types == "A"


def test_second_login_takes_over(v):
    with Gateway(v, USERS, clock=FakeClock(), fill_schedule=no_fills) as gw:
        a, b = Inbox(v), Inbox(v)
        c1 = client(gw, a)
        drive([c1], lambda: len(a.got) >= 1)
        c2 = client(gw, b)
        drive([c1, c2], lambda: c1.state == "failed" and len(b.got) >= 1)
        assert (c1.reason, c2.state) == ("disconnected", "active")


def test_heartbeats_both_ways_and_server_silence(v):
    clock = FakeClock()
    with Gateway(v, USERS, clock=FakeClock(), heartbeat_interval=0.02) as gw:
        c = client(gw, Inbox(v), clock=clock)
        drive([c], lambda: c.state == "active")

        def tick():
            clock.t += 0.5  # the client owes a heartbeat every other round

        drive([c], lambda: gw.stats["heartbeats_received"] >= 20, tick=tick)  # > 15 s of fake time
        assert c.state == "active" and c.server_heartbeats > 0  # the server's 'H' kept the client alive
    with Gateway(v, USERS, clock=FakeClock(), heartbeat_interval=60) as gw:
        c = client(gw, Inbox(v), clock=clock)
        drive([c], lambda: c.messages == 1)
        clock.t += 15.0  # not yet: silence must exceed the timeout
        c.poll()
        assert c.state == "active"
        clock.t += 0.5
        c.poll()
        assert (c.state, c.reason, c.next_seq) == ("failed", "server silent for 15.0 s", 2)


def test_end_of_session(v):
    inbox = Inbox(v)
    with Gateway(v, USERS, clock=FakeClock()) as gw:
        c = client(gw, inbox)
        drive([c], lambda: c.messages == 1)
        gw.end_session()
        drive([c], lambda: False)
        assert (c.state, c.reason, inbox.types) == ("done", "end of session", "SS")


@pytest.mark.parametrize("kw, reason", [
    ({"password": "wrong"}, "login rejected: not authorized"),
    ({"user": "EVE"}, "login rejected: not authorized"),
    ({"session": "OTHER"}, "login rejected: session not available"),
    ({"next_seq": 5}, "server starts at sequence 2, wanted 5"),
])
def test_login_failures(v, kw, reason):
    with Gateway(v, USERS, clock=FakeClock()) as gw:
        c = client(gw, Inbox(v), **kw)
        c.send(b"queued")  # never sent: the login fails first
        drive([c], lambda: False)
        assert (c.state, c.reason) == ("failed", reason)
        assert gw.stats["messages_in"] == 0


def test_connect_refused_and_bad_arguments():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        addr = s.getsockname()  # bound, not listening: connection refused
        c = OuchClient(addr, "ALICE", "alicepw", "4.2", clock=FakeClock())
        drive([c], lambda: False)
    assert c.state == "failed" and c.reason.startswith("connect failed")
    with pytest.raises(ValueError, match="version"):
        OuchClient(addr, "ALICE", "alicepw", "4.1")
    with pytest.raises(ValueError, match="username"):
        OuchClient(addr, "TOOLONGNAME", "pw", "5.0")


def test_undecodable_message_closes_the_connection(v):
    with Gateway(v, USERS, clock=FakeClock()) as gw:
        c = client(gw, Inbox(v))
        c.send(b"?junk")
        drive([c], lambda: False)
        assert (c.state, c.reason) == ("failed", "disconnected")
        assert gw.stats["bad_messages"] == 1 and gw.stats["messages_in"] == 0


@pytest.mark.parametrize("junk", [
    b"\x00\x00",  # a zero length before login
    b"\xff\xffL" + b"x" * 100,  # an oversize login never completed: dropped when the client goes silent
    bytes(range(256)) * 40,  # garbage
    None,  # a good login, then an undecodable OUCH message
])
def test_gateway_drops_a_peer_that_sends_garbage_and_serves_the_others(v, junk):
    import socket

    clock, f = FakeClock(), Flow(v)
    with Gateway(v, USERS, clock=clock, fill_schedule=lambda o: [], client_timeout=0.5) as gw:
        raw = socket.create_connection(gw.address, timeout=5)
        if junk is None:
            raw.sendall(sb.encode_login_request("BOB", USERS["BOB"], b"", 1) + sb.encode_unsequenced(b"O\x01\x02"))
        else:
            raw.sendall(junk)
        data, t0 = b"", time.monotonic()
        while time.monotonic() - t0 < 5:  # the gateway closes the connection (EOF), whatever it sent before
            piece = raw.recv(65536)
            if not piece:
                break
            data += piece
        assert not piece, "the gateway kept a garbage peer connected"
        raw.close()
        inbox = Inbox(v)
        c = client(gw, inbox)
        c.send(f.enter(1))
        drive([c], lambda: len(inbox.got) >= 2)
        assert inbox.types == "SA"
        if junk is None:
            assert gw.stats["bad_messages"] == 1
