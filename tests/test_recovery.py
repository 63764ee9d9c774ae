"""Recovery policy with an injected clock: what is requested, when, from which server, and what
happens to answers. The "servers" are plain sockets the test reads and answers by hand."""

import select
import socket
import struct

import pytest
from test_sequencer import S1, S2, Harness, pkt

from xdpfeed.multicast.feed.recovery import Recovery, RecoveryPolicy
from xdpfeed.multicast.feed.sequencer import LINE_A, STALE, SYNCHRONIZED
from xdpfeed.multicast.wire.soupbintcp import parse_login_request


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def udp_server():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2)
    return s


def requests(sock, wait=0.2):
    """Every request waiting on a fake request server: [(session, seq, count, client address)]."""
    out = []
    while select.select([sock], [], [], wait)[0]:
        data, addr = sock.recvfrom(100)
        assert len(data) == 20
        seq, count = struct.unpack(">QH", data[10:])
        out.append((data[:10], seq, count, addr))
        wait = 0.05
    return out


@pytest.fixture
def setup():
    h = Harness()
    clock = Clock()
    servers = [udp_server(), udp_server()]
    rec = Recovery(h.seq, h.sink, clock, RecoveryPolicy(request_delay=0.01, request_timeout=0.5, backoff=0.1,
                                                         rerequest_attempts=2, deadline=5.0),
                   rerequest_servers=[s.getsockname() for s in servers], rerequest_bind=("127.0.0.1", 0))
    yield h, clock, servers, rec
    rec.close()
    for s in servers:
        s.close()


def open_gap(h, clock, rec):
    """Gap [3, 10) seen, then request_delay passes."""
    h.send(LINE_A, pkt(1, 2), pkt(10, 1))
    rec.poll()
    clock.t += 0.02
    rec.poll()


def test_gap_waits_for_the_other_line_then_one_request(setup):
    h, clock, (srv, _), rec = setup
    h.send(LINE_A, pkt(1, 2), pkt(10, 1))  # gap [3, 10)
    rec.poll()
    assert requests(srv, 0.05) == []  # within request_delay: line B may still bring it
    clock.t += 0.02
    rec.poll()
    got = requests(srv)
    assert [(s, q, c) for s, q, c, _ in got] == [(S1, 3, 7)]
    clock.t += 0.1
    rec.poll()
    assert requests(srv, 0.05) == []  # in flight: not asked twice


def test_partial_answer_makes_progress_and_the_rest_is_asked_at_once(setup):
    h, clock, (srv, _), rec = setup
    open_gap(h, clock, rec)
    (_, _, _, client), = requests(srv)
    srv.sendto(pkt(3, 3), client)  # fits one datagram: 3..5 only
    select.select([rec.rerequest], [], [], 1)
    rec.poll()
    assert h.seqs == [1, 2, 3, 4, 5]
    assert [(q, c) for _, q, c, _ in requests(srv)] == [(6, 4)]
    assert rec.rerequest.stats["answers"] == 1 and rec.rerequest.stats["answer_messages"] == 3


def test_answers_are_validated(setup):
    h, clock, (srv, _), rec = setup
    open_gap(h, clock, rec)
    (_, _, _, client), = requests(srv)
    srv.sendto(pkt(20, 2), client)  # 20, 21 are not missing
    srv.sendto(pkt(3, 7, session=S2), client)  # another session
    select.select([rec.rerequest], [], [], 1)
    rec.poll()
    assert h.seqs == [1, 2]
    st = rec.rerequest.stats
    assert st["unsolicited"] == 1 and st["wrong_session"] == 1 and st["answers"] == 0
    assert h.seq.session == "SESSION001" and h.seq.highest == 11


