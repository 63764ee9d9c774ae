"""Network namespaces for labs, tests and benchmarks: a veth pair between two fresh namespaces,
uniquely named per run, always deleted. Built with pyroute2 (netlink); processes enter a namespace
with `ip netns exec` (iproute2), threads with pyroute2's `netns.pushns`/`popns`."""

import contextlib
import os
import random
import shutil
from dataclasses import dataclass


@dataclass
class VethPair:
    ns_a: str
    ns_b: str
    if_a: str
    if_b: str
    addr_a: str
    addr_b: str

    def exec(self, ns: str) -> list[str]:
        """Command prefix that runs a program inside namespace `ns`."""
        return ["ip", "netns", "exec", ns]


class Unavailable(RuntimeError):
    """This machine cannot create the namespaces (not root, no iproute2); the message says why."""


def _need_root():
    if os.geteuid() != 0:
        raise Unavailable("needs root: creates network namespaces and a veth pair")
    if shutil.which("ip") is None:
        raise Unavailable("needs iproute2's ip to run processes inside a namespace")


@contextlib.contextmanager
def inside(ns: str | None):
    """Run the block with this thread in namespace `ns` (None: stay where it is). Sockets made inside
    stay in `ns`, and threads started inside start there."""
    if ns is None:
        yield
        return
    from pyroute2 import netns

    netns.pushns(ns)
    try:
        yield
    finally:
        netns.popns()


def namespaces() -> set[str]:
    """The named network namespaces (`ip netns list`), to check that nothing was left behind."""
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


@contextlib.contextmanager
def veth_pair():
    """Two namespaces joined by a veth pair (10.R.S.1/24 and .2/24), multicast routed over it."""
    _need_root()
    from pyroute2 import IPRoute, NetNS, netns

    tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
    pair = VethPair(f"xfA{tag}", f"xfB{tag}", f"xfa{tag}", f"xfb{tag}", "", "")
    r, s = random.randrange(1, 250), random.randrange(1, 250)
    pair.addr_a, pair.addr_b = f"10.{r}.{s}.1", f"10.{r}.{s}.2"
    created = []
    try:
        for ns in (pair.ns_a, pair.ns_b):
            netns.create(ns)
            created.append(ns)
        with IPRoute() as ip:
            ip.link("add", ifname=pair.if_a, kind="veth", peer={"ifname": pair.if_b})
            ip.link("set", index=ip.link_lookup(ifname=pair.if_a)[0], net_ns_fd=pair.ns_a)
            ip.link("set", index=ip.link_lookup(ifname=pair.if_b)[0], net_ns_fd=pair.ns_b)
        for ns, ifname, addr in ((pair.ns_a, pair.if_a, pair.addr_a), (pair.ns_b, pair.if_b, pair.addr_b)):
            with NetNS(ns) as n:
                idx = n.link_lookup(ifname=ifname)[0]
                n.addr("add", index=idx, address=addr, prefixlen=24)
                n.link("set", index=idx, state="up")
                n.link("set", index=n.link_lookup(ifname="lo")[0], state="up")
                n.route("add", dst="224.0.0.0/4", oif=idx)
        yield pair
    finally:
        for ns in created:  # deleting a namespace deletes the veth end inside it, and so the pair
            with contextlib.suppress(Exception):
                netns.remove(ns)
