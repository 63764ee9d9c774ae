"""Mutational fuzzer for the targets in tests/fuzz_targets.py, guided by what the parsers count.

    python tests/fuzz.py TARGET [--inputs 10000000] [--seconds S] [--seed N] [--timeout 10] [--save]
    python tests/fuzz.py all --inputs 10000000        # every target, one after the other
    python tests/fuzz.py TARGET --engine atheris [-- LIBFUZZER_FLAGS]   # e.g. -- -runs=10000000 -timeout=10

Inputs start from the target's seeds (real and generated captures, configs) plus the kept corpus in
tests/fuzz_corpus/TARGET/, and are mutated: bit flips, interesting bytes (0, 0x7F, 0x80, 0xFF) and
16-bit values at random places, truncation, chunks deleted, repeated or spliced from another input,
random tails. An input whose signature (the set of non-zero counters and the paths it took) was not
seen before joins the pool, so the fuzzer works its way into new behaviour of the compiled code that
coverage tools cannot see into.

The inputs run in a child process; before each call the input is copied into shared memory, so when
the child dies (a crash in native code) or stops making progress for --timeout seconds (a hang) the
parent still has the input, saves it under tests/fuzz_corpus/TARGET/crash-* or hang-* and fails.
An exception that is not one of the target's documented errors, or a broken invariant, is a failure
too (saved the same way). With --save, new-signature inputs are added to the corpus (at most 30 per
target). Compiled code runs with NUMBA_BOUNDSCHECK=1, so an out-of-bounds read is an IndexError.
Prints one JSON object per target: inputs, seconds, inputs/s, signatures, failures; exit 1 on any.

`--engine atheris` runs the same target under atheris (libFuzzer with coverage of the Python code;
the compiled code is not instrumented, which is why the default engine steers by counters instead).
The seeds and the kept corpus are copied into a scratch corpus; crashes, timeouts and escaping
exceptions are written by libFuzzer as tests/fuzz_corpus/TARGET/crash-*, timeout-*, and replayed by
`make test` like the others.
"""

import argparse
import faulthandler
import hashlib
import json
import mmap
import multiprocessing as mp
import os
import random
import struct
import sys
import time
import traceback

