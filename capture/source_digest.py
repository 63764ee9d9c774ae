"""Which build of the package's code this is, and where its compiled forms live, known without importing numba.

`source_digest()` names the package's code by the bytes of every source file and its place in the package. The
compiled forms of that code live under `compiled_dir()`, a folder named by the digest in the cache folder
($NUMBA_CACHE_DIR, by default $XDG_CACHE_HOME/xdpfeed/numba): numba's cache (capture.jit) and the book's exported
loop (multicast.book.exported). A change to any source file names a new folder, so a compiled form is never read
for code other than its own.
"""

import hashlib
import importlib.util
import os

DEFAULT_CACHE = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "xdpfeed", "numba"
)


def cache_base() -> str:
    """The cache folder: $NUMBA_CACHE_DIR, else DEFAULT_CACHE."""
    return os.environ.get("NUMBA_CACHE_DIR") or DEFAULT_CACHE


def package_folders() -> dict[str, str]:
    """The folders of the package's code by their package name: capture/, multicast/ and native/ (siblings in a
    source tree, subfolders of xdpfeed/ when installed)."""
    folders = {"capture": os.path.dirname(os.path.abspath(__file__))}
    for name in ("multicast", "native"):
        spec = importlib.util.find_spec(f"xdpfeed.{name}")
        if spec is not None and spec.submodule_search_locations:
            folders[name] = os.path.abspath(list(spec.submodule_search_locations)[0])
    return folders


_digest = None


def source_digest() -> str:
    """A digest of every .py file of the package: its path inside the package and its bytes. The same code
    gives the same digest wherever it is installed (two releases' virtualenvs, a source tree). Computed once a
    process."""
    global _digest
    if _digest is None:
        h = hashlib.sha1()
        for name, folder in sorted(package_folders().items()):
            for d, dirs, names in os.walk(folder):
                dirs[:] = sorted(x for x in dirs if x != "__pycache__")
                for n in sorted(names):
                    if n.endswith(".py"):
                        path = os.path.join(d, n)
                        h.update(f"{name}/{os.path.relpath(path, folder)}\n".encode())
                        with open(path, "rb") as f:
                            h.update(hashlib.sha1(f.read()).digest())
        _digest = h.hexdigest()[:16]
    return _digest


def compiled_dir() -> str:
    """The folder of this code's compiled forms."""
    return os.path.join(cache_base(), "src-" + source_digest())
