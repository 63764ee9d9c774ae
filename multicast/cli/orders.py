"""`xdpfeed orders` and the OUCH side of `xdpfeed decode`: order-entry sessions in a capture, printed.

`orders` follows every order of every OUCH session in the capture (multicast.ouch.capture finds and
decodes them, multicast.ouch.tracker.OrderTracker follows them) and prints each order's final state and its
lifecycle, as a table or one JSON object per order (`"record": "order"`) then one per session
(`"record": "session"`: counts, anomalies, what could not be read). `decode` on an OUCH capture prints
every message like ITCH's decode: one JSON object (or CSV row) per message, or a summary.

Exit status: 0; 1 when a stream could not be followed to its end (a hole in the TCP stream, a broken
SoupBinTCP packet), after everything before it was printed; 2 for usage and input errors. Messages
that do not decode are counted and reported on stderr, never silently dropped.
"""

import csv
import json
import sys
from fractions import Fraction

from xdpfeed.capture.errors import SourceError
from xdpfeed.multicast.ouch import capture as oc
from xdpfeed.multicast.ouch.schema import MESSAGES, TAGS, VERSIONS
from xdpfeed.multicast.ouch.tracker import OrderTracker

EXIT_DAMAGED = 1
ORDER_KEYS = ("id", "state", "symbol", "side", "quantity", "price", "leaves", "executed", "avg_price_num",
              "avg_price_den", "order_reference_number", "cl_ord_id", "replaces", "replaced_by")


def add_version_argument(p, help_text: str) -> None:
    p.add_argument("--ouch", choices=(*VERSIONS, "auto"), default=None, help=help_text)


def add_arguments(p) -> None:
    p.add_argument("input", metavar="INPUT.pcap", help="pcap or pcapng capture with SoupBinTCP/OUCH sessions")
    p.add_argument("-T", dest="fmt", choices=("table", "jsonl"), default="table", help="output format")
    add_version_argument(p, "OUCH version (default: detected from the messages)")


# -------------------------------------------------------------------------------------- shared
def _load(path: str, version: str | None):
    """(sessions, version, capture damage or None); errors as SourceError (exit 2)."""
    sessions, other, damage = oc.find_sessions(path)
    if not sessions and damage is not None:
        raise damage
    if not sessions:
        raise SourceError(f"{path}: no SoupBinTCP session in the capture ({other} other TCP connections)")
    if version in (None, "auto"):
        try:
            version = oc.detect_version(sessions)
        except oc.DetectError as e:
            raise SourceError(f"{path}: {e}") from None
    return sessions, version, damage


def _damage(s: oc.Session) -> list[str]:
    out = []
    for side, name in ((s.client, "client"), (s.server, "server")):
        if side is None:
            continue
        if side.missing_bytes:
            out.append(f"{name} stream has a hole: {side.missing_bytes} bytes after it not read")
        if side.broken:
            out.append(f"{name} stream broken: {side.broken}; {side.partial_bytes} bytes after it not read")
        elif side.partial_bytes:
            out.append(f"{name} stream ends inside a packet ({side.partial_bytes} bytes)")
    return out


def _report(prog: str, s: oc.Session, msgs: list, anomalies=()) -> bool:
    """Undecodable messages, anomalies and damage on stderr; True when the session is damaged."""
    bad = [m for m in msgs if m.fields is None]
    for d in ("in", "out"):
        mine = [m for m in bad if m.direction == d]
        if mine:
            print(f"{prog}: {s.name}: {len(mine)} {'inbound' if d == 'in' else 'outbound'} messages did not "
                  f"decode (first: {mine[0].error})", file=sys.stderr)
    for a in anomalies:
        print(f"{prog}: {s.name}: anomaly: {a}", file=sys.stderr)
    for side, name in ((s.client, "client"), (s.server, "server")):
        if side is not None and side.skipped_bytes:
            print(f"{prog}: {s.name}: note: the capture begins inside the {name} stream; its first "
                  f"{side.skipped_bytes} bytes (before the first whole packet) were skipped", file=sys.stderr)
    damage = _damage(s)
    for d in damage:
        print(f"{prog}: {s.name}: error: {d}", file=sys.stderr)
    return bool(damage)


# -------------------------------------------------------------------------------------- orders
def track(s: oc.Session, version: str, msgs: list) -> OrderTracker:
    t = OrderTracker(version or VERSIONS[-1])  # no version: the session has no OUCH message to track
    for m in msgs:
        if m.fields is None:
            continue
        t.context = {"time_ns": m.time_ns, "seq": m.seq, "direction": m.direction}
        if m.direction == "in":
            t.on_inbound(m.fields)
        else:
            t.on_outbound(m.fields, m.seq)
    return t


def average_price(num: int, den: int) -> str:
    """The average execution price in dollars (raw price / 10 000), to 4 places; '~' when rounded."""
    if not den:
        return "-"
    exact = Fraction(num, den * 10_000)
    shown = round(exact, 4)
    return f"{'' if shown == exact else '~'}{float(shown):.4f}"


def _event_text(entry) -> str:
    name, *args = entry
    return name + ("(" + ",".join(str(a) for a in args) + ")" if args else "")


def _order_json(session: oc.Session, o: dict) -> dict:
    d = {"record": "order", "session": session.name}
    d.update((k, o[k]) for k in ORDER_KEYS)
    pairs = zip(o["history"], o["when"], strict=True)
    d["events"] = [{**(w or {}), "event": h[0], "args": list(h[1:])} for h, w in pairs]
    return d