def test_timeout_retries_on_the_next_server_then_gives_up_to_stale(setup):
    h, clock, (srv1, srv2), rec = setup
    open_gap(h, clock, rec)
    assert len(requests(srv1)) == 1
    clock.t += 0.6  # no answer within request_timeout
    rec.poll()
    assert rec.stats.rerequest_timeouts == 1
    clock.t += 0.11  # after the backoff, the second server
    rec.poll()
    assert requests(srv1, 0.05) == [] and [(q, c) for _, q, c, _ in requests(srv2)] == [(3, 7)]
    clock.t += 10  # past the deadline: STALE, loudly, and recovery keeps going
    rec.poll()
    assert h.seq.state == STALE and any(e[0] == "stale" and "gap [3, 10)" in e[1] for e in h.events)
    srv2.sendto(pkt(3, 7), rec.rerequest.sock.address)
    select.select([rec.rerequest], [], [], 1)
    rec.poll()
    assert h.seqs == list(range(1, 11)) and h.seq.state == SYNCHRONIZED  # a late answer still brings it back
    assert rec.stats.gaps_filled == 1 and len(rec.stats.recovery_seconds) == 1


def test_large_gap_goes_to_tcp_replay_with_the_right_login():
    h = Harness()
    clock = Clock()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    rec = Recovery(h.seq, h.sink, clock, RecoveryPolicy(rerequest_max=100, request_delay=0.0),
                   rerequest_servers=[("127.0.0.1", 9)], replay_servers=[listener.getsockname()], user="TEST01",
                   password="pw", rerequest_bind=("127.0.0.1", 0))
    try:
        h.send(LINE_A, pkt(1, 2), pkt(500, 1))
        rec.poll()
        conn, _ = listener.accept()
        conn.settimeout(2)
        rec.poll()
        data = conn.recv(100)
        assert data[2:3] == b"L"
        user, password, session, seq = parse_login_request(data[3:])
        assert (user, password, session, seq) == ("TEST01", "pw", S1, 3)
        assert rec.stats.replay_sessions == 1 and rec.stats.rerequests == 0
        conn.close()
    finally:
        rec.close()
        listener.close()


def test_policy_values_are_checked():
    with pytest.raises(ValueError, match="recovery.deadline"):
        RecoveryPolicy(deadline=0)
    with pytest.raises(ValueError, match="recovery.rerequest_attempts"):
        RecoveryPolicy(rerequest_attempts=-1)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_a_flood_of_foreign_answers_is_counted_bounded_and_logged_once_per_interval(setup, caplog):
    h, clock, (srv, _), rec = setup
    open_gap(h, clock, rec)
    (_, _, _, client), = requests(srv)
    from xdpfeed.multicast.wire import counters as C

    caplog.set_level("WARNING", logger="xdpfeed.recovery")
    n, sent = 20_000, 0
    rss0 = _rss_kib()
    for i in range(n):  # answers for 20,000 sessions that are not ours, some of them all different
        session = S2 if i % 2 else b"X%09d" % i
        srv.sendto(pkt(3, 7, session=session), client)
        sent += 1
        if i % 500 == 499:
            select.select([rec.rerequest], [], [], 0.5)
            rec.poll()
    for _ in range(20):
        if not select.select([rec.rerequest], [], [], 0.2)[0]:
            break
        rec.poll()
    st, cnt = rec.rerequest.stats, rec.rerequest.counters
    taken = st["wrong_session"] + int(cnt[C.SESSIONS_OVERFLOW])
    assert st["answers"] == 0 and h.seqs == [1, 2]  # nothing foreign was delivered
    # every datagram that arrived is in a counter (the kernel may drop some of a flood: those never arrived)
    assert 0.5 * n < taken <= n
    assert cnt[C.SESSIONS_OVERFLOW] > 0  # the session table is bounded: further sessions are counted, not kept
    assert _rss_kib() - rss0 < 20 * 1024
    lines = [r for r in caplog.records if "answers not taken" in r.getMessage()]
    assert len(lines) == 1  # one line for the whole flood (the clock did not move)
    clock.t += 11
    srv.sendto(pkt(3, 7, session=S2), client)
    select.select([rec.rerequest], [], [], 1)
    rec.poll()
    lines = [r.getMessage() for r in caplog.records if "answers not taken" in r.getMessage()]
    assert len(lines) == 2 and "for another session in the last 11 s" in lines[1]
    # the two lines together account for every foreign answer counted
    said = [int(m.split(": ")[2].split(" for another")[0].replace(",", "")) for m in lines]
    assert sum(said) == rec.rerequest.stats["wrong_session"]
