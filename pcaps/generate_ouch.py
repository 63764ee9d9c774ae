"""Deterministic captures of whole OUCH order-entry sessions over SoupBinTCP/TCP, for `xdpfeed orders`.

Run `python pcaps/generate_ouch.py [--out DIR]` (default: pcaps/generated/). It writes
ouch42_session.pcap and ouch50_session.pcap: one client (10.1.0.2:40100) and the simulated gateway
(10.1.0.1:15000), with the TCP handshake, Login Request / Login Accepted, the SCRIPT below (enters,
fills, cancels, a replace, a modify, a reject, a cross order's Cancel Pending, a broken trade),
heartbeats both ways, the end-of-day System Event, Logout and the closing FINs.

The answers come from the simulated gateway (multicast.exchange.gateway, driven through `handle()` on a
fixed clock), so the outbound side is what that gateway really sends. The TCP layer is made to hurt a
reassembler: every burst of packets is cut at random points (many segments end inside a message),
some segments are sent twice, and some pairs arrive swapped. Everything is seeded, so the files are
byte-identical on every run. tests/test_orders_cli.py states the lifecycle of every order literally.
"""

import argparse
import random
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter

from xdpfeed.multicast.exchange.gateway import Gateway
from xdpfeed.multicast.ouch.encode import encode
from xdpfeed.multicast.ouch.reference import decode
from xdpfeed.multicast.wire import soupbintcp as sb

ROOT = Path(__file__).resolve().parent.parent

CLIENT, SERVER = ("10.1.0.2", 40100), ("10.1.0.1", 15000)
MACS = {CLIENT: "02:00:00:00:01:02", SERVER: "02:00:00:00:01:01"}
USER, PASSWORD, SESSION = "TRADR1", "secret", "OUCH000001"
START_NS = 1_790_000_000 * 10**9  # capture time of the SYN
P = 1_500_000  # $150.0000
# Order k's fills: (seconds after its accept, shares); none listed = it rests.
FILLS = {1: [(0.0, 25), (1.0, 75)], 3: [(0.0, 100)], 6: [(1.0, 50)]}
SCRIPT = [  # (seconds, action, arguments)
    (0.0, "enter", dict(k=1, side="B", qty=100, sym="AAPL")),  # 25 at once, 75 a second later: filled
    (0.1, "enter", dict(k=2, side="S", qty=200, sym="MSFT")),
    (0.2, "cancel", dict(k=2, keep=50)),  # partial cancel of 150
    (0.3, "enter", dict(k=3, side="B", qty=300, sym="AAPL")),  # 100 at once
    (0.4, "replace", dict(old=3, new=4, qty=150, price=P + 100)),
    (0.5, "enter", dict(k=5, side="X", qty=100, sym="AAPL")),  # bad side: Rejected
    (0.6, "enter", dict(k=6, side="B", qty=100, sym="AAPL", cross="C")),  # closing cross, 50 fill at +1 s
    (0.7, "cancel", dict(k=6, keep=0)),  # Cancel Pending, then Canceled after the fill
    (0.8, "enter", dict(k=7, side="S", qty=100, sym="MSFT")),
    (0.9, "modify", dict(k=7, side="T", qty=60)),  # sell → sell short, 40 fewer shares
    (2.5, "tick", {}),  # the delayed fills of orders 1 and 6, and 6's cancel
    (2.6, "cancel", dict(k=2, keep=0)),  # the rest of order 2
    (2.7, "cancel", dict(k=4, keep=0)),
    (3.0, "break", dict(k=3)),  # order 3's execution is broken
    (4.5, "end", {}),  # System Event 'E'
]
HEARTBEATS = (1.5, 3.5)  # both sides send one (nothing else was sent for a second)


def order_id(version: str, k: int):
    return f"ORD{k:04d}" if version == "4.2" else k


def inbound(version: str, action: str, a: dict) -> bytes:
    v, i = version, (lambda k: order_id(version, k))
    if action == "enter" and v == "4.2":
        return encode(v, "in", "O", order_token=i(a["k"]), buy_sell_indicator=a["side"], shares=a["qty"],
                      stock=a["sym"], price=P, time_in_force=99999, firm="XDPF", display="Y", capacity="A",
                      intermarket_sweep_eligibility="N", minimum_quantity=0, cross_type=a.get("cross", "N"),
                      customer_type="N")
    if action == "enter":
        return encode(v, "in", "O", user_ref_num=a["k"], side=a["side"], quantity=a["qty"], symbol=a["sym"], price=P,
                      time_in_force="0", display="Y", capacity="A", intermarket_sweep_eligibility="N",
                      cross_type=a.get("cross", "N"), cl_ord_id=f"CL{a['k']}",
                      appendage={"firm": "XDPF", "min_qty": 0} if a["k"] % 2 else {})
    if action == "cancel" and v == "4.2":
        return encode(v, "in", "X", order_token=i(a["k"]), shares=a["keep"])
    if action == "cancel":
        return encode(v, "in", "X", user_ref_num=a["k"], quantity=a["keep"])
    if action == "modify" and v == "4.2":
        return encode(v, "in", "M", order_token=i(a["k"]), buy_sell_indicator=a["side"], shares=a["qty"])
    if action == "modify":
        return encode(v, "in", "M", user_ref_num=a["k"], side=a["side"], quantity=a["qty"])
    if action == "replace" and v == "4.2":
        return encode(v, "in", "U", existing_order_token=i(a["old"]), replacement_order_token=i(a["new"]),
                      shares=a["qty"], price=a["price"], time_in_force=99999, display="Y",
                      intermarket_sweep_eligibility="N", minimum_quantity=0)
    return encode(v, "in", "U", orig_user_ref_num=a["old"], user_ref_num=a["new"], quantity=a["qty"],
                  price=a["price"], time_in_force="0", display="Y", intermarket_sweep_eligibility="N",
                  cl_ord_id=f"CL{a['new']}", appendage={})


