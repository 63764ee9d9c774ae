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


def installed_env(**extra: str) -> dict:
    """This environment as an installed package runs in: Python writes no bytecode cache when
    PYTHONDONTWRITEBYTECODE is set (as on some CI machines), and every module of ours is then compiled
    from source at each start (~110 ms of a small `xdpfeed book`); an installed package has its .pyc files.
    extra: variables to set as well."""
    e = dict(os.environ)
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    e.update(extra)
    return e


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


def synthetic_pcap(messages: int, data_dir: str) -> str:
    """The synthetic day of MESSAGES as bench/.data/day_N_1.{itch,pcap} (made once), with compiled code loaded."""
    from xdpfeed.multicast.exchange import synthetic
    from xdpfeed.multicast.feed.warmup import warm_up

    base = os.path.join(data_dir, f"day_{messages}_1")
    synthetic.generate_to_file(base + ".itch", messages, seed=1, pcap_path=base + ".pcap")
    warm_up()
    return base + ".pcap"


def interleaved(kinds, repeat: int, messages: int, one_pass) -> dict:
    """Seconds of one_pass(kind) -> (seconds, delivered) for every kind, once untimed, then REPEAT rounds
    that interleave the kinds so the machine's drift falls on all of them alike; summaries by kind."""
    for kind in kinds:  # compile, page cache
        one_pass(kind)
    runs = {k: [] for k in kinds}
    for i in range(repeat):
        for kind in kinds:
            dt, delivered = one_pass(kind)
            if delivered != messages:
                raise SystemExit(f"{kind}: delivered {delivered} of {messages}")
            runs[kind].append(dt)
        log(f"run {i + 1}/{repeat}: " + ", ".join(f"{k} {messages / runs[k][-1] / 1e6:.2f}M msg/s" for k in kinds))
    return {k: summary(v, messages) for k, v in runs.items()}


def replay_arguments(doc: str, messages: int, repeat: int):
    """The parser of a replay benchmark: --messages, --repeat, --data-dir (add more before parsing)."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--messages", type=int, default=messages)
    p.add_argument("--repeat", type=int, default=repeat)
    p.add_argument("--data-dir", default=os.path.join(HERE, ".data"))
    return p
