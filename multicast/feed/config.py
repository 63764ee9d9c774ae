"""The feed configuration: one TOML file (or command-line flags) describing a feed's lines, its
recovery servers and credentials, and the sequencer's sizes. Every key is checked; an error names
the key and what it accepts.

```toml
[feed]
name = "totalview"
line_a = "udp:233.54.12.111:26477@eth1"
line_b = "udp:233.49.196.111:26477@eth2"
start = "one"                       # "one": recover from sequence 1; "first": from the first packet;
                                    # "snapshot": the venue's state from GLIMPSE, then on from there
book = true                         # build the order book
latency = true                      # per-stage latency histograms (docs/latency.md)
venue_time = false                  # the venue's ITCH timestamps are its send time on our clock: the wire stage
record = "/var/lib/xdpfeed/day.itch"  # the delivered stream as a NASDAQ binary ITCH file (= itch:FILE output)
outputs = ["dbn:/var/lib/xdpfeed/day.dbn", "ipc:totalview"]  # sinks (multicast.sinks.uri)

[recovery]
rerequest = ["206.200.127.20:26478"]  # MoldUDP64 request servers, tried in order
replay = ["206.200.127.30:26479"]     # SoupBinTCP replay servers, tried in order
glimpse = ["206.200.127.40:26480"]    # GLIMPSE 5.0 snapshot servers, tried in order (docs/snapshot.md)
resync = "snapshot"                   # a gap recovery gave up on: rebuild from a snapshot ("stale": stay STALE)
user = "XDPF01"
password_file = "/etc/xdpfeed/password"  # mode 0600; or the XDPFEED_PASSWORD environment variable
rerequest_max = 10000                 # and the other RecoveryPolicy fields

[sequencer]
hold_messages = 262144
slot_bytes = 64
hold_arena_bytes = 1048576

[metrics]
addr = "127.0.0.1:9464"             # Prometheus /metrics; "auto": this one unless busy; "off": none
```
Passwords never come from the command line.

Several feeds in one handler (multicast.feed.feeds), each a `[[feeds]]` table with the [feed] keys (and
`venue`), its own `recovery` and `sequencer` tables over the top-level ones, and the consolidated book:

```toml
[recovery]                          # defaults of every feed
user = "XDPF01"
password_file = "/etc/xdpfeed/password"
[consolidated]
book = true                         # the consolidated book across the feeds' books
outputs = ["parquet:/var/lib/xdpfeed/consolidated"]
[[feeds]]
name = "nasdaq"
line_a = "udp:233.54.12.111:26477@eth1"
line_b = "udp:233.49.196.111:26477@eth2"
[feeds.recovery]
replay = ["206.200.127.30:26479"]
[[feeds]]
name = "bx"
line_a = "udp:233.54.12.40:25475@eth1"
...
```
`load_any` reads either kind; an error names the feed and the key (`feeds[1] (bx).recovery.user: ...`).

The same keys, without their sections, are the keyword arguments of `Feed(...)` (`Feed(line_a=...,
replay=[...], rerequest_max=5000, hold_messages=65536, book=False, metrics="127.0.0.1:9464")`):
`with_keys(cfg, keys)` applies them to a config through the same checks.
"""

import dataclasses
import os
import stat
import sys
import tomllib
from dataclasses import dataclass, field, fields

from xdpfeed.multicast.feed.recovery import RecoveryPolicy

PASSWORD_ENV = "XDPFEED_PASSWORD"
USER_LEN = 6  # SoupBinTCP username field


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


