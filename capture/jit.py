"""numba set-up for every compiled hot path: where the on-disk cache lives, and compiled code generated
from a schema.

`cache=True` normally writes next to the source file; in a read-only site-packages that fails, so the
cache goes to $NUMBA_CACHE_DIR, defaulting to $XDG_CACHE_HOME/xdpfeed/numba (~/.cache/...). Hot-path
modules import `njit` from here so this runs before any function is compiled.

numba checks a cached function against its own file only, so code it inlined from another module (the book's
store into its apply loop, the byte-order helpers everywhere) would stay stale after that module changed. The
cache therefore lives in a folder named by a digest of every source file's place in the package and bytes
(capture.source_digest): any change to the package's code starts a fresh cache, as a fresh install would, and the
same code installed elsewhere (another release's virtualenv) finds its compiled copy there.

`load_generated(stem, source)` imports Python source generated from a schema (the ITCH and OUCH
decoders' per-type code) from a file named by its digest under the cache directory, so that numba caches
its functions like any other and a changed schema is a new module with a new cache.
"""

import hashlib
import importlib.util
import os
import sys
import tempfile

from xdpfeed.capture import source_digest as _digest

os.environ.setdefault("NUMBA_CACHE_DIR", _digest.DEFAULT_CACHE)

import numba  # noqa: E402  (must come after the environment is set)

_FOLDERS = _digest.package_folders()
GENERATED = "xdpfeed-generated"  # load_generated's modules, under the cache folder


def _package_locator() -> None:
    """numba names a cache folder after the absolute path of the source's folder; for the package's own code
    the folder is named after its place in the package instead, so the same code installed in two places (two
    releases, a rebuilt virtualenv) shares one compiled copy under the same digest."""
    from numba.core import caching

    def folders() -> dict[str, str]:  # with load_generated's folder, which lives in the cache
        return {**_FOLDERS, "generated": os.path.join(numba.config.CACHE_DIR, GENERATED)}

    def place(py_file: str) -> str | None:
        src = os.path.dirname(os.path.abspath(py_file))
        for name, folder in folders().items():
            if src == folder or src.startswith(folder + os.sep):
                rel = os.path.relpath(src, folder).replace(os.sep, "_").strip("._")
                return "_".join(filter(None, (name, rel)))
        return None

    class PackageCacheLocator(caching.UserProvidedCacheLocator):
        def __init__(self, py_func, py_file):
            super().__init__(py_func, py_file)
            self._cache_path = os.path.join(numba.config.CACHE_DIR, place(py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            if place(py_file) is None:
                return None
            return super().from_function(py_func, py_file)

    if not any(c.__name__ == "PackageCacheLocator" for c in caching.CacheImpl._locator_classes):
        caching.CacheImpl._locator_classes.insert(0, PackageCacheLocator)


def _load_cached_without_compiler_setup() -> None:
    """Loading a cached function takes numba's runtime (NRT) only; numba's Cache.load_overload first installs
    every lowering registry the compiler needs (numba.np, numba.cpython, typed containers, entry points of
    third-party extensions: about 170 ms, most of a warm start-up). Here a cache hit initializes the runtime and
    loads; a miss does the whole set-up before numba compiles, as before."""
    from numba.core import caching
    from numba.core.runtime import rtsys

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            cres = self._load_overload(sig, target_context)
            if cres is not None:
                return cres
        target_context.refresh()
        return None

    if getattr(caching.Cache.load_overload, "__qualname__", "") == "Cache.load_overload":
        caching.Cache.load_overload = load_overload


_load_cached_without_compiler_setup()
_package_locator()

# numba reads config.CACHE_DIR when it locates a cache; the environment keeps the base folder, so child
# processes compute the same folder
numba.config.CACHE_DIR = _digest.compiled_dir()

njit = numba.njit


def njit_no_rc(*args, **kw):
    """numba.njit for compiled code that allocates nothing: no NRT reference counting. Otherwise numba
    wraps uses of array arguments in atomic NRT_incref/NRT_decref calls (dozens per ITCH message in the
    order book, which its refcount pruning does not remove) that cost more than the work itself."""
    return numba.njit(*args, _nrt=False, **kw)


def load_generated(stem: str, source) -> dict:
    """The namespace of generated module source `source(cache=True)`, imported from a file under numba's
    cache directory (named by the source's digest); where that cannot be written, compiled from memory
    with `source(cache=False)` (no disk cache)."""
    src = source(cache=True)
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    folder = os.path.join(numba.config.CACHE_DIR or tempfile.gettempdir(), GENERATED)
    path = os.path.join(folder, f"{stem}_{digest}.py")
    try:
        if not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(src)
            os.replace(tmp, path)
        name = f"xdpfeed_{stem}_{digest}"
        if name in sys.modules:
            return vars(sys.modules[name])
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # numba's cache finds the module of a cached function by name
        spec.loader.exec_module(mod)
        return vars(mod)
    except OSError:
        ns: dict = {}
        exec(compile(source(cache=False), f"<xdpfeed generated {stem}>", "exec"), ns)
        return ns


__all__ = ["load_generated", "njit", "njit_no_rc"]
