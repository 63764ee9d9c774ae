"""`xdpfeed decode`: output formats, filters, counts and one-line errors with their exit codes."""

import csv
import gzip
import io
import json
import os
import struct
import subprocess
import sys

import pytest

from xdpfeed.multicast.cli.main import main

from conftest import PCAPS
from helpers import frame, mold, write_pcap

MULTI = os.path.join(PCAPS, "omi", "itch50", "Multiple.Packets.pcap")


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_jsonl_keys_in_order(capsys):
    rc, out, err = run(capsys, "decode", MULTI, "-c", "2")
    lines = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and err == "" and len(lines) == 2
    assert list(lines[1]) == ["session", "seq", "type", "stock_locate", "tracking_number", "timestamp",
                              "order_reference_number", "buy_sell_indicator", "shares", "stock", "price"]


def test_type_filter_and_count(capsys):
    rc, out, _ = run(capsys, "decode", MULTI, "--type", "F,D")
    assert rc == 0 and [json.loads(x)["type"] for x in out.splitlines()] == ["D", "F", "F"]
    rc, out, _ = run(capsys, "decode", MULTI, "--type", "A", "-c", "5")
    assert [json.loads(x)["seq"] for x in out.splitlines()] == [19009117, 19009118, 19009119, 19009120, 19009121]


def test_csv(capsys):
    rc, out, _ = run(capsys, "decode", MULTI, "-T", "csv", "--type", "D,A")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and len(rows) == 37
    assert rows[0]["type"] == "D" and rows[0]["order_reference_number"] == "23485802" and rows[0]["stock"] == ""
    assert rows[1]["stock"] == "META" and rows[1]["price"] == "805200"


def test_summary(capsys):
    rc, out, _ = run(capsys, "decode", MULTI, "-T", "summary")
    assert rc == 0
    assert "packets: 2  heartbeats: 0" in out and "decoded: 39" in out
    assert "000010059B  seq 14764496..19009154  messages 39" in out
    assert " A  Add Order " in out and out.rstrip().splitlines()[-1].startswith("rate: ")


def test_summary_respects_count(capsys):
    rc, out, _ = run(capsys, "decode", MULTI, "-T", "summary", "-c", "10")
    assert "printed: 10" in out


@pytest.mark.parametrize("argv, needle", [
    (["decode", "/no/such/file.pcap"], "No such file or directory"),
    (["decode", __file__], "unknown format"),
    (["decode", MULTI, "-T", "xml"], "invalid choice"),
    (["decode", MULTI, "--type", "A,Z"], "unknown ITCH message type 'Z'"),
    (["decode", MULTI, "--group", "233.54.12.111"], "expected IPV4:PORT"),
    (["decode", MULTI, "-c", "0"], "COUNT must be a positive integer"),
    (["frobnicate"], "invalid choice"),
])
def test_errors_are_one_line_exit_2(capsys, argv, needle):
    try:
        rc = main(argv)  # input errors return 2
    except SystemExit as e:  # argument errors leave through argparse
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_truncated_capture_prints_what_came_before_then_fails(tmp_path, capsys):
    p = write_pcap(tmp_path / "t.pcap", [frame(mold(b"S1", 1, [b"D" + bytes(18)])) for _ in range(3)])
    data = open(p, "rb").read()
    (tmp_path / "cut.pcap").write_bytes(data[:-5])
    rc, out, err = run(capsys, "decode", str(tmp_path / "cut.pcap"))
    assert rc == 1 and len(out.splitlines()) == 2
    last_record = len(data) - (16 + len(frame(mold(b"S1", 1, [b"D" + bytes(18)]))))
    assert f"byte offset {last_record}" in err and err.count("\n") == 1


def test_skipped_frames_are_reported(tmp_path, capsys):
    p = write_pcap(tmp_path / "m.pcap", [frame(mold(b"S1", 1, [b"D" + bytes(18)])[:-1]),
                                         frame(mold(b"S1", 1, [b"D" + bytes(18)]))])
    rc, out, err = run(capsys, "decode", str(p))
    assert rc == 0 and len(out.splitlines()) == 1 and "skipped: 1 malformed packets" in err