def parse_hostport(text: str, key: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{key}: expected HOST:PORT with a port in 1..65535, not {text!r}")
    return host, int(port)


@dataclass
class FeedConfig:
    name: str = "feed"
    line_a: str | None = None
    line_b: str | None = None
    start_at_one: bool = True
    start_snapshot: bool = False  # start = "snapshot": a late join from a GLIMPSE snapshot
    rerequest: list = field(default_factory=list)  # [(host, port)]
    replay: list = field(default_factory=list)
    glimpse: list = field(default_factory=list)  # GLIMPSE 5.0 servers [(host, port)]
    resync: str = "stale"  # "snapshot": a gap recovery gave up on is resolved by a fresh snapshot
    user: str = ""
    password: str = field(default="", repr=False)  # never printed, logged or put in an error
    policy: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    hold_messages: int = 1 << 18
    slot_bytes: int = 64
    hold_arena_bytes: int = 1 << 20
    metrics_addr: str | None = None  # HOST:PORT, "auto" (127.0.0.1:9464 unless busy), "off"; None: not given
    book: bool = True
    record: str | None = None  # path of the delivered stream as a NASDAQ binary ITCH file
    outputs: list = field(default_factory=list)  # sink URIs
    venue: str = ""  # the venue it comes from (nasdaq, bx, psx, ...); "" means the feed's name
    latency: bool = True  # per-stage latency histograms (multicast.latency)
    venue_time: bool = False  # the venue's ITCH timestamps are its send clock, synchronized with ours: wire time


@dataclass
class FeedsConfig:
    """Several feeds in one handler (`[[feeds]]`), the consolidated book across them and the one metrics
    address they share."""

    feeds: list = field(default_factory=list)  # [FeedConfig]
    metrics_addr: str | None = None
    consolidated: bool = True
    consolidated_outputs: list = field(default_factory=list)  # sink URIs that take the consolidated events

    def feed(self, name: str) -> FeedConfig:
        for f in self.feeds:
            if f.name == name:
                return f
        raise ConfigError(f"no feed named {name!r}; the config has {', '.join(f.name for f in self.feeds)}")


_SECTIONS = {
    "feed": {"name", "line_a", "line_b", "start", "book", "record", "outputs", "venue", "latency", "venue_time"},
    "recovery": {"rerequest", "replay", "glimpse", "resync", "user", "password_file"}
    | {f.name for f in fields(RecoveryPolicy)},
    "sequencer": {"hold_messages", "slot_bytes", "hold_arena_bytes"},
    "metrics": {"addr"},
}
_SIZES = {"hold_messages": (2, 1 << 26), "slot_bytes": (4, 65537), "hold_arena_bytes": (1, 1 << 34)}


def _str(v, key):
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{key}: expected a non-empty string, not {v!r}")
    return v


def _uri(v, key):
    """A source URI, checked as far as can be without opening it (scheme and options)."""
    from xdpfeed.capture import uri
    from xdpfeed.capture.errors import SourceError

    try:
        uri.parse(_str(v, key))
    except SourceError as e:
        raise ConfigError(f"{key}: {e}") from None
    return v


def _outputs(v, key):
    """Sink URIs, each checked as far as can be without opening it (scheme and options)."""
    from xdpfeed.multicast.sinks.base import SinkError
    from xdpfeed.multicast.sinks.uri import parse

    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise ConfigError(f"{key}: expected a list of output URIs")
    for uri in v:
        try:
            parse(_str(uri, key))
        except SinkError as e:
            raise ConfigError(f"{key}: {e}") from None
    return list(v)


def read_password_file(path: str, key: str = "recovery.password_file") -> str:
    """The first line of a password file; warns when others can read it (it should be mode 0600)."""
    try:
        st = os.stat(path)
        with open(path) as f:
            pw = f.readline().rstrip("\r\n")
    except OSError as e:
        raise ConfigError(f"{key}: {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"xdpfeed: warning: {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); use chmod 600",
              file=sys.stderr)
    if not pw:
        raise ConfigError(f"{key}: {path} is empty")
    return pw


def _read(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}): TOML files are UTF-8") from None


def load(path: str) -> FeedConfig:
    """One feed's config ([feed], [recovery], [sequencer], [metrics])."""
    doc = _read(path)
    if "feeds" in doc:
        raise ConfigError(f"{path}: holds several feeds ([[feeds]]): run them together, or pick one")
    return from_dict(doc)


def load_any(path: str) -> FeedConfig | FeedsConfig:
    """A one-feed config, or a several-feeds one when the file has `[[feeds]]`."""
    doc = _read(path)
    return feeds_from_dict(doc) if "feeds" in doc else from_dict(doc)


FEEDS_TOP = {"feeds", "metrics", "recovery", "sequencer", "consolidated"}


