"""The fuzz targets (tests/fuzz_targets.py) and their runner (tests/fuzz.py): the kept corpus replays
clean, a short mutational run of every target finds nothing, and the runner itself catches what it
exists to catch (an escaping exception, a crash of the process, a hang). Long runs: see tests/fuzz.py."""

import os
import signal
import subprocess
import sys
import time

import fuzz
import fuzz_targets
import pytest


@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_seeds_and_kept_corpus_replay_clean(target):
    seeds, run, allowed = fuzz_targets.TARGETS[target]
    inputs = seeds() + fuzz.corpus(target)
    assert inputs, "a target without inputs fuzzes nothing"
    try:
        for data in inputs:
            try:
                run(data)
            except allowed:
                pass
    finally:
        fuzz_targets.cleanup()


@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_short_mutational_run_finds_nothing(target):
    r = fuzz.fuzz(target, inputs=1500, seed=20261122, timeout=60)
    assert r["failures"] == [], r["failures"]
    assert r["inputs"] == 1500 and r["signatures"] > 1  # the inputs reached more than one behaviour


def _hang_or_crash(data: bytes):
    if data.startswith(b"H"):
        while True:
            time.sleep(0.01)
    if data.startswith(b"C"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if data.startswith(b"E"):
        raise KeyError("escaped")
    return (len(data) > 3,)


@pytest.mark.parametrize("first, kind", [(b"H", "hang"), (b"C", "crash"), (b"E", "fail")])
def test_runner_saves_the_input_of_a_hang_a_crash_and_an_escaping_exception(tmp_path, monkeypatch, first, kind):
    monkeypatch.setattr(fuzz, "CORPUS", str(tmp_path))
    monkeypatch.setitem(fuzz_targets.TARGETS, "selftest", (lambda: [first + b"xyz"], _hang_or_crash, ()))
    r = fuzz.fuzz("selftest", inputs=10, seed=1, timeout=2)
    (f,) = r["failures"][:1]
    assert os.path.basename(f["input"]).startswith(kind + "-")
    with open(f["input"], "rb") as fh:
        assert fh.read() == first + b"xyz"


@pytest.mark.parametrize("target", ["ouch50", "pcap"])
def test_the_same_targets_run_under_atheris(target):
    """libFuzzer (atheris) on a target: runs clean and stops by itself after the runs asked for."""
    pytest.importorskip("atheris", reason="atheris is a test dependency (pip install -e .[test])")
    r = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "fuzz.py"), target, "--engine",
                        "atheris", "--", "-runs=1500", "-timeout=30"], capture_output=True, text=True, timeout=600,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 1500 runs" in r.stderr and "Uncaught Python exception" not in r.stderr
