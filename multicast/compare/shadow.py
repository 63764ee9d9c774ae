"""The second path of a live parallel run (`xdpfeed run --shadow URI…`, docs/golive.md): another Feed on
other sources (one or two URIs: its lines A and B, with the primary's recovery servers), or a subscription to
another handler's output (`ipc:NAME`, `nats://…`), run in the primary's loop and compared with it message by
message (multicast.compare.live). The primary decides when the run ends; the shadow only follows."""

import dataclasses
import select
import time

from xdpfeed.multicast.compare.live import LiveCompare, ShadowCollector


class Shadow:
    def __init__(self, cfg, uris: list[str]):
        from xdpfeed.multicast.feed import config as cfgmod

        self.compare = LiveCompare()
        self.collector = ShadowCollector(self.compare, cfg.name)
        self.feed = self.sub = None
        self.uris = list(uris)
        if any(u.startswith(("ipc:", "nats:")) for u in uris):
            if len(uris) != 1:
                raise cfgmod.ConfigError("--shadow: one subscription (ipc:NAME or nats://…), or one or two source "
                                         "URIs")
            from xdpfeed.multicast.sinks.subscriber import Subscriber, SubscriberError

            try:
                self.sub = Subscriber(uris[0])
            except SubscriberError as e:
                raise cfgmod.ConfigError(f"--shadow {uris[0]}: {e}") from None
            return
        if len(uris) > 2:
            raise cfgmod.ConfigError("--shadow: at most two source URIs (lines A and B)")
        from xdpfeed.multicast.feed.feed import Feed

        scfg = dataclasses.replace(cfg, name=f"{cfg.name}-shadow", line_a=uris[0],
                                   line_b=uris[1] if len(uris) > 1 else None, outputs=[], record=None,
                                   metrics_addr="off", latency=False, book=False)
        self.feed = Feed(scfg, consumers=[self.compare.shadow], warm=False)

    def run(self, primary, until_eos: bool = False, stop=None, on_tick=None, idle_timeout: float | None = None,
            tick: float = 0.5) -> str:
        """The primary's loop (Feed.run), with the shadow served beside it; then the shadow's catching up."""
        why = primary.run(until_eos=until_eos, stop=stop, idle_timeout=idle_timeout, on_tick=on_tick, tick=tick,
                          beside=self)
        if why not in ("stopped", "idle"):
            self._catch_up()
        return why

    def wait_set(self, timeout: float) -> tuple[list, list, bool, float]:
        """What the shadow waits on (Feed.wait_set); a subscription is polled, at least every 5 ms."""
        if self.feed is not None:
            return self.feed.wait_set(timeout)
        return [], [], False, min(timeout, 0.005)

    def pump(self) -> None:
        if self.feed is not None:
            self.feed.pump()
            return
        while (batch := self.sub.receive(0.0)) is not None:
            self.compare.shadow.on_messages(batch)

    def _catch_up(self, seconds: float = 2.0) -> None:
        """The primary is done: give the shadow a moment to deliver the same messages."""
        end = time.monotonic() + seconds
        a, b = self.compare.sides
        while time.monotonic() < end and b.next < a.next:
            files, writers, polled, timeout = self.wait_set(0.01)
            if (files or writers) and not polled:
                select.select(files, writers, [], timeout)
            elif not polled:
                time.sleep(0.001)
            self.pump()

    def summary(self) -> dict:
        out = {"path": self.uris, **self.compare.summary()}
        if self.feed is not None:
            st = self.feed.state
            out["shadow_state"] = {"state": st.state, "delivered": st.delivered, "lost": st.lost}
        return out

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()
        if self.sub is not None:
            self.sub.close()