def _session_json(s: oc.Session, version: str, msgs: list, t: OrderTracker) -> dict:
    return {"record": "session", "session": s.name, "ouch": version, "login": s.login,
            "accepted": None if s.accepted is None else {"session": s.accepted[0].decode("ascii", "replace").strip(),
                                                         "sequence": s.accepted[1]},
            "messages_in": sum(m.direction == "in" for m in msgs),
            "messages_out": sum(m.direction == "out" for m in msgs),
            "undecoded": sum(m.fields is None for m in msgs), "orders": len(t.orders()),
            "states": t.state_counts(), "system_events": t.system_events, "anomalies": t.anomalies,
            "client_packets": s.client.counts if s.client else None,
            "server_packets": s.server.counts if s.server else None,
            "damage": _damage(s)}


def _table(s: oc.Session, version: str, msgs: list, t: OrderTracker, out) -> None:
    user = s.login["user"] if s.login else "?"
    print(f"session {s.name}  user {user}  OUCH {version or '-'}  messages in {sum(m.direction == 'in' for m in msgs)} "
          f"out {sum(m.direction == 'out' for m in msgs)}  orders {len(t.orders())}  anomalies {len(t.anomalies)}",
          file=out)
    head = ("ID", "SYMBOL", "SIDE", "QTY", "PRICE", "STATE", "LEAVES", "EXEC", "AVG PX", "LIFECYCLE")
    rows = [[str(o["id"]), o["symbol"], o["side"], str(o["quantity"]), str(o["price"]), o["state"], str(o["leaves"]),
             str(o["executed"]), average_price(o["avg_price_num"], o["avg_price_den"]),
             " > ".join(_event_text(h) for h in o["history"])] for o in t.orders()]
    widths = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(len(head) - 1)]
    for r in [list(head)] + rows:
        cells = zip(r, widths, strict=False)  # the lifecycle (last) is not padded
        print("  ".join(c.ljust(w) if i in (0, 1, 5) else c.rjust(w) for i, (c, w) in enumerate(cells))
              + "  " + r[-1], file=out)
    print(file=out)


def run_orders(args) -> int:
    sessions, version, capture_damage = _load(args.input, args.ouch)
    out, damaged = sys.stdout, False
    for s in sessions:
        msgs = oc.messages(s, version)
        t = track(s, version, msgs)
        if args.fmt == "jsonl":
            for o in t.orders():
                out.write(json.dumps(_order_json(s, o), separators=(",", ":")) + "\n")
            out.write(json.dumps(_session_json(s, version, msgs, t), separators=(",", ":")) + "\n")
        else:
            _table(s, version, msgs, t, out)
        out.flush()
        damaged |= _report("xdpfeed orders", s, msgs, t.anomalies)
    return _exit("xdpfeed orders", damaged, capture_damage)


def _exit(prog: str, damaged: bool, capture_damage) -> int:
    if capture_damage is not None:
        print(f"{prog}: error: {capture_damage}", file=sys.stderr)
    return EXIT_DAMAGED if damaged or capture_damage is not None else 0


# -------------------------------------------------------------------------------------- decode
def _message_dict(s: oc.Session, m: oc.Message) -> dict:
    d = {"session": s.name, "direction": m.direction, "seq": m.seq, "time_ns": m.time_ns}
    d.update(m.fields)
    return d


def _csv_columns(version: str) -> list[str]:
    cols = ["session", "direction", "seq", "time_ns", "type"]
    for direction in ("in", "out"):
        for msg in MESSAGES[(version, direction)].values():
            cols += [f.name for f in (*msg.fields, *msg.ext) if f.name not in cols]
    return cols + [f"appendage.{tag.name}" for tag in TAGS.values()] if version == "5.0" else cols


def _flat(d: dict) -> dict:
    app = d.pop("appendage", None) or {}
    d.update((f"appendage.{k}", v) for k, v in app.items())
    return d


def decode_ouch(args) -> int:
    """`xdpfeed decode` for an OUCH capture: every message of every session, in capture order."""
    if args.groups:
        raise SourceError("--group selects MoldUDP64 feeds; this capture holds SoupBinTCP/OUCH sessions")
    sessions, version, capture_damage = _load(args.input, args.ouch)
    known = {t for key in MESSAGES if key[0] == (version or VERSIONS[-1]) for t in MESSAGES[key]}
    wanted = set(args.types) if args.types else known
    if wanted - known:
        raise SourceError(f"unknown OUCH {version} message type {','.join(sorted(wanted - known))}; known: "
                          f"{','.join(sorted(known))}")
    remaining = args.count if args.count is not None else float("inf")
    out, damaged, per_type = sys.stdout, False, {}
    writer = None
    if args.fmt == "csv":
        cols = _csv_columns(version or VERSIONS[-1])
        writer = csv.DictWriter(out, fieldnames=cols, restval="", lineterminator="\n")
        writer.writeheader()
    for s in sessions:
        msgs = oc.messages(s, version)
        for m in msgs:
            if remaining <= 0 or m.fields is None or m.fields["type"] not in wanted:
                continue
            key = f"{m.direction}:{m.fields['type']}"
            per_type[key] = per_type.get(key, 0) + 1
            remaining -= 1
            if args.fmt == "jsonl":
                out.write(json.dumps(_message_dict(s, m), separators=(",", ":")) + "\n")
            elif writer is not None:
                writer.writerow(_flat(_message_dict(s, m)))
        damaged |= _report("xdpfeed decode", s, msgs)
    if args.fmt == "summary":
        out.write(f"input: {args.input} (OUCH {version or '- (no OUCH message)'}, {len(sessions)} sessions)\n")
        for s in sessions:
            out.write(f"session {s.name}: client packets {s.client.counts if s.client else '-'}, server packets "
                      f"{s.server.counts if s.server else '-'}\n")
        out.write("messages: " + ("  ".join(f"{k}: {v}" for k, v in sorted(per_type.items())) or "none") + "\n")
    out.flush()
    return _exit("xdpfeed decode", damaged, capture_damage)
