"""The Feed's warm-up loads exactly the compiled code its configuration runs: nothing is loaded (or compiled)
after the first packet, and nothing the configuration never runs is loaded at start."""

import json
import subprocess
import sys

from test_cli_run import REPO, env

from xdpfeed.multicast.exchange import synthetic

PROBE = r"""
import json, sys
from numba.core.registry import CPUDispatcher
from xdpfeed.multicast.feed.feed import Feed

def loaded():
    out = {}
    for name, mod in list(sys.modules.items()):
        if not name.startswith("xdpfeed"):
            continue
        for attr, f in vars(mod).items():
            if isinstance(f, CPUDispatcher) and f.signatures:
                out[f"{f.py_func.__module__}.{f.py_func.__qualname__}"] = sorted(str(s) for s in f.signatures)
    return out

keys = json.loads(sys.argv[1])
with Feed(**keys) as f:
    at_start = loaded()
    exit = f.run(idle_timeout=5)
    summary = f.summary()
print(json.dumps({"at_start": at_start, "after": loaded(), "exit": exit, "delivered": summary["delivered"]}))
"""


COMMAND_PROBE = r"""
import contextlib, io, json, sys
from numba.core.registry import CPUDispatcher
from xdpfeed.multicast.cli.main import main

with contextlib.redirect_stdout(io.StringIO()):
    rc = main(sys.argv[1:])
out = {}
for name, mod in list(sys.modules.items()):
    for f in vars(mod).values() if name.startswith("xdpfeed") else ():
        if isinstance(f, CPUDispatcher) and f.signatures:
            out[f.py_func.__qualname__] = len(f.signatures)
print(json.dumps({"rc": rc, "signatures": out}))
"""


def _probe(keys: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(keys)], capture_output=True, text=True, env=env(),
                       cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _day(tmp_path, n=3000):
    itch, pcap = str(tmp_path / "day.itch"), str(tmp_path / "day.pcap")
    synthetic.generate_to_file(itch, n, seed=5, pcap_path=pcap)
    return pcap


def test_a_capture_file_feed_loads_its_code_before_the_first_packet_and_nothing_else(tmp_path):
    pcap = _day(tmp_path)
    p = _probe({"line_a": f"pcap:{pcap}", "start": "first", "latency": False, "metrics": "off"})
    assert p["exit"] == "sources exhausted" and p["delivered"] == 3000
    assert p["after"] == p["at_start"]  # the run loaded nothing more
    extract = p["at_start"]["xdpfeed.multicast.wire.moldudp64.extract"]
    assert len(extract) == 1  # one kind of frames: a capture file's are as writable as a socket's
    assert not any(".latency." in k or ".glimpse." in k or "decode_numbered" in k for k in p["at_start"])


def test_consumers_and_latency_are_warmed_when_configured(tmp_path):
    pcap = _day(tmp_path)
    p = _probe({"line_a": f"pcap:{pcap}", "start": "first", "latency": True, "metrics": "off",
                "outputs": [f"parquet:{tmp_path / 'out'}"]})
    assert p["exit"] == "sources exhausted" and p["delivered"] == 3000
    assert p["after"] == p["at_start"]
    assert any("decode_numbered" in k for k in p["at_start"])  # the Parquet sink decodes its batches
    assert any(".latency." in k for k in p["at_start"])


def test_the_commands_warm_the_kind_of_input_they_read(tmp_path):
    """`decode` and `book` load their compiled loop before their clock starts for the very input they then read
    (an ITCH file's read-only mapping, a capture's writable frames): one compiled copy each, none loaded later.
    `book` on an ITCH file through numba, as --loop numba runs it (by default it runs its exported loop and loads no
    numba: tests/test_exported_book.py)."""
    itch, pcap = str(tmp_path / "day.itch"), str(tmp_path / "day.pcap")
    synthetic.generate_to_file(itch, 3000, seed=5, pcap_path=pcap)
    for argv, loop in ((["decode", itch, "-T", "summary"], "decode_file_records"),
                       (["decode", pcap, "-T", "summary"], "decode_index"),
                       (["book", itch, "--depth", "1", "--loop", "numba"], "apply_stream"),
                       (["book", pcap, "--depth", "1"], "apply_index")):
        r = subprocess.run([sys.executable, "-c", COMMAND_PROBE, *argv], capture_output=True, text=True, env=env(),
                           cwd=REPO, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        p = json.loads(r.stdout)
        assert p["rc"] == 0 and p["signatures"][loop] == 1, (argv, p)
