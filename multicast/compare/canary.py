"""The canary gate of a go-live (`xdpfeed canary`, docs/golive.md): the current release and the new one run
side by side on one feed config, each publishing what it delivers to an `ipc:` service of its own; both are
read at the same time for a window, cut to the sequence numbers both delivered and compared message by
message (multicast.compare), and the new release's Prometheus metrics must show it SYNCHRONIZED with nothing
lost. Each release is a command (its virtualenv's `bin/xdpfeed`), so the two run different code.

The gate passes only when:
- the new release delivered at least `min_messages` in the window;
- the comparison with the current release is identical (when there is a current release);
- the new release's metrics say SYNCHRONIZED and `xdpfeed_lost_messages` 0 at the end of the window.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field

from xdpfeed.multicast.compare import diff, streams
from xdpfeed.multicast.exchange.ports import free_port

READER_BUFFER = 512  # batches each release's ipc: service keeps for a subscriber that has not read them yet


class GateError(ValueError):
    """Bad input to the gate (a config with outputs, a release that is not there): one line."""


@dataclass
class Release:
    role: str  # "current" or "new"
    command: str  # its bin/xdpfeed
    uri: str = ""
    port: int = 0
    proc: subprocess.Popen | None = None
    metrics: dict = field(default_factory=dict)
    summary: dict | None = None
    error: str = ""

    def report(self) -> dict:
        return {"command": self.command, "ipc": self.uri, "metrics": self.metrics, "summary": self.summary,
                "exit": None if self.proc is None else self.proc.returncode, "error": self.error}


def check_config(path: str) -> None:
    """The canary's config must exist, be valid and write no outputs of its own (it would write the
    production ones a second time)."""
    from xdpfeed.multicast.feed import config as cfgmod

    if not os.path.exists(path):
        raise GateError(f"{path}: no such config")
    try:
        cfg = cfgmod.load_any(path)
    except cfgmod.ConfigError as e:
        raise GateError(str(e)) from None
    if isinstance(cfg, cfgmod.FeedsConfig):
        raise GateError(f"{path}: a canary runs one feed; this config has several ([[feeds]])")
    problem = cfgmod.login_problem(cfg)
    if problem:
        raise GateError(f"{path}: {cfgmod.login_problem_text(problem)}")
    if cfg.outputs or cfg.record:
        raise GateError(f"{path} has outputs ({', '.join(cfg.outputs or [cfg.record])}): a canary must not write "
                        "the production outputs a second time; give it a config without them")


def _start(r: Release, config: str, tag: str, env: dict) -> None:
    r.uri, r.port = f"ipc:{tag}-{r.role}", free_port()
    # The gate's one reader takes both releases' batches in turn: each subscriber may fall 512 batches behind
    # (ipc:'s default is 64) before a batch is overwritten unread, which would fail the gate for the reader's sake.
    # Two subscribers at most (the gate's, and one more to look): 2 x 516 chunks of 64 KiB of shared memory.
    out = f"{r.uri}?subscribers=2&buffer={READER_BUFFER}"
    argv = [r.command, "run", "-c", config, "--out", out, "--metrics-addr", f"127.0.0.1:{r.port}", "-T", "json",
            "-q", "--no-latency"]
    try:
        r.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                  start_new_session=True)
    except OSError as e:
        raise GateError(f"{r.command}: {e.strerror}") from None


def _died(r: Release) -> bool:
    if r.proc.poll() is None:
        return False
    if not r.error:
        out, err = r.proc.communicate()
        lines = [x for x in err.strip().splitlines() if x.strip()]
        r.error = f"the {r.role} release exited with {r.proc.returncode} before the window ended" + (
            f": {lines[-1]}" if lines else "")
    return True


def _ready(rels: list[Release], timeout: float) -> str:
    """Wait until every release publishes (its ipc: service exists) and serves metrics: '' or why not."""
    from xdpfeed.multicast.sinks.subscriber import Subscriber, SubscriberError

    end = time.monotonic() + timeout
    waiting = list(rels)
    while waiting:
        for r in list(waiting):
            if _died(r):
                return r.error
            try:
                Subscriber(r.uri).close()
                urllib.request.urlopen(f"http://127.0.0.1:{r.port}/metrics", timeout=2).read()
            except (SubscriberError, OSError):
                continue
            waiting.remove(r)
        if waiting and time.monotonic() > end:
            return (f"the {waiting[0].role} release did not start publishing within {timeout:g} s (compiling its code "
                    "on a first run takes about 30 s)")
        time.sleep(0.2)
    return ""


def scrape(port: int) -> dict:
    """The feed's state, lost and delivered messages from a handler's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {"state": None, "lost": None, "delivered": None}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "xdpfeed_feed_state" and s.value == 1:
                out["state"] = s.labels.get("state")
            elif s.name == "xdpfeed_lost_messages":
                out["lost"] = int(s.value)
            elif s.name == "xdpfeed_delivered_messages_total":
                out["delivered"] = int(s.value)
    return out


