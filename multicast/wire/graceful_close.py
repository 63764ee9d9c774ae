"""Ending a TCP connection so that the peer sees everything we sent, Logout included.

Closing a socket that still has unread bytes in its receive queue makes the kernel send a RST instead
of a FIN, and a RST may discard what the peer had not yet read: a SoupBinTCP server then often never
sees our Logout Request. `close_gracefully(sock, last)` sends `last`, shuts the write side down (FIN
after it), reads and discards until the peer closes or `timeout` passes, then closes. It runs on a
short-lived daemon thread so the caller's event loop never waits on the peer; `wait_closed()` waits
for those still lingering (at shutdown, so no descriptor outlives its owner).
"""

import select
import socket
import threading
import time

DRAIN_TIMEOUT = 2.0  # seconds a peer has to read our last bytes and close its side

_lingering: set[threading.Thread] = set()
_lock = threading.Lock()


def close_gracefully(sock: socket.socket, last: bytes = b"", timeout: float = DRAIN_TIMEOUT) -> None:
    """Send `last`, FIN, drain until the peer closes (or `timeout`), close; in the background."""
    t = threading.Thread(target=_linger, args=(sock, bytes(last), timeout), name="tcp-close", daemon=True)
    with _lock:
        _lingering.add(t)
    t.start()


def wait_closed(timeout: float = DRAIN_TIMEOUT) -> None:
    """Wait up to `timeout` for every connection handed to close_gracefully() to be closed."""
    end = time.monotonic() + timeout
    with _lock:
        threads = list(_lingering)
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))


def _linger(sock: socket.socket, last: bytes, timeout: float) -> None:
    end = time.monotonic() + timeout
    try:
        sock.setblocking(False)
        view = memoryview(last)
        while view.nbytes and time.monotonic() < end:
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                select.select([], [sock], [], max(0.0, end - time.monotonic()))
        sock.shutdown(socket.SHUT_WR)
        while time.monotonic() < end:
            if not select.select([sock], [], [], max(0.0, end - time.monotonic()))[0]:
                break
            try:
                if not sock.recv(65536):
                    break  # the peer closed its side: nothing unread remains
            except BlockingIOError:
                continue
    except OSError:
        pass  # the peer is gone already: nothing left to be polite to
    finally:
        sock.close()
        with _lock:
            _lingering.discard(threading.current_thread())