def feeds_from_dict(doc: dict) -> FeedsConfig:
    """Several feeds: `[[feeds]]` tables with the [feed] keys and their own `recovery` and `sequencer`
    tables; top-level [recovery] and [sequencer] are defaults every feed starts from; [metrics] is shared;
    [consolidated] has `book` (true: the consolidated book across the feeds' books) and `outputs`."""
    for key in doc:
        if key not in FEEDS_TOP:
            raise ConfigError(f"unknown section [{key}] in a several-feeds config; known: "
                              f"{', '.join(sorted(FEEDS_TOP))}")
    feeds = doc["feeds"]
    if not isinstance(feeds, list) or not feeds or not all(isinstance(f, dict) for f in feeds):
        raise ConfigError("feeds: expected one or more [[feeds]] tables")
    out = FeedsConfig()
    shared = {k: doc[k] for k in ("recovery", "sequencer") if k in doc}
    base = from_dict({**shared, **({"metrics": doc["metrics"]} if "metrics" in doc else {})})
    out.metrics_addr = base.metrics_addr
    for i, entry in enumerate(feeds):
        own = {k: v for k, v in entry.items() if k not in ("recovery", "sequencer")}
        where = f"feeds[{i}]" + (f" ({entry['name']})" if isinstance(entry.get("name"), str) else "")
        try:
            sub = {"feed": own, **{k: entry[k] for k in ("recovery", "sequencer") if k in entry}}
            cfg = from_dict(sub, base=base)
        except ConfigError as e:
            text = str(e).replace("unknown key feed.", "unknown key ").removeprefix("feed.")
            raise ConfigError(f"{where}: {text}" if text.startswith("unknown") else f"{where}.{text}") from None
        if "name" not in own:
            raise ConfigError(f"{where}: needs a name")
        cfg.venue = cfg.venue or cfg.name
        out.feeds.append(cfg)
    names = [f.name for f in out.feeds]
    if len(set(names)) != len(names):
        raise ConfigError(f"feeds: names must differ, not {names}")
    cons = doc.get("consolidated", {})
    if not isinstance(cons, dict) or set(cons) - {"book", "outputs"}:
        raise ConfigError("consolidated: expected a table with book (true or false) and outputs")
    if "book" in cons:
        if not isinstance(cons["book"], bool):
            raise ConfigError(f"consolidated.book: expected true or false, not {cons['book']!r}")
        out.consolidated = cons["book"]
    if "outputs" in cons:
        out.consolidated_outputs = _outputs(cons["outputs"], "consolidated.outputs")
    if out.consolidated and not any(f.book for f in out.feeds):
        raise ConfigError("consolidated.book: needs feeds with a book (book = true)")
    return out


def from_dict(doc: dict, base: FeedConfig | None = None) -> FeedConfig:
    """A config from a parsed TOML document, over `base` (the defaults when None)."""
    cfg = dataclasses.replace(base) if base is not None else FeedConfig()
    for section, value in doc.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown section [{section}]; known: {', '.join(sorted(_SECTIONS))}")
        if not isinstance(value, dict):
            raise ConfigError(f"{section}: expected a table")
        for key in value:
            if key not in _SECTIONS[section]:
                raise ConfigError(f"unknown key {section}.{key}; known: {', '.join(sorted(_SECTIONS[section]))}")
    feed = doc.get("feed", {})
    if "name" in feed:
        cfg.name = _str(feed["name"], "feed.name")
    for k in ("line_a", "line_b"):
        if k in feed:
            setattr(cfg, k, _uri(feed[k], f"feed.{k}"))
    if "start" in feed:
        if feed["start"] not in ("one", "first", "snapshot"):
            raise ConfigError(f"feed.start: expected \"one\", \"first\" or \"snapshot\", not {feed['start']!r}")
        cfg.start_at_one = feed["start"] == "one"
        cfg.start_snapshot = feed["start"] == "snapshot"
    for key in ("book", "latency", "venue_time"):
        if key in feed:
            if not isinstance(feed[key], bool):
                raise ConfigError(f"feed.{key}: expected true or false, not {feed[key]!r}")
            setattr(cfg, key, feed[key])
    if "record" in feed:
        cfg.record = _str(feed["record"], "feed.record")
    if "outputs" in feed:
        cfg.outputs = _outputs(feed["outputs"], "feed.outputs")
    if "venue" in feed:
        cfg.venue = _str(feed["venue"], "feed.venue")
    rec = dict(doc.get("recovery", {}))
    if "resync" in rec:
        cfg.resync = rec.pop("resync")
        if cfg.resync not in ("stale", "snapshot"):
            raise ConfigError(f"recovery.resync: expected \"stale\" or \"snapshot\", not {cfg.resync!r}")
    for k in ("rerequest", "replay", "glimpse"):
        if k in rec:
            servers = rec.pop(k)
            if isinstance(servers, str):
                servers = [servers]
            if not isinstance(servers, list):
                raise ConfigError(f"recovery.{k}: expected a list of \"HOST:PORT\"")
            setattr(cfg, k, [parse_hostport(s, f"recovery.{k}") for s in servers])
    if "user" in rec:
        cfg.user = _str(rec.pop("user"), "recovery.user")
        if len(cfg.user) > USER_LEN or not cfg.user.isascii() or " " in cfg.user:
            raise ConfigError(f"recovery.user: expected 1..{USER_LEN} ASCII characters without spaces (the "
                              f"SoupBinTCP username field), not {cfg.user!r}")
    if "password_file" in rec:
        cfg.password = read_password_file(_str(rec.pop("password_file"), "recovery.password_file"))
    try:
        cfg.policy = dataclasses.replace(cfg.policy, **rec)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if "addr" in doc.get("metrics", {}):
        addr = _str(doc["metrics"]["addr"], "metrics.addr")
        host, sep, port = addr.rpartition(":")
        if addr not in ("off", "auto") and (not sep or not port.isdigit() or not 0 <= int(port) < 65536):
            raise ConfigError(f"metrics.addr: expected HOST:PORT (e.g. 127.0.0.1:9464), \"auto\" (127.0.0.1:9464 "
                              f"unless busy) or \"off\", not {addr!r}")
        cfg.metrics_addr = addr
    for k, v in doc.get("sequencer", {}).items():
        lo, hi = _SIZES[k]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ConfigError(f"sequencer.{k}: expected an integer in {lo}..{hi}, not {v!r}")
        setattr(cfg, k, v)
    return cfg