os.environ.setdefault("NUMBA_BOUNDSCHECK", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "xdpfeed",
    "numba-boundscheck"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fuzz_targets  # noqa: E402

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_corpus")
MAX_INPUT = 1 << 16
MAX_KEPT = 30
KEEP_BYTES = 4 << 10  # larger inputs are not kept in the repository
INTERESTING8 = (0, 1, 0x7F, 0x80, 0xFF)
INTERESTING16 = (0, 1, 0x7FFF, 0x8000, 0xFFFF, 0xFFFE)


def corpus(target: str) -> list[bytes]:
    """The kept inputs of a target (crash-*/hang-* included: they must stay fixed)."""
    folder = os.path.join(CORPUS, target)
    if not os.path.isdir(folder):
        return []
    out = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out.append(f.read())
    return out


def save(target: str, data: bytes, kind: str) -> str:
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{kind}-{hashlib.sha1(data).hexdigest()[:16]}")
    with open(path, "wb") as f:
        f.write(data)
    return path


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        op = rng.randrange(9)
        n = len(b)
        if op == 0 and n:  # flip a bit
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # an interesting byte
            b[rng.randrange(n)] = rng.choice(INTERESTING8)
        elif op == 2 and n >= 2:  # an interesting 16-bit value (lengths and counts are mostly 16-bit)
            i = rng.randrange(n - 1)
            b[i : i + 2] = struct.pack(">H", rng.choice(INTERESTING16) if rng.random() < 0.7 else rng.randrange(65536))
        elif op == 3 and n:  # truncate
            del b[rng.randrange(n + 1) :]
        elif op == 4 and n:  # delete a chunk
            i = rng.randrange(n)
            del b[i : i + rng.randrange(1, 64)]
        elif op == 5 and n:  # repeat a chunk
            i = rng.randrange(n)
            chunk = b[i : i + rng.randrange(1, 64)]
            b[i:i] = chunk
        elif op == 6 and pool:  # splice another input in
            other = rng.choice(pool)
            if other:
                i, j = rng.randrange(len(other)), rng.randrange(n + 1)
                b[j:] = other[i:]
        elif op == 7:  # random tail
            b += rng.randbytes(rng.randrange(1, 32))
        elif n:  # a random byte
            b[rng.randrange(n)] = rng.randrange(256)
    return bytes(b[:MAX_INPUT])


def _child(target: str, inputs: int, seconds: float, seed: int, shm, progress, result_q, keep: bool) -> None:
    faulthandler.disable()  # a crash is reported by the parent, with the input that caused it
    seeds_fn, run, allowed = fuzz_targets.TARGETS[target]
    rng = random.Random(seed)
    pool = [s[:MAX_INPUT] for s in seeds_fn() + corpus(target)] or [b""]
    n_seeds = len(pool)
    seen, kept, failures = set(), [], []
    t0 = time.monotonic()
    i = 0
    try:
        for data in pool:  # every seed and kept input once, unmutated
            _one(target, run, allowed, data, shm, seen, kept, failures, keep)
        while i < inputs and time.monotonic() - t0 < seconds and len(failures) < 5:
            data = mutate(rng, rng.choice(pool if rng.random() < 0.8 or not kept else kept), pool)
            if _one(target, run, allowed, data, shm, seen, kept, failures, keep):
                pool.append(data)
            i += 1
            if i & 255 == 0:
                progress.value = i
    finally:
        fuzz_targets.cleanup()
    result_q.put({"inputs": i, "seeds": n_seeds, "signatures": len(seen), "failures": failures,
                  "kept": len(kept)})


def _one(target, run, allowed, data, shm, seen, kept, failures, keep) -> bool:
    shm[:4] = struct.pack("<I", len(data))
    shm[4 : 4 + len(data)] = data
    try:
        sig = run(data)
    except allowed as e:
        sig = ("error", type(e).__name__)
    except Exception as e:  # a bug: an exception that is not a documented error, or a broken invariant
        path = save(target, data, "fail")
        failures.append({"input": path, "error": f"{type(e).__name__}: {e}",
                         "where": traceback.format_exc().strip().splitlines()[-3:]})
        return False
    if sig in seen:
        return False
    seen.add(sig)
    if keep and len(kept) < MAX_KEPT and len(data) <= KEEP_BYTES:
        save(target, data, "kept")
    kept.append(data)
    return True


def fuzz(target: str, inputs: int, seconds: float = float("inf"), seed: int = 1, timeout: float = 10.0,
         keep: bool = False) -> dict:
    """Run one target in a child process; the summary (failures include crashes and hangs)."""
    ctx = mp.get_context("fork")
    shm = mmap.mmap(-1, 4 + MAX_INPUT)
    progress = ctx.Value("q", 0, lock=False)
    result_q = ctx.Queue()
    t0 = time.monotonic()
    p = ctx.Process(target=_child, args=(target, inputs, seconds, seed, shm, progress, result_q, keep), daemon=True)
    p.start()
    last, last_t, result = -1, time.monotonic(), None
    while result is None:
        try:
            result = result_q.get(timeout=0.5)
            break
        except Exception:  # queue.Empty
            pass
        if not p.is_alive():
            break
        if progress.value != last:
            last, last_t = progress.value, time.monotonic()
        elif time.monotonic() - last_t > timeout:
            p.kill()
            break
    p.join(5)
    if result is None:  # died or hung: the input being run is in shared memory
        n = struct.unpack("<I", shm[:4])[0]
        data = bytes(shm[4 : 4 + n])
        kind = "hang" if p.exitcode in (None, -9) and progress.value == last else "crash"
        result = {"inputs": progress.value, "signatures": None, "kept": None,
                  "failures": [{"input": save(target, data, kind), "error": f"{kind} (exit code {p.exitcode})"}]}
    seconds_taken = time.monotonic() - t0
    result.update(target=target, seconds=round(seconds_taken, 2),
                  inputs_per_s=round(result["inputs"] / max(seconds_taken, 1e-9)))
    return result


def instrument_python(atheris) -> int:
    """Coverage for the plain Python functions and methods of xdpfeed and the targets. Not
    atheris.instrument_all(): numba compiles functions from their bytecode, and instrumented bytecode
    is not something it can compile. Returns how many were instrumented."""
    import types

    n = 0
    for name, mod in list(sys.modules.items()):
        if not (name.startswith("xdpfeed.") or name == "fuzz_targets") or mod is None:
            continue
        for holder in [mod] + [v for v in vars(mod).values() if isinstance(v, type) and v.__module__ == name]:
            for key, obj in list(vars(holder).items()):
                if isinstance(obj, types.FunctionType) and obj.__module__ == name:
                    setattr(holder, key, atheris.instrument_func(obj))
                    n += 1
    return n


def _run_each(run, inputs: list[bytes]) -> None:
    for data in inputs:
        try:
            run(data)
        except Exception:  # noqa: BLE001 (the fuzzing run reports what an input does; this run only compiles)
            pass
    fuzz_targets.cleanup()


def compile_in_a_child(run, seeds: list[bytes]) -> None:
    """Run a target's `run` over its seeds once in a child process, so that numba compiles the code they reach there
    and caches it, and libFuzzer's process loads it from the cache: compiling there made its first inputs take about
    a second each, which libFuzzer writes out as slow units (into tests/fuzz_corpus/) and, past -timeout, would
    report as hangs. What the seeds do is libFuzzer's to report."""
    p = mp.get_context("fork").Process(target=_run_each, args=(run, seeds))
    p.start()
    p.join()


def run_atheris(target: str, libfuzzer_args: list[str]) -> int:
    """libFuzzer via atheris on one target, in a forked child; its exit status. In a child because libFuzzer's
    -rss_limit_mb (2 GB by default) reads the process's peak RSS from getrusage, and a process started by exec
    inherits its parent's: started from a pytest worker of 2.1 GB, libFuzzer stopped the capture target as out of
    memory after a few hundred inputs (a clean checkout's make test, twice), where its inputs take 130 MB. A forked
    process counts from its own start."""
    import shutil
    import tempfile

    import atheris

    seeds_fn, run, allowed = fuzz_targets.TARGETS[target]
    work = tempfile.mkdtemp(prefix=f"xdpfeed-atheris-{target}-")
    seeds = [data[:MAX_INPUT] for data in seeds_fn() + corpus(target)]
    for i, data in enumerate(seeds):
        with open(os.path.join(work, f"seed-{i}"), "wb") as f:
            f.write(data)
    out = os.path.join(CORPUS, target)
    os.makedirs(out, exist_ok=True)

    def one(data: bytes) -> None:
        try:
            run(data)
        except allowed:
            pass

    compile_in_a_child(run, seeds)
    args = [sys.argv[0], f"-artifact_prefix={out}/", f"-max_len={MAX_INPUT}", *libfuzzer_args, work]
    pid = os.fork()
    if pid == 0:  # libFuzzer exits the process when it stops
        code = 1
        try:
            instrument_python(atheris)
            atheris.Setup(args, one)
            atheris.Fuzz()
            code = 0
        except BaseException:  # noqa: BLE001 (reported here: the child must not go on as the parent)
            traceback.print_exc()
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        fuzz_targets.cleanup()
    return os.waitstatus_to_exitcode(status)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("target", choices=(*fuzz_targets.TARGETS, "all"))
    ap.add_argument("--engine", choices=("mutate", "atheris"), default="mutate",
                    help="mutate: this file's counter-guided fuzzer (default); atheris: libFuzzer")
    ap.add_argument("--inputs", type=int, default=10_000_000, help="mutated inputs per target (default 10M)")
    ap.add_argument("--seconds", type=float, default=float("inf"), help="stop a target after this long")
    ap.add_argument("--seed", type=int, default=int(time.time()), help="random seed (default: the time)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds without progress that count as a hang")
    ap.add_argument("--save", action="store_true", help="add new-signature inputs to tests/fuzz_corpus/")
    args = ap.parse_args(argv)
    if args.engine == "atheris":
        if args.target == "all":
            ap.error("atheris runs one target per process")
        return run_atheris(args.target, extra)
    bad = 0
    for t in fuzz_targets.TARGETS if args.target == "all" else (args.target,):
        r = fuzz(t, args.inputs, args.seconds, args.seed, args.timeout, args.save)
        r["seed"] = args.seed
        print(json.dumps(r), flush=True)
        bad += bool(r["failures"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
