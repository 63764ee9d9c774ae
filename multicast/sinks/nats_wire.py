"""What the `nats:` output and its subscribers agree on: the URI, the credentials, the subjects, and how a
chunk of the delivered stream travels as one JetStream message.

    nats://[USER@]HOST:PORT[,HOST:PORT...]/STREAM[?subject=...&creds=FILE&...]

A chunk is consecutive delivered messages of one session. Its payload is `count` receive timestamps
(int64, little-endian, ns since the epoch: the packet that brought each message) followed by the messages
framed as a NASDAQ binary ITCH file (`[uint16 length][message]...`). Its headers:

    Xdpfeed-Feed        the feed's name
    Xdpfeed-Session     the MoldUDP64 session
    Xdpfeed-First-Seq   sequence number of the first message
    Xdpfeed-Count       messages in the chunk
    Xdpfeed-Publisher   which handler stored it (host, pid, a random tag)
    Nats-Expected-Last-Subject-Sequence   the condition under which JetStream stored it (multicast.sinks.nats)

Subjects: the chunks on `xdpfeed.FEED.messages` (`subject=` changes it), the only subject of their
stream; top-of-book events on `xdpfeed.FEED.bbo.SYMBOL` (core NATS, not stored: see multicast.sinks.nats).

Credentials never travel on the command line: a password comes from `password_file=` or
$XDPFEED_NATS_PASSWORD, a token from `token_file=` or $XDPFEED_NATS_TOKEN, a JWT from `creds=FILE`, an
nkey seed from `nkey=FILE`; TLS with `tls=1` (and `ca=`, `cert=`, `key=` files). A password written in
the URI is refused.
"""

import os

import numpy as np
from numba import njit

from xdpfeed.multicast.sinks.base import SinkError

PASSWORD_ENV = "XDPFEED_NATS_PASSWORD"
TOKEN_ENV = "XDPFEED_NATS_TOKEN"

H_FEED, H_SESSION, H_FIRST, H_COUNT, H_PUBLISHER = (
    "Xdpfeed-Feed", "Xdpfeed-Session", "Xdpfeed-First-Seq", "Xdpfeed-Count", "Xdpfeed-Publisher")
H_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"

# options of a nats: URI, for the output and the subscriber alike (multicast.sinks.uri checks them)
OPTIONS = {"subject": str, "creds": str, "nkey": str, "password_file": str, "token_file": str, "tls": int,
           "ca": str, "cert": str, "key": str, "replicas": int, "chunk": int, "buffer_mb": int,
           "ack_timeout": float, "connect_timeout": float, "max_age": float}


def messages_subject(feed: str) -> str:
    return f"xdpfeed.{feed}.messages"


def bbo_subject(feed: str, symbol: str) -> str:
    return f"xdpfeed.{feed}.bbo.{symbol}"


def feed_of(subject: str) -> str:
    """The feed's name in a messages subject `xdpfeed.FEED.messages`, else the subject itself."""
    parts = subject.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "xdpfeed" and parts[2] == "messages" else subject


def split_target(uri: str, target: str) -> tuple[list[str], str, str | None]:
    """(servers as nats://HOST:PORT, stream, user) of `//[USER@]HOST:PORT,.../STREAM`."""
    if not target.startswith("//"):
        raise SinkError(f"{uri}: expected nats://HOST:PORT[,HOST:PORT...]/STREAM")
    hosts, slash, stream = target[2:].partition("/")
    if not slash or not stream or "/" in stream or any(c in stream for c in " .*>"):
        raise SinkError(f"{uri}: needs a stream name after the servers (nats://HOST:PORT/STREAM), "
                        "without '.', '*', '>' or spaces")
    user = None
    if "@" in hosts:
        user, _, hosts = hosts.rpartition("@")
        if ":" in user:
            raise SinkError(f"{uri}: a password does not belong in the URI (it shows in ps and shell history): "
                            f"use password_file= or ${PASSWORD_ENV}")
    servers = []
    for hp in hosts.split(","):
        host, colon, port = hp.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SinkError(f"{uri}: server {hp!r} is not HOST:PORT")
        servers.append(f"nats://{host}:{port}")
    return servers, stream, user


def _secret(uri: str, path: str | None, env: str, what: str) -> str | None:
    from xdpfeed.multicast.feed.config import ConfigError, read_password_file

    if path:
        try:
            return read_password_file(path, key=f"{uri}: {what}")
        except ConfigError as e:
            raise SinkError(str(e)) from None
    return os.environ.get(env) or None


def _readable(uri: str, key: str, path: str | None) -> str | None:
    if path and not os.access(path, os.R_OK):
        raise SinkError(f"{uri}: {key}={path}: {'not readable' if os.path.exists(path) else 'no such file'}")
    return path


def connect_options(uri: str, servers: list[str], user: str | None, opts: dict) -> dict:
    """Keyword arguments of nats.connect() for these servers and credentials (files read, TLS set up)."""
    kw: dict = {"servers": servers}
    if user:
        password = _secret(uri, opts.get("password_file"), PASSWORD_ENV, "password_file")
        if not password:
            raise SinkError(f"{uri}: user {user!r} needs a password: password_file= or ${PASSWORD_ENV}")
        kw.update(user=user, password=password)
    else:
        token = _secret(uri, opts.get("token_file"), TOKEN_ENV, "token_file")
        if token:
            kw["token"] = token
    if creds := _readable(uri, "creds", opts.get("creds")):
        kw["user_credentials"] = creds
    if nkey := _readable(uri, "nkey", opts.get("nkey")):
        kw["nkeys_seed"] = nkey
    if opts.get("tls") or opts.get("ca") or opts.get("cert"):
        import ssl  # (only here: a feed without TLS outputs does not pay for importing it)

        try:
            ctx = ssl.create_default_context(cafile=_readable(uri, "ca", opts.get("ca")))
            if opts.get("cert"):
                ctx.load_cert_chain(_readable(uri, "cert", opts["cert"]), _readable(uri, "key", opts.get("key")))
        except (ssl.SSLError, OSError) as e:
            raise SinkError(f"{uri}: TLS: {e}") from None
        kw["tls"] = ctx
    return kw