def _stop(r: Release, timeout: float = 30.0) -> None:
    if r.proc is None:
        return
    if r.proc.poll() is None:
        os.killpg(r.proc.pid, signal.SIGTERM)
    try:
        out, err = r.proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(r.proc.pid, signal.SIGKILL)
        out, err = r.proc.communicate()
        r.error = r.error or f"the {r.role} release did not stop within {timeout:g} s of SIGTERM: killed"
    if out:
        try:
            r.summary = json.loads(out.strip().splitlines()[-1])
        except ValueError:
            r.summary = None


def gate(new: str, config: str, current: str | None = None, seconds: float = 10.0, start_timeout: float = 180.0,
         min_messages: int = 1, book: bool = True) -> dict:
    """Run the gate; the report's `pass` says whether the new release may take over, `reasons` why not."""
    check_config(config)
    for cmd in filter(None, (new, current)):
        if not os.access(cmd, os.X_OK):
            raise GateError(f"{cmd}: not an executable (a release's bin/xdpfeed)")
    tag = f"xdpfeed-canary-{socket.gethostname()}-{os.getpid()}"
    rels = [Release("new", new)] + ([Release("current", current)] if current else [])
    env = dict(os.environ)
    reasons, result = [], None
    try:
        for r in rels:
            _start(r, config, tag, env)
        why = _ready(rels, start_timeout)
        if why:
            reasons.append(why)
        else:
            uris = [r.uri for r in rels]
            sides = streams.subscriptions(uris[::-1], idle_timeout=seconds, count=None, seconds=seconds)
            for r in rels:
                if not _died(r):
                    try:
                        r.metrics = scrape(r.port)
                    except OSError as e:
                        r.error = f"the {r.role} release's metrics could not be read: {e}"
            result = _verdict(rels, sides, min_messages, book, reasons)
    finally:
        for r in rels:
            _stop(r)
    reasons += [r.error for r in rels if r.error and r.error not in reasons]
    return {"pass": not reasons, "reasons": reasons, "seconds": seconds, "compare": result,
            **{r.role: r.report() for r in rels}}


def _verdict(rels: list[Release], sides: list, min_messages: int, book: bool, reasons: list) -> dict | None:
    """The comparison (current as A, new as B, cut to their overlap) and the reasons the gate fails."""
    new = rels[0]
    got = sides[-1].count
    if got < min_messages:
        reasons.append(f"the new release delivered {got:,} messages in the window (at least {min_messages:,} wanted)")
    m = new.metrics
    if m and m["state"] != "SYNCHRONIZED":
        reasons.append(f"the new release is {m['state']}, not SYNCHRONIZED")
    if m and m["lost"] != 0:
        reasons.append(f"the new release lost {m['lost']:,} messages")
    if len(sides) < 2:
        return None
    r = diff.compare(sides[0], sides[1], book=book, overlap=True)
    if not r["compared"]:
        reasons.append("the two releases delivered no sequence numbers in common")
    elif not r["identical"]:
        f = r["first_divergence"]
        reasons.append(f"the releases differ: missing {r['missing']:,}, extra {r['extra']:,}, different "
                       f"{r['different']:,}" + (f"; first at sequence {f['seq']:,} ({', '.join(f['fields'])})"
                                                if f and f["fields"] else ""))
    return r