_KEY_SECTION = {key: section for section, keys in _SECTIONS.items() for key in keys if section != "metrics"}


def with_keys(cfg: FeedConfig, keys: dict) -> FeedConfig:
    """`cfg` with the config keys given flat (the keyword arguments of Feed): every key of every section
    by its own name, `metrics` for metrics.addr (None: no metrics), and `password` (library use only:
    the CLI never takes a password). The same checks as a file; an error names the key."""
    doc: dict = {}
    password = None
    cfg = dataclasses.replace(cfg)
    for key, value in keys.items():
        if key in ("line_a", "line_b", "record") and value is None:
            setattr(cfg, key, None)  # an optional value left out
        elif key == "metrics":
            doc.setdefault("metrics", {})["addr"] = "off" if value is None else value
        elif key == "password":
            password = value
        elif key in _KEY_SECTION:
            if key in ("rerequest", "replay", "glimpse"):  # "HOST:PORT", or (host, port), one or a list; None: none
                value = [] if value is None else [value] if isinstance(value, str) else value
                value = [v if isinstance(v, str) else "{}:{}".format(*v) for v in value]
            doc.setdefault(_KEY_SECTION[key], {})[key] = value
        else:
            known = sorted({*_KEY_SECTION, "metrics", "password"})
            raise ConfigError(f"unknown key {key!r}; known: {', '.join(known)}")
    out = from_dict(doc, base=cfg)
    if password is not None:
        out.password = password
    return out


def login_problem(cfg: FeedConfig) -> tuple[str, str] | None:
    """What a feed lacks to log in to its servers or to take snapshots, checked alike wherever a feed is built
    (the Feed names config keys, the command line its flags): ("start" or "resync", "glimpse") for a snapshot
    without GLIMPSE servers; ("replay" or "glimpse", "user" or "password") for servers without a login. The
    password comes from $XDPFEED_PASSWORD when the config has none."""
    if not cfg.password and (cfg.replay or cfg.glimpse):
        cfg.password = password_from_env(cfg)
    if cfg.start_snapshot and not cfg.glimpse:
        return "start", "glimpse"
    if cfg.resync == "snapshot" and not cfg.glimpse:
        return "resync", "glimpse"
    for key in ("replay", "glimpse"):
        if getattr(cfg, key) and not cfg.user:
            return key, "user"
        if getattr(cfg, key) and not cfg.password:
            return key, "password"
    return None


def login_problem_text(problem: tuple[str, str]) -> str:
    """A login_problem in the config's words."""
    key, lacks = problem
    if lacks == "glimpse":
        what = 'feed.start = "snapshot"' if key == "start" else 'recovery.resync = "snapshot"'
        return f"{what} needs recovery.glimpse (GLIMPSE servers, HOST:PORT)"
    if lacks == "user":
        return f"recovery.{key} needs recovery.user"
    return f"recovery.{key} needs a password: set ${PASSWORD_ENV} or recovery.password_file"


def password_from_env(cfg: FeedConfig) -> str:
    """The password: the config's file, else $XDPFEED_PASSWORD, else empty."""
    return cfg.password or os.environ.get(PASSWORD_ENV, "")