def connect_error(uri: str, e: BaseException) -> str:
    """One line for a failed connection: what the server said, or that none answered."""
    text = str(e) or type(e).__name__
    if "authorization" in text.lower() or "authentication" in text.lower():
        return f"{uri}: the server refused the credentials ({text.strip()})"
    return f"{uri}: no NATS server answered ({type(e).__name__}: {text.strip()})"


NO_PEERS = 10005  # "insufficient resources" / "no suitable peers for placement": a cluster still forming


def transient(e: BaseException) -> bool:
    """An error that passes: JetStream electing a leader or gathering its peers, a connection being replaced."""
    import nats

    if isinstance(e, (TimeoutError, ConnectionError, nats.errors.TimeoutError, nats.errors.NoRespondersError,
                      nats.js.errors.ServiceUnavailableError, nats.errors.ConnectionReconnectingError,
                      nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError,
                      nats.errors.StaleConnectionError, nats.errors.UnexpectedEOF,
                      nats.js.errors.NoStreamResponseError)):
        return True
    return isinstance(e, nats.js.errors.APIError) and (e.err_code == NO_PEERS or e.code == 503)


async def retry(call, uri: str, what: str, error=SinkError, passthrough=(), seconds: float = 10.0):
    """call() until it works or `seconds` passed, while it fails the transient way: a cluster that just started
    has no JetStream leader yet or not all its peers, and one that lost a node is electing a new leader. Then
    `error` (a one-line "URI: what: JetStream did not answer (...)"); `passthrough` errors are raised as they
    are."""
    import asyncio
    import time

    end = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except passthrough:
            raise
        except Exception as e:
            if not transient(e):
                raise
            if time.monotonic() > end:
                raise error(f"{uri}: {what}: JetStream did not answer ({describe(e)})") from None
            await asyncio.sleep(0.2)


def describe(e: BaseException) -> str:
    return getattr(e, "description", None) or str(e) or type(e).__name__


# -- chunks ----------------------------------------------------------------------------------------------
def payload(timestamps: np.ndarray, stream: np.ndarray) -> bytes:
    return timestamps.astype("<i8", copy=False).tobytes() + stream.tobytes()


def unpack(data: bytes, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(receive timestamps, stream) of a chunk's payload, as views of `data`."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < 8 * count:
        raise ValueError(f"chunk of {count} messages has only {buf.size} bytes")
    return buf[: 8 * count].view("<i8"), buf[8 * count:]


@njit(cache=True, nogil=True)
def cut(stream, start, max_messages, max_bytes):
    """From byte `start` of a [uint16 length][message] stream: (end, messages) of the longest run of at most
    max_messages messages and max_bytes bytes (at least one message)."""
    p = start
    n = 0
    while p + 2 <= stream.size and n < max_messages:
        q = p + 2 + ((np.int64(stream[p]) << 8) | np.int64(stream[p + 1]))
        if q > stream.size or (n > 0 and q - start > max_bytes):
            break
        p = q
        n += 1
    return p, n


@njit(cache=True, nogil=True)
def offset_of(stream, k):
    """Byte offset of message k (from 0) of a [uint16 length][message] stream."""
    p = 0
    for _ in range(k):
        p += 2 + ((np.int64(stream[p]) << 8) | np.int64(stream[p + 1]))
    return p


class LoopThread:
    """An asyncio loop on a thread of its own, for nats-py beside a caller that is not async."""

    def __init__(self, name: str):
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coro):
        """Run coro on the loop; its concurrent.futures.Future."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro, timeout: float):
        return self.submit(coro).result(timeout)

    def wake(self, callback) -> None:
        self.loop.call_soon_threadsafe(callback)

    def stop(self, nc=None, drain: bool = False) -> None:
        """Close the connection (draining it first: what was published goes out), cancel what still runs,
        stop the loop and join its thread."""
        import asyncio

        async def shutdown():
            if nc is not None and not nc.is_closed:
                try:
                    await asyncio.wait_for(nc.drain() if drain else nc.close(), 5)
                except Exception:
                    await nc.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        try:
            self.call(shutdown(), 10)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


async def connect(uri: str, kw: dict, timeout: float, error=SinkError, **callbacks):
    """A nats-py connection that reconnects forever (to any server of the URI) once it is up. The servers and
    the credentials are tried once first, without reconnecting, so that a wrong password or no server is one
    line at once instead of a client retrying in the background."""
    import asyncio

    import nats

    async def quiet(e):  # the probe's errors are the exception below, not a log line with a traceback
        pass

    try:
        probe = await asyncio.wait_for(nats.connect(**kw, connect_timeout=timeout, allow_reconnect=False,
                                                    max_reconnect_attempts=0, error_cb=quiet),
                                       timeout * len(kw["servers"]) + 1)
        await probe.close()
        return await asyncio.wait_for(nats.connect(**kw, connect_timeout=timeout, allow_reconnect=True,
                                                   max_reconnect_attempts=-1, reconnect_time_wait=0.1, **callbacks),
                                      timeout * len(kw["servers"]) + 1)
    except Exception as e:
        raise error(connect_error(uri, e)) from None