class Clock:
    def __init__(self):
        self.t = 34_200.0  # 09:30

    def __call__(self):
        return self.t


def conversation(version: str) -> list[tuple[float, str, bytes]]:
    """[(seconds after the login, "c" client | "s" server, SoupBinTCP bytes)] in time order."""
    clock = Clock()
    t0 = clock.t
    ids = {order_id(version, k): k for k in range(1, 10)}
    gw = Gateway(version, {USER: PASSWORD}, clock=clock, session=SESSION,
                 fill_schedule=lambda o: FILLS.get(ids[o["id"]], []))
    gw.open_session()
    talk = [(0.0, "c", sb.encode_login_request(USER, PASSWORD, b"", 1)),
            (0.0, "s", sb.encode_login_accepted(SESSION.encode(), 1))]
    sent = 0
    matches = {}

    def answers(t):
        nonlocal sent
        new = gw.messages(USER)[sent:]
        sent += len(new)
        for m in new:
            d = decode(version, "out", m)
            if d["type"] == "E":
                matches.setdefault(ids[d["order_token" if version == "4.2" else "user_ref_num"]], d["match_number"])
        if new:
            talk.append((t, "s", b"".join(sb.encode_sequenced(m) for m in new)))

    answers(0.0)  # System Event 'S'
    beats = list(HEARTBEATS)
    for t, action, a in SCRIPT:
        while beats and beats[0] < t:
            hb = beats.pop(0)
            talk += [(hb, "c", sb.CLIENT_HEARTBEAT_PACKET), (hb, "s", sb.SERVER_HEARTBEAT_PACKET)]
        clock.t = t0 + t
        if action == "tick":
            gw.run_due()
        elif action == "break":
            gw.break_trade(matches[a["k"]])
        elif action == "end":
            gw.end_session()
        else:
            payload = inbound(version, action, a)
            talk.append((t, "c", sb.encode_unsequenced(payload)))
            gw.handle(USER, payload)
        answers(t + 0.0002)
    talk.append((5.0, "c", sb.LOGOUT_PACKET))
    return talk


def frame(src, dst, seq, ack, flags, data=b""):
    return (Ether(src=MACS[src], dst=MACS[dst]) / IP(src=src[0], dst=dst[0], id=0, ttl=64)
            / TCP(sport=src[1], dport=dst[1], seq=seq % (1 << 32), ack=ack % (1 << 32), flags=flags, window=65535)
            / data)


def segments(rng: random.Random, data: bytes) -> list[tuple[int, bytes]]:
    """(offset, bytes) cuts of one burst: 1..23 bytes each, so most end inside a message."""
    out, pos = [], 0
    while pos < len(data):
        n = rng.randrange(1, 24)
        out.append((pos, data[pos : pos + n]))
        pos += n
    return out


def write(version: str, path: Path, seed: int) -> None:
    rng = random.Random(seed)
    isn = {"c": 0xFFFFF000, "s": 0x10000}  # the client's sequence numbers wrap around 2^32
    ends = {"c": (CLIENT, SERVER), "s": (SERVER, CLIENT)}
    nxt = {"c": isn["c"] + 1, "s": isn["s"] + 1}
    frames = [(0, frame(CLIENT, SERVER, isn["c"], 0, "S")), (1000, frame(SERVER, CLIENT, isn["s"], nxt["c"], "SA")),
              (2000, frame(CLIENT, SERVER, nxt["c"], nxt["s"], "A"))]
    for t, side, data in conversation(version):
        ns = 10_000 + round(t * 1e9)
        other = "s" if side == "c" else "c"
        src, dst = ends[side]
        burst = [(nxt[side] + off, piece) for off, piece in segments(rng, data)]
        nxt[side] += len(data)
        order = list(range(len(burst)))
        for j in range(len(order) - 1):  # some neighbours swapped: out of order
            if rng.random() < 0.15:
                order[j], order[j + 1] = order[j + 1], order[j]
        for j, k in enumerate(order):
            seq, piece = burst[k]
            frames.append((ns + 100 * j, frame(src, dst, seq, nxt[other], "PA", piece)))
            if rng.random() < 0.1:  # sent again: a retransmission
                frames.append((ns + 100 * j + 50, frame(src, dst, seq, nxt[other], "PA", piece)))
    end = 10_000 + 5_100_000_000
    frames += [(end, frame(SERVER, CLIENT, nxt["s"], nxt["c"], "FA")),
               (end + 1000, frame(CLIENT, SERVER, nxt["c"], nxt["s"] + 1, "FA"))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with PcapWriter(str(path), linktype=1, endianness="<", nano=True, snaplen=65535) as w:
        w.write_header(None)
        for ns, f in frames:
            total = START_NS + ns
            w.write_packet(bytes(f), sec=total // 10**9, usec=total % 10**9)  # ns after the second (nano pcap)


FILES = {"ouch42_session.pcap": ("4.2", 42), "ouch50_session.pcap": ("5.0", 50)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "pcaps" / "generated")
    args = ap.parse_args(argv)
    for name, (version, seed) in FILES.items():
        write(version, args.out / name, seed)
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
