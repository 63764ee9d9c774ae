"""What every benchmark script shares: stderr progress, machine description, medians, building C."""

import os
import platform
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd: list[str], env=None) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout


def machine(cc: str) -> dict:
    """CPU, core count, interpreter and library versions, compiler, kernel, huge-page settings."""
    import llvmlite
    import numba

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        ccv = run([cc, "--version"]).splitlines()[0]
    except (OSError, subprocess.CalledProcessError):
        ccv = None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            thp = f.read().strip()
    except OSError:
        thp = None
    try:
        madvise = bool(np._core.multiarray._get_madvise_hugepage())
    except AttributeError:
        madvise = None
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "llvmlite": llvmlite.__version__, "cc": ccv, "kernel": platform.release(),
            "transparent_hugepage": thp, "numpy_madvise_hugepage": madvise}


def summary(runs_s: list[float], messages: int) -> dict:
    """Median of the timed runs as seconds, messages/s and ns/message, plus every run."""
    med = statistics.median(runs_s)
    return {"messages": messages, "median_s": med, "msgs_per_s": messages / med, "ns_per_msg": med * 1e9 / messages,
            "runs_s": [round(r, 6) for r in runs_s]}


def build_c(cc: str, outdir: str, name: str) -> str:
    """Compile bench/NAME.c with the system compiler, as in every run; returns the executable."""
    exe = os.path.join(outdir, name)
    cmd = [cc, "-O3", "-march=native", "-I", HERE, "-o", exe, os.path.join(HERE, name + ".c")]
    log("C: " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    return exe