def itch_file(msgs):
    return b"".join(struct.pack(">H", len(m)) + m for m in msgs)


def test_itch_file_plain_and_gzip(tmp_path, capsys):
    s = b"S" + struct.pack(">HH", 0, 0) + (1).to_bytes(6, "big") + b"O"
    a = b"A" + struct.pack(">HH", 3, 0) + (2).to_bytes(6, "big") + struct.pack(">Qc", 42, b"S") + \
        struct.pack(">I", 300) + b"AAPL    " + struct.pack(">I", 1_500_000)
    data = itch_file([s, a] * 3)
    (tmp_path / "day.itch").write_bytes(data)
    with gzip.open(tmp_path / "day.itch.gz", "wb") as g:
        g.write(data)
    for name in ("day.itch", "day.itch.gz"):
        rc, out, _ = run(capsys, "decode", str(tmp_path / name))
        lines = [json.loads(x) for x in out.splitlines()]
        assert rc == 0 and len(lines) == 6
        assert lines[1] == {"type": "A", "stock_locate": 3, "tracking_number": 0, "timestamp": 2,
                            "order_reference_number": 42, "buy_sell_indicator": "S", "shares": 300,
                            "stock": "AAPL", "price": 1_500_000}
    (tmp_path / "cut.itch").write_bytes(data[:-4])
    rc, out, err = run(capsys, "decode", str(tmp_path / "cut.itch"))
    cut_at = len(itch_file([s, a] * 2 + [s]))  # the sixth record starts here
    assert rc == 1 and len(out.splitlines()) == 5 and f"byte offset {cut_at}" in err


def test_a_zero_length_record_ends_the_session_of_an_itch_file(tmp_path, capsys, caplog):
    """NASDAQ's BinaryFILE format ends a session with a zero-length record: decoding stops there, the summary
    says so, and whatever follows is counted and named in a warning, never decoded; plain and gzip alike.
    A zero-length record as the file's last is a clean end."""
    s = b"S" + struct.pack(">HH", 0, 0) + (1).to_bytes(6, "big") + b"O"
    c = b"S" + struct.pack(">HH", 0, 0) + (9).to_bytes(6, "big") + b"C"
    after = itch_file([s, s])  # 28 bytes the session does not hold
    data = itch_file([s, c]) + b"\x00\x00" + after
    (tmp_path / "eos.itch").write_bytes(data)
    with gzip.open(tmp_path / "eos.itch.gz", "wb") as g:
        g.write(data)
    for name in ("eos.itch", "eos.itch.gz"):
        caplog.clear()
        rc, out, _ = run(capsys, "decode", str(tmp_path / name))
        assert rc == 0 and [json.loads(x)["event_code"] for x in out.splitlines()] == ["O", "C"]
        assert f"end of session (a zero-length record) at byte 28: the {len(after)} bytes after it are not read" \
            in caplog.text
        rc, out, _ = run(capsys, "decode", str(tmp_path / name), "-T", "summary")
        assert f"end of session (zero-length record): yes; bytes after it, not read: {len(after)}" in out
        assert "messages: 2  decoded: 2" in out
    (tmp_path / "clean.itch").write_bytes(itch_file([s, c]) + b"\x00\x00")
    caplog.clear()
    rc, out, _ = run(capsys, "decode", str(tmp_path / "clean.itch"))
    assert rc == 0 and len(out.splitlines()) == 2 and "not read" not in caplog.text


def test_itch_file_rejects_group(tmp_path, capsys):
    (tmp_path / "d.itch").write_bytes(itch_file([b"S" + bytes(10) + b"O"]))
    rc, _, err = run(capsys, "decode", str(tmp_path / "d.itch"), "--group", "233.54.12.111:26477")
    assert rc == 2 and "--group applies to captures" in err


