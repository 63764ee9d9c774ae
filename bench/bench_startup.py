"""Start-up benchmark: how long `xdpfeed decode`, `xdpfeed book` and `xdpfeed run` take, as whole processes, on
a small capture (a synthetic day of 2,000 messages in a few dozen packets: the time is the start-up and the first
messages; `book` also on the same day as an ITCH file, through its exported loop and through numba), warm
(numba's cache filled) and,
with --cold, with an empty cache (everything compiled). Prints one JSON object on stdout; progress on stderr.

Each of --rounds rounds runs every command once, in a rotating order, after the interpreter baselines
(`python -c pass`, `import numpy`, `import numba`) measured in the same round: the ratios are paired within a
round. Where the time goes is measured once per command, in a child process:
- imports, self time summed by top-level package (`python -X importtime`);
- numba: each cached function's load (its name and milliseconds), and whether numba's full compiler set-up
  (its lowering registries, ~170 ms) ran: a warm start-up only loads, capture/jit.py says why;
- cffi: the load of the native modules the command imports.

Python writes no bytecode cache when PYTHONDONTWRITEBYTECODE is set (as on some CI machines); every module is
then compiled from source at each start (~110 ms here). The benchmark unsets it, as an installed package has its
.pyc files.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from common import HERE, installed_env, log

REPO = os.path.dirname(HERE)
TARGET_WARM_S = 0.5

PROBE = r'''
import contextlib, io, json, sys, time
t0 = time.perf_counter()
from numba.core import base, caching
loads, setups = [], [0]
full_setup = base.BaseContext.refresh
def refresh(self):
    setups[0] += 1
    return full_setup(self)
base.BaseContext.refresh = refresh
import xdpfeed.capture.jit  # noqa: F401 (installs its Cache.load_overload; timed below)
load = caching.Cache.load_overload
def timed_load(self, sig, ctx):
    t = time.perf_counter()
    r = load(self, sig, ctx)
    name = f"{self._py_func.__module__}.{self._py_func.__qualname__}"
    loads.append([name, round((time.perf_counter() - t) * 1e3, 2), r is not None])
    return r
caching.Cache.load_overload = timed_load
from xdpfeed.multicast.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    rc = main(sys.argv[1:])
native = {m: m in sys.modules for m in ("xdpfeed.native._udp", "xdpfeed.native._afxdp", "xdpfeed.native._dpdk")}
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0, "loads": loads, "compiler_setups": setups[0],
                  "native_modules_imported": native}))
'''


def env(cache_dir: str | None = None) -> dict:
    return installed_env() if cache_dir is None else installed_env(NUMBA_CACHE_DIR=cache_dir)


def commands(capture: str, itch: str | None) -> dict:
    """The commands timed; with the same day as an ITCH file, `book` on it as well: by default through its loop
    exported ahead of time and started before numpy loads (multicast.book.early_start), and with --loop numba."""
    x = [sys.executable, "-m", "xdpfeed.multicast.cli"]
    on_itch = {} if itch is None else {"book_itch": x + ["book", itch, "--depth", "1"],
                                      "book_itch_numba_loop": x + ["book", itch, "--depth", "1", "--loop", "numba"]}
    return {
        "decode": x + ["decode", capture],
        "book": x + ["book", capture, "--depth", "1"],
        **on_itch,
        "run": x + ["run", "-a", f"pcap:{capture}", "--start", "first", "--metrics-addr", "off", "-q", "-T", "json",
                    "--no-latency"],
    }


BASELINES = {
    "python": [sys.executable, "-c", "pass"],
    "import_numpy": [sys.executable, "-c", "import numpy"],
    "import_numba": [sys.executable, "-c", "import numba"],
}


def wall(cmd: list[str], e: dict) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=e, cwd=REPO)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return dt


def imports(cmd: list[str], e: dict) -> dict:
    """Self time of imports summed by top-level package (ms), the largest first."""
    p = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, env=e, cwd=REPO)
    tot: dict[str, int] = {}
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if m:
            top = m[3].split(".")[0]
            tot[top] = tot.get(top, 0) + int(m[1])
    top = sorted(tot.items(), key=lambda kv: -kv[1])
    return {"total_ms": round(sum(tot.values()) / 1e3, 1), "by_package_ms": {k: round(v / 1e3, 1) for k, v in top[:12]}}


def probe(args: list[str], e: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=e, cwd=REPO)
    if p.returncode != 0:
        return {"error": p.stderr.strip()[-500:]}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["load_ms_total"] = round(sum(x[1] for x in r["loads"]), 1)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--capture", help="a small capture (default: a synthetic day of 2,000 messages, which `book` "
                    "also reads as an ITCH file)")
    ap.add_argument("--data-dir", default=os.path.join(HERE, ".data"))
    ap.add_argument("--cold", action="store_true", help="also once per command with an empty numba cache (slow)")
    args = ap.parse_args(argv)
    itch = None
    if args.capture is None:
        from xdpfeed.multicast.exchange import synthetic

        args.capture = os.path.join(args.data_dir, "startup_2000.pcap")
        itch = os.path.join(args.data_dir, "startup_2000.itch")
        synthetic.generate_to_file(itch, 2000, seed=1, pcap_path=args.capture)
    cmds = commands(args.capture, itch)
    e = env()
    for cmd in cmds.values():  # fill the cache and the page cache
        wall(cmd, e)
    names = list(BASELINES) + list(cmds)
    runs = {n: [] for n in names}
    for r in range(args.rounds):
        order = list(BASELINES) + [list(cmds)[(r + k) % len(cmds)] for k in range(len(cmds))]
        for n in order:
            runs[n].append(wall(BASELINES.get(n) or cmds[n], e))
        log(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {runs[n][-1]:.3f}" for n in names))
    out = {"benchmark": "startup", "capture": args.capture, "rounds": args.rounds,
           "warm_s": {n: round(statistics.median(v), 4) for n, v in runs.items()},
           "ratios": {}, "where": {}, "target_warm_s": TARGET_WARM_S}
    for c in cmds:
        for base in ("python", "import_numba"):
            paired = [a / b for a, b in zip(runs[c], runs[base], strict=True)]
            out["ratios"][f"{c}_over_{base}"] = round(statistics.median(paired), 2)
        out["where"][c] = {"imports": imports(cmds[c], e), "numba_and_native": probe(cmds[c][3:], e)}
    out["target_met"] = {c: out["warm_s"][c] <= TARGET_WARM_S for c in cmds}
    if args.cold:
        out["cold_s"] = {}
        for c, cmd in cmds.items():
            with tempfile.TemporaryDirectory() as tmp:
                out["cold_s"][c] = round(wall(cmd, env(tmp)), 2)
            log(f"cold {c}: {out['cold_s'][c]} s")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
