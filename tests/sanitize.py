"""The C of native/ built with AddressSanitizer and UndefinedBehaviorSanitizer, and tests run against it.

    python tests/sanitize.py [pytest arguments...]     # default: the tests that drive native code

Each cffi build script in native/ (build_udp.py, build_afxdp.py, and build_dpdk.py where libdpdk is
installed) is built again with `-fsanitize=address,undefined -fno-sanitize-recover=undefined` into a
scratch folder, which is put first in `xdpfeed.native.__path__` (tests/conftest.py does that when
XDPFEED_SANITIZED names the folder), so the tests load the sanitized modules instead of the installed
ones. pytest then runs under LD_PRELOAD of GCC's libasan: any out-of-bounds access, use after free or
undefined behaviour in the C aborts the run with a report. Leak checking is off (CPython frees little
at exit by design). Exit status: pytest's. `make test-sanitize` runs this.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NATIVE = os.path.join(REPO, "native")
FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g", "-O1"]
DEFAULT_TESTS = ["tests/test_udp_source.py", "tests/test_afxdp.py", "tests/test_dpdk.py", "tests/test_capture_cli.py"]


def runtime() -> str:
    """The ASan runtime to preload into the Python process."""
    path = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        raise RuntimeError("gcc's libasan.so was not found (apt-get install gcc)")
    return path


def build(out: str) -> list[str]:
    """Sanitized builds of the native modules into `out`; returns the module names built."""
    built = []
    cwd = os.getcwd()
    os.chdir(REPO)  # the build scripts name their sources relative to the repository
    try:
        for name in sorted(os.listdir(NATIVE)):
            if not (name.startswith("build_") and name.endswith(".py")):
                continue
            spec = importlib.util.spec_from_file_location(f"_sanitize_{name[:-3]}", os.path.join(NATIVE, name))
            mod = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(mod)
            except Exception as e:  # e.g. libdpdk missing: that module is not built here either
                print(f"sanitize: {name} skipped: {e}", file=sys.stderr)
                continue
            ffi = getattr(mod, "ffibuilder", None)
            if ffi is None:
                continue
            module_name, source, source_extension, kwds = ffi._assigned_source
            kwds = dict(kwds)
            for key in ("sources", "include_dirs"):  # relative to the repository; the build runs in `out`
                kwds[key] = [os.path.join(REPO, x) for x in kwds.get(key, [])]
            args = [a for a in kwds.get("extra_compile_args", []) if not a.startswith("-O")]
            kwds["extra_compile_args"] = args + FLAGS
            kwds["extra_link_args"] = list(kwds.get("extra_link_args", [])) + ["-fsanitize=address,undefined"]
            ffi._assigned_source = (module_name, source, source_extension, kwds)
            ffi.compile(tmpdir=out, verbose=False)
            built.append(module_name)
    finally:
        os.chdir(cwd)
    return built


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or DEFAULT_TESTS
    out = tempfile.mkdtemp(prefix="xdpfeed-sanitized-")
    built = build(out)
    print(f"sanitize: built {', '.join(built)} with {' '.join(FLAGS[:2])} in {out}", file=sys.stderr)
    env = dict(os.environ, XDPFEED_SANITIZED=os.path.join(out, "xdpfeed", "native"), LD_PRELOAD=runtime(),
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:verify_asan_link_order=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    args = [a for a in args if not a.endswith(".py") or os.path.exists(os.path.join(REPO, a))]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=REPO,
                          env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
