"""The simulated venue put together: a day's messages, its MoldUDP64 publisher on lines A and B, and the
two recovery servers a real venue runs beside it (SoupBinTCP replay, MoldUDP64 re-request).

Owns `VenueConfig` (every knob, checked up front: a bad value raises ConfigError naming the field and
what it accepts) and `Venue`, which builds the day (synthetic.generate unless a DayStore is given),
starts the servers, then publishes in a thread of its own after `start_delay`. The recovery servers
serve only what the publisher has already published, and keep serving after End of Session until
stop().
"""

import ipaddress
import math
import threading
import time
from dataclasses import dataclass, field

from xdpfeed.multicast.exchange import synthetic
from xdpfeed.multicast.exchange.publisher import LineFaults, Publisher
from xdpfeed.multicast.exchange.request_server import RequestServer
from xdpfeed.multicast.exchange.store import SESSION_LEN, DayStore

MIN_MESSAGES = 1007  # the synthetic day's floor: a stock, six system events and 1000 order-flow messages
MAX_MESSAGES = 1 << 31
USER_LEN, PASSWORD_LEN = 6, 10  # SoupBinTCP login field widths
DEFAULT_USER = "XDPF01"  # as in the handler's example config; "xdpfeed" would not fit the 6-byte field


class ConfigError(ValueError):
    """A VenueConfig field out of range; `field` names it."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name} {message}")
        self.field = name


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _ascii(text, lo: int, hi: int) -> bool:
    return isinstance(text, str) and lo <= len(text) <= hi and text.isascii() and text.isprintable()


def _ipv4(name: str, value) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(name, f"must be an IPv4 address, not {value!r}") from None


@dataclass
class VenueConfig:
    """Everything a Venue needs. Probabilities are per packet; burst_loss is messages per burst."""

    messages: int = 200_000
    seed: int = 1
    session: str = "XDPFEED001"
    n_stocks: int | None = None
    line_a: tuple[str, int] = ("239.192.1.1", 30001)
    line_b: tuple[str, int] = ("239.192.1.2", 30002)
    iface_addr: str = "127.0.0.1"
    rate: float = 0
    loss_a: float = 0.0
    loss_b: float = 0.0
    burst_loss: int = 0
    bursts: int = 0
    reorder: float = 0.0
    duplicate: float = 0.0
    replay_host: str = "127.0.0.1"
    replay_port: int = 0
    request_host: str = "127.0.0.1"
    request_port: int = 0
    users: dict[str, str] = field(default_factory=lambda: {DEFAULT_USER: "xdpfeed"}, repr=False)  # no passwords in logs
    heartbeat_interval: float = 1.0
    request_drop: float = 0.0
    request_silent: bool = False
    replay_fault: object = None
    start_delay: float = 0.0
    recovery_outage: float = 0.0  # seconds both recovery servers are down, from just before the first burst
    glimpse_host: str = "127.0.0.1"
    glimpse_port: int | None = None  # GLIMPSE 5.0 snapshots on this port (0: any free one); None: no server
    glimpse_fault: object = None
    stamp_time: bool = False  # each message's ITCH timestamp is the time it is sent (latency: the wire stage)
    start_seq: int = 1  # publish from this sequence: the venue met in the middle of its day (earlier ones served)

    def __post_init__(self):
        if not _is_int(self.messages) or not MIN_MESSAGES <= self.messages <= MAX_MESSAGES:
            raise ConfigError("messages", f"must be an integer in {MIN_MESSAGES}..{MAX_MESSAGES}, "
                                          f"not {self.messages!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 1 << 64:
            raise ConfigError("seed", f"must be an integer in 0..2**64-1, not {self.seed!r}")
        if not _ascii(self.session, 1, SESSION_LEN) or self.session != self.session.strip():
            raise ConfigError("session", f"must be 1..{SESSION_LEN} printable ASCII characters without leading or "
                                         f"trailing spaces, not {self.session!r}")
        if self.n_stocks is not None:
            top = min(65535, self.messages // 100)
            if not _is_int(self.n_stocks) or not 1 <= self.n_stocks <= top or \
                    self.messages - self.n_stocks - synthetic.FIXED_S < 1000:
                raise ConfigError("n_stocks", f"must be None or an integer in 1..{top} leaving 1000 order-flow "
                                              f"messages, not {self.n_stocks!r}")
        for name in ("line_a", "line_b"):
            self._line(name)
        if tuple(self.line_a) == tuple(self.line_b):
            raise ConfigError("line_b", f"must differ from line_a, both are {self.line_a[0]}:{self.line_a[1]}")
        for name in ("iface_addr", "replay_host", "request_host", "glimpse_host"):
            _ipv4(name, getattr(self, name))
        if not _is_num(self.rate) or self.rate < 0:
            raise ConfigError("rate", f"must be a number of messages/s >= 0 (0 = as fast as possible), "
                                      f"not {self.rate!r}")
        for name in ("loss_a", "loss_b", "reorder", "duplicate", "request_drop"):
            v = getattr(self, name)
            if not _is_num(v) or not 0.0 <= v <= 1.0:
                raise ConfigError(name, f"must be a probability in [0, 1], not {v!r}")
        for name in ("burst_loss", "bursts"):
            v = getattr(self, name)
            if not _is_int(v) or not 0 <= v <= self.messages:
                raise ConfigError(name, f"must be an integer in 0..{self.messages} (messages), not {v!r}")
        if (self.burst_loss > 0) != (self.bursts > 0):
            raise ConfigError("bursts", f"and burst_loss must both be 0 or both >= 1, not bursts={self.bursts} "
                                        f"burst_loss={self.burst_loss}")
        if self.burst_loss * self.bursts > self.messages // 2:
            raise ConfigError("burst_loss", f"times bursts must be at most half the messages ({self.messages // 2}), "
                                            f"not {self.burst_loss * self.bursts}")
        for name in ("replay_port", "request_port", "glimpse_port"):
            v = getattr(self, name)
            if name == "glimpse_port" and v is None:
                continue
            if not _is_int(v) or not 0 <= v <= 65535:
                raise ConfigError(name, f"must be an integer in 0..65535 (0 = any free port), not {v!r}")
        if not isinstance(self.users, dict) or not self.users:
            raise ConfigError("users", "must be a non-empty dict of user name -> password")
        for user, password in self.users.items():
            if not _ascii(user, 1, USER_LEN) or " " in user:
                raise ConfigError("users", f"names must be 1..{USER_LEN} ASCII characters without spaces, not {user!r}")
            if not _ascii(password, 1, PASSWORD_LEN) or " " in password:
                raise ConfigError("users", f"passwords must be 1..{PASSWORD_LEN} ASCII characters without spaces "
                                           f"(user {user!r})")
        if not _is_num(self.heartbeat_interval) or not 0.01 <= self.heartbeat_interval <= 60:
            raise ConfigError("heartbeat_interval", f"must be in 0.01..60 seconds, not {self.heartbeat_interval!r}")
        if not isinstance(self.request_silent, bool):
            raise ConfigError("request_silent", f"must be True or False, not {self.request_silent!r}")
        if self.replay_fault is not None:
            from xdpfeed.multicast.exchange.replay_server import ReplayFault

            if not isinstance(self.replay_fault, ReplayFault):
                raise ConfigError("replay_fault", f"must be None or a ReplayFault, not {self.replay_fault!r}")
        if not _is_int(self.start_seq) or self.start_seq < 1:
            raise ConfigError("start_seq", f"must be an integer >= 1 (a sequence of the day), not {self.start_seq!r}")
        if self.glimpse_fault is not None:
            from xdpfeed.multicast.exchange.glimpse_server import GlimpseFault

            if not isinstance(self.glimpse_fault, GlimpseFault):
                raise ConfigError("glimpse_fault", f"must be None or a GlimpseFault, not {self.glimpse_fault!r}")
        if not _is_num(self.start_delay) or not 0 <= self.start_delay <= 3600:
            raise ConfigError("start_delay", f"must be in 0..3600 seconds, not {self.start_delay!r}")
        if not _is_num(self.recovery_outage) or not 0 <= self.recovery_outage <= 3600:
            raise ConfigError("recovery_outage", f"must be in 0..3600 seconds, not {self.recovery_outage!r}")
        if self.recovery_outage and not self.bursts:
            raise ConfigError("recovery_outage", "needs a burst (burst_loss, bursts): it starts just before the first")

    def _line(self, name: str) -> None:
        v = getattr(self, name)
        ok = isinstance(v, tuple | list) and len(v) == 2 and _is_int(v[1]) and 1 <= v[1] <= 65535
        try:
            ok = ok and ipaddress.IPv4Address(v[0]).is_multicast
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(name, f"must be (IPv4 multicast group, port 1..65535), not {v!r}")


class Venue:
    """One simulated trading session. With `store` given, its messages and session are published
    (config.messages, n_stocks and session are then not used)."""

    def __init__(self, config: VenueConfig, store: DayStore | None = None):
        self.config = c = config
        if store is None:
            records, _ = synthetic.generate(c.messages, c.n_stocks, seed=c.seed)
            store = DayStore(records, c.session)
        self.store = store
        try:
            self.publisher = Publisher(
                store, [tuple(c.line_a), tuple(c.line_b)], iface_addr=c.iface_addr, rate=c.rate,
                faults=[LineFaults(c.loss_a, c.reorder, c.duplicate), LineFaults(c.loss_b, c.reorder, c.duplicate)],
                burst_loss=c.burst_loss, bursts=c.bursts, seed=c.seed, heartbeat_interval=c.heartbeat_interval,
                eos_until_stopped=True, start_seq=c.start_seq, stamp_time=c.stamp_time)
        except ValueError as e:  # bursts that do not fit this day
            if str(e).startswith("burst_loss: "):
                raise ConfigError("burst_loss", str(e).removeprefix("burst_loss: ")) from None
            raise
        self.replay_server = None
        self.request_server = None
        self.glimpse_server = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage_thread: threading.Thread | None = None
        self.outages: list = []  # [published when the recovery servers went down, published when they came back]
        self.error: BaseException | None = None

    def start(self) -> "Venue":
        c = self.config
        try:
            self.replay_server = self._replay_server(c.replay_host, c.replay_port)
            self.request_server = self._request_server(c.request_host, c.request_port)
            if c.glimpse_port is not None:
                from xdpfeed.multicast.exchange.glimpse_server import GlimpseServer

                self.glimpse_server = GlimpseServer(
                    self.store, c.users, published=lambda: self.publisher.published, host=c.glimpse_host,
                    port=c.glimpse_port, heartbeat_interval=c.heartbeat_interval, fault=c.glimpse_fault).start()
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._publish, name="venue-publisher", daemon=True)
        self._thread.start()
        if c.recovery_outage:
            self._outage_thread = threading.Thread(target=self._outage, name="venue-outage", daemon=True)
            self._outage_thread.start()
        return self

    def _request_server(self, host: str, port: int) -> RequestServer:
        c = self.config
        return RequestServer(self.store, published=lambda: self.publisher.published, host=host, port=port,
                             drop=c.request_drop, silent=c.request_silent, seed=c.seed).start()

    def _outage(self) -> None:
        """Both recovery servers down from just before the first burst lost on both lines, for
        recovery_outage seconds: the burst cannot be recovered meanwhile, so a handler goes STALE and comes
        back once they serve again (on the same addresses)."""
        first = self.publisher.lost_on_both[0][0]
        ahead = max(100, int(self.config.rate * 0.05))
        while not self._stop.is_set() and self.publisher.published < first - ahead:
            self._stop.wait(0.002)
        if self._stop.is_set():
            return
        replay, request = self.replay_server.address, self.request_server.address
        old_stats = (dict(self.replay_server.stats), dict(self.request_server.stats))
        self.request_server.stop()
        self.replay_server.stop()
        self.outages.append([self.publisher.published, None])
        if self._stop.wait(self.config.recovery_outage):
            return
        self.replay_server = self._replay_server(*replay)
        self.request_server = self._request_server(*request)
        self.replay_server.stats.update(old_stats[0])
        self.request_server.stats.update(old_stats[1])
        self.outages[-1][1] = self.publisher.published

    def _publish(self) -> None:
        try:
            if not self._stop.wait(self.config.start_delay):
                self.publisher.run(self._stop)
        except BaseException as e:  # handed to whoever waits
            self.error = e
        finally:
            self.publisher.close()
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the day is published (End of Session sent; it then repeats until stop()) or the
        publisher stopped; re-raises a publisher failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (self._done.is_set() or self.publisher.ended):
            left = 0.01 if deadline is None else min(0.01, deadline - time.monotonic())
            if left <= 0:
                break
            self._done.wait(left)
        if self.error is not None:
            raise self.error
        return self._done.is_set() or self.publisher.ended

    def stop(self) -> None:
        """Stop publishing (if still running) and both servers."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._outage_thread is not None:
            self._outage_thread.join()
            self._outage_thread = None
        self.publisher.close()
        for server in (self.request_server, self.replay_server, self.glimpse_server):
            if server is not None:
                server.stop()

    def restart_replay_server(self, down: float = 0.2) -> None:
        """Stop the replay server (dropping its connections), stay down `down` seconds, then serve again on
        the same address: a venue-side restart clients must ride out."""
        old = self.replay_server
        address = old.address
        old.stop()
        time.sleep(down)
        self.replay_server = self._replay_server(*address)
        self.replay_server.stats.update(old.stats)  # the counts go on across the restart
        self.replay_server.stats["restarts"] = old.stats.get("restarts", 0) + 1

    def _replay_server(self, host: str, port: int):
        from xdpfeed.multicast.exchange.replay_server import ReplayServer

        c = self.config
        return ReplayServer(self.store, c.users, published=lambda: self.publisher.published,
                            ended=lambda: self.publisher.ended, host=host, port=port,
                            heartbeat_interval=c.heartbeat_interval, fault=c.replay_fault).start()

    @property
    def replay_address(self) -> tuple[str, int]:
        return tuple(self.replay_server.address)

    @property
    def request_address(self) -> tuple[str, int]:
        return tuple(self.request_server.address)

    @property
    def glimpse_address(self) -> tuple[str, int]:
        return tuple(self.glimpse_server.address)

    def summary(self) -> dict:
        """Published messages, per-line counters, runs lost on both lines, server counters."""
        st = self.publisher.stats()
        lines = {}
        for (name, s), ln in zip(st["lines"].items(), self.publisher.lines, strict=True):
            lines[name] = {"group": ln.group, "port": ln.port, **s}
        both = st["lost_on_both"]
        return {
            "session": self.store.session.decode("ascii").rstrip(), "messages": self.store.count,
            "published_messages": st["published"] - 1, "ended": st["ended"], "lines": lines,
            "lost_on_both": both, "lost_on_both_messages": sum(e - f for f, e in both),
            "replay_server": dict(self.replay_server.stats) if self.replay_server else {},
            "request_server": dict(self.request_server.stats) if self.request_server else {},
            **({"glimpse_server": dict(self.glimpse_server.stats)} if self.glimpse_server else {}),
            "recovery_outages": [list(o) for o in self.outages],
        }

    def __enter__(self) -> "Venue":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