def test_console_script_and_broken_pipe():
    """The installed entry point runs; a reader that goes away early causes no traceback."""
    exe = os.path.join(os.path.dirname(sys.executable), "xdpfeed")
    p = subprocess.run([exe, "decode", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "-T {jsonl,csv,summary}" in p.stdout
    p = subprocess.run(f"{exe} decode {MULTI} | head -c 10", shell=True, capture_output=True, text=True)
    assert len(p.stdout) == 10 and "Traceback" not in p.stderr


QUICK = """
import atexit, sys
from xdpfeed.multicast.cli.main import cli
class Finalized:
    def __del__(self):
        sys.stderr.write("finalized\\n")
keep = Finalized()  # a module global: finalized when the interpreter is torn down
atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
sys.argv = ["xdpfeed", *sys.argv[1:]]
cli()
"""


@pytest.mark.parametrize("command, quick", [("decode", True), ("book", True), ("orders", False)])
def test_batch_commands_end_without_tearing_the_interpreter_down(tmp_path, capsys, command, quick):
    """`book` and `decode` end with os._exit after the atexit handlers and a flush: every line printed, the exit
    status kept (1: damaged input), no object finalized; other commands exit normally."""
    p = write_pcap(tmp_path / "t.pcap", [frame(mold(b"S1", 1, [b"D" + bytes(18)])) for _ in range(3)])
    data = open(p, "rb").read()
    (tmp_path / "cut.pcap").write_bytes(data[:-5])
    argv = [command, str(tmp_path / "cut.pcap")]
    r = subprocess.run([sys.executable, "-c", QUICK, *argv], capture_output=True, text=True, timeout=120)
    rc, out, err = run(capsys, *argv)  # the same command in this process: the reference
    assert r.returncode == rc == (1 if quick else 2) and r.stdout == out and (out != "") == quick
    assert r.stderr.startswith(err) and err.startswith(f"xdpfeed {command}: error: ")
    assert "atexit ran" in r.stderr and ("finalized" in r.stderr) == (not quick), r.stderr


def test_decode_shows_progress_on_a_terminal_only(tmp_path):
    """On a terminal, stderr gets a progress line rewritten in place; on a pipe, nothing extra."""
    import os
    import pty
    import subprocess
    import sys

    from xdpfeed.multicast.exchange import synthetic

    pcap = tmp_path / "day.pcap"
    synthetic.generate_to_file(str(tmp_path / "day.itch"), 20_000, seed=2, pcap_path=str(pcap))
    cmd = [sys.executable, "-m", "xdpfeed.multicast.cli", "decode", str(pcap), "-T", "summary"]
    master, slave = pty.openpty()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=slave, timeout=120)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert r.returncode == 0
    assert b"\rxdpfeed decode: " in seen and b"messages" in seen
    piped = subprocess.run(cmd, capture_output=True, timeout=120)
    assert piped.returncode == 0 and b"xdpfeed decode:" not in piped.stderr


def test_debug_shows_the_traceback_that_is_otherwise_one_line(tmp_path):
    bad = tmp_path / "feed.toml"
    bad.write_bytes(b"[feed]\nname = '\xff\xfe'\n")  # not UTF-8: found by the config fuzz target
    for extra, traceback in (([], False), (["--debug"], True)):
        r = subprocess.run([sys.executable, "-m", "xdpfeed.multicast.cli", *extra, "decode", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 or traceback
        assert ("Traceback" in r.stderr) == traceback, r.stderr
        if not traceback:
            assert r.stderr.count("\n") == 1 and "Is a directory" in r.stderr
    r = subprocess.run([sys.executable, "-m", "xdpfeed.multicast.cli", "run", "-c", str(bad), "-a",
                        "udp:239.1.1.1:5000@lo"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not UTF-8 text (byte 15)" in r.stderr and "Traceback" not in r.stderr


def test_source_option_is_the_same_as_input(capsys):
    rc, by_input, _ = run(capsys, "decode", MULTI)
    rc2, by_source, _ = run(capsys, "decode", "--source", f"pcap:{MULTI}")
    assert rc == rc2 == 0 and by_input == by_source and by_input
    for argv in (["decode"], ["decode", MULTI, "--source", f"pcap:{MULTI}"], ["book"]):
        assert main(argv) == 2
        assert "give INPUT or --source URI" in capsys.readouterr().err
