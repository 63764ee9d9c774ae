"""Text renderings of decoded ITCH tables: JSON lines, CSV rows and the run summary.

Output is per message by nature, so this layer builds Python values, but only for messages that
are printed; it reads whole table slices with `tolist()` rather than touching records one by one.
Keys: `session`, `seq` (MoldUDP64 input only), `type`, `stock_locate`, `tracking_number`,
`timestamp`, then the type's fields named as in multicast.itch.schema. Integers stay integers
(prices raw), alpha fields are strings without their trailing spaces.
"""

import csv
import json

from xdpfeed.multicast.itch.schema import MESSAGES, TYPE_CODE, TYPES
from xdpfeed.multicast.wire import counters as C

ORIGIN_KEYS = ("session", "seq")
HEADER_KEYS = ("type", "stock_locate", "tracking_number", "timestamp")


def alpha_str(value: int, size: int) -> str:
    return value.to_bytes(size, "big").rstrip(b" ").decode("latin-1")


_BODY = [[(f.name, f.size if f.kind == "a" else 0) for f in MESSAGES[t][2]] for t in TYPES]


def messages(tables, session_names, with_origin: bool, wanted_codes, limit: int):
    """Dicts of the messages of one ItchTables batch, in arrival order, at most `limit`."""
    lists = {}
    types = tables.order_type[: tables.count].tolist()
    rows = tables.order_row[: tables.count].tolist()
    emitted = 0
    for code, row in zip(types, rows, strict=True):
        if emitted >= limit:
            return
        if code not in wanted_codes:
            continue
        recs = lists.get(code)
        if recs is None:
            recs = lists[code] = tables.tables[code][: tables.rows[code]].tolist()
        rec = recs[row]
        d = {"session": session_names[rec[0]], "seq": rec[1]} if with_origin else {}
        d["type"] = TYPES[code]
        d["stock_locate"] = rec[2]
        d["tracking_number"] = rec[3]
        d["timestamp"] = rec[4]
        for j, (name, alpha) in enumerate(_BODY[code]):
            v = rec[5 + j]
            d[name] = alpha_str(v, alpha) if alpha else v
        emitted += 1
        yield d


def jsonl_line(d: dict) -> str:
    return json.dumps(d, separators=(",", ":"))


def csv_columns(type_letters) -> list[str]:
    """Union of the fields of the wanted types, in schema order, after the common columns."""
    cols = list(ORIGIN_KEYS + HEADER_KEYS)
    for t in TYPES:
        if t in type_letters:
            cols += [f.name for f in MESSAGES[t][2] if f.name not in cols]
    return cols


def csv_writer(stream, columns):
    w = csv.DictWriter(stream, fieldnames=columns, restval="", lineterminator="\n")
    w.writeheader()
    return w


def type_codes(letters: str) -> set[int]:
    return {TYPE_CODE[t] for t in letters}


def skipped_line(counters) -> str:
    """One line naming every non-zero drop counter, or '' when nothing was skipped."""
    drops = (
        C.NON_IPV4, C.NON_UDP, C.IP_FRAGMENTS, C.TRUNCATED_FRAMES, C.BAD_HEADERS, C.UNSUPPORTED_LINKTYPE,
        C.MALFORMED_PACKETS, C.SESSIONS_OVERFLOW, C.UNKNOWN_TYPES, C.BAD_LENGTH_MESSAGES, C.TRUNCATED_RECORDS,
        C.AFTER_END_OF_SESSION,
    )
    names = C.names()
    parts = [f"{int(counters[i])} {names[i].replace('_', ' ')}" for i in drops if counters[i]]
    return "skipped: " + ", ".join(parts) if parts else ""


def summary(run, per_type, printed: int) -> str:
    """Human-readable summary of a decoding run (multicast.itch.pipeline.Decode) as text lines."""
    c = C.as_dict(run.counters)
    lines = [f"input: {run.path} ({run.format}, {run.input_bytes} bytes)"]
    if run.format == "pcap":
        lines += [
            f"frames: {c['frames']} ({c['frame_bytes']} bytes)",
            f"packets: {c['packets']}  heartbeats: {c['heartbeats']}  end_of_session: {c['end_of_session']}  "
            f"malformed: {c['malformed_packets']}",
            "frames skipped: " + "  ".join(
                f"{k}: {c[k]}" for k in (
                    "non_ipv4", "non_udp", "ip_fragments", "truncated_frames", "bad_headers",
                    "unsupported_linktype", "filtered",
                )
            ),
        ]
    lines += [
        f"messages: {c['messages']}  decoded: {c['decoded']}  unknown_types: {c['unknown_types']}  "
        f"bad_length: {c['bad_length_messages']}  truncated_records: {c['truncated_records']}",
        f"printed: {printed}",
    ]
    if run.format != "pcap" and c["end_of_session"]:
        lines.insert(-1, f"end of session (zero-length record): yes; bytes after it, not read: "
                         f"{c['after_end_of_session']}")
    names = run.sessions.names()
    lines.append(f"sessions: {len(names)}")
    for i, name in enumerate(names):
        n = int(run.sessions.messages[i])
        rng = f"{int(run.sessions.first_seq[i])}..{int(run.sessions.end_seq[i]) - 1}" if n else "-"
        lines.append(f"  {name or '(blank)'}  seq {rng}  messages {n}")
    lines.append("by type:")
    for t in TYPES:
        if per_type[TYPE_CODE[t]]:
            lines.append(f"  {t}  {MESSAGES[t][0]:<50} {int(per_type[TYPE_CODE[t]])}")
    secs = max(run.seconds, 1e-9)
    lines.append(f"rate: {c['decoded'] / secs / 1e6:.2f}M msg/s ({run.seconds:.3f} s)")
    return "\n".join(lines)
