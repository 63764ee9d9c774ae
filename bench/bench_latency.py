"""Latency by stage per packet source (root): the simulated venue in one namespace, the handler in another,
joined by a veth pair; the venue stamps its send time into every message (`simulate --stamp-time`) and the
handler measures every stage (`run --venue-time --latency-out`, docs/latency.md).

For each rate (`--rates`, default 100k, 500k and 1M msg/s) and each source on the receiving veth (`udp`: the
kernel socket, the baseline; `packet`: AF_PACKET TPACKET_V3; `afxdp`: AF_XDP in native mode; `dpdk`: DPDK's
af_packet poll-mode driver), one run of `--seconds` of traffic on line A. Reported per run: each stage's
count, p50, p90, p99, p99.9, p99.99 and max (ns) and the timestamp source, whether everything was delivered,
and the ratio of each source's p50 and p99 (venue → delivered end to end, and received → delivered) to the kernel
socket's at the same rate.

`--tune`: run everything twice, before and after the Ansible tuning this machine allows. That is the
`feed_sysctl` role, applied to this host (socket buffers, netdev backlog, busy polling, IGMP limits) with
its file written under /tmp. The other roles need what a VM on veth does not have: `nic_tuning` (ring and
coalescing sizes are not supported on veth), `irq_affinity` (veth has no IRQs), `cpu_isolation` (a reboot),
`hugepages` (no latency path here uses them). The sysctls are put back as they were at the end.

    python bench/bench_latency.py [--rates 100000,500000,1000000] [--seconds 2] [--sources udp,packet,afxdp,dpdk]
                                  [--tune]

Prints one JSON object.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
GROUP_A, GROUP_B, PORT = "239.197.3.1", "239.197.3.2", 31101
XDPFEED = [sys.executable, "-m", "xdpfeed.multicast.cli"]
TUNED = ("net.core.rmem_max", "net.core.rmem_default", "net.core.wmem_max", "net.core.netdev_max_backlog",
         "net.core.busy_poll", "net.core.busy_read", "net.ipv4.igmp_max_memberships", "net.ipv4.igmp_max_msf")


def source_uri(name: str, iface: str) -> str:
    return {"udp": f"udp:{GROUP_A}:{PORT}@{iface}",
            "packet": f"packet:{iface}?group={GROUP_A}:{PORT}&retire_ms=1&block_size=131072",  # the default 10 ms waits
            "afxdp": f"afxdp:{iface}?group={GROUP_A}:{PORT}&mode=native&frames=16384",
            "dpdk": f"dpdk:net_af_packet0,iface={iface},framecnt=16384?group={GROUP_A}:{PORT}&rxd=4096&mbufs=32767",
            }[name]


def one_run(pair, source: str, rate: int, seconds: float, tmp: str, day: str) -> dict:
    out = os.path.join(tmp, f"{source}-{rate}.hlog")
    env = dict(os.environ, XDPFEED_PASSWORD="bench123")
    replay, request = f"{pair.addr_a}:{PORT + 100}", f"{pair.addr_a}:{PORT + 101}"
    handler = subprocess.Popen(pair.exec(pair.ns_b) + XDPFEED + [
        "run", "-a", source_uri(source, pair.if_b), "--until-eos", "--idle-timeout", "30", "--venue-time",
        "--latency-out", out, "--metrics-addr", "off", "-T", "json", "-q", "--replay", replay, "--rerequest", request,
        "--user", "XDPF01"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    time.sleep(1.5)  # joined and warm before the venue publishes (it starts 0.5 s after it is up)
    venue = subprocess.Popen(pair.exec(pair.ns_a) + XDPFEED + [
        "simulate", "--day", day, "--line-a", f"{GROUP_A}:{PORT}", "--line-b", f"{GROUP_B}:{PORT + 1}",
        "--iface-addr", pair.addr_a, "--bind", pair.addr_a, "--replay-port", str(PORT + 100), "--request-port",
        str(PORT + 101), "--user", "XDPF01", "--rate", str(rate), "--stamp-time", "--start-delay", "0.5",
        "--linger", "60", "-T", "json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        cwd=REPO)
    try:
        stdout, stderr = handler.communicate(timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        handler.kill()
        stdout, stderr = handler.communicate()
    finally:
        venue.terminate()
        venue.wait(30)
    if handler.returncode not in (0, 1) or not stdout.strip():
        return {"source": source, "rate": rate, "error": stderr.strip().splitlines()[-1:]}
    from xdpfeed.multicast.latency import report

    s = json.loads(stdout)
    lat = report.summary(report.read(out))["feed"]
    return {"source": source, "rate": rate, "messages": s["delivered"], "exit": s["exit"], "lost": s["lost"],
            "recovered": s["filled_rerequest"] + s["filled_replay"],
            "timestamps": lat["timestamps"].get("A", {}).get("source"),
            "stages": {k: {p: v[p] for p in ("count", "p50", "p90", "p99", "p99.9", "p99.99", "max")}
                       for k, v in lat["stages"].items()}}


def ratios(runs: list) -> dict:
    """Each source's p50 and p99 over the kernel socket's at the same rate: venue → delivered (end to end, the
    fair comparison), and received → delivered (where each source takes its timestamp differs: a software
    stamp at recv() leaves the time in the ring out of it, docs/latency.md)."""
    base = {r["rate"]: r for r in runs if r["source"] == "udp" and "stages" in r}
    out = {}
    for r in runs:
        b = base.get(r["rate"])
        if b is None or "stages" not in r:
            continue
        mine, udp = r["stages"], b["stages"]
        out[f"{r['source']}@{r['rate']}"] = {
            f"{st}_{p}_over_udp": round(mine[st][p] / max(1, udp[st][p]), 2)
            for st in ("venue_to_delivered", "delivered") for p in ("p50", "p99")}
    return out


def sysctls() -> dict:
    return {k: open("/proc/sys/" + k.replace(".", "/")).read().strip() for k in TUNED}


def apply_feed_sysctl(tmp: str) -> None:
    """The feed_sysctl role on this host (its file under tmp), with ansible-playbook from the venv."""
    playbook = os.path.join(tmp, "tune.yml")
    with open(playbook, "w") as f:
        f.write("- hosts: localhost\n  connection: local\n  gather_facts: false\n  roles: [feed_sysctl]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible", "ansible.cfg"),
               ANSIBLE_ROLES_PATH=os.path.join(REPO, "ansible", "roles"), ANSIBLE_LOCAL_TEMP=tmp)
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    r = subprocess.run([exe, "-i", "localhost,", playbook, "-e", f"feed_sysctl_file={tmp}/60-xdpfeed.conf",
                        "-e", f"ansible_python_interpreter={sys.executable}"],
                       env=env, capture_output=True, text=True, timeout=600)
    if r.returncode:
        tail = (r.stdout + r.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"ansible-playbook feed_sysctl failed: {' | '.join(tail)}")


def restore(values: dict) -> None:
    for k, v in values.items():
        with open("/proc/sys/" + k.replace(".", "/"), "w") as f:
            f.write(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="100000,500000,1000000")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds of traffic per run")
    ap.add_argument("--sources", default="udp,packet,afxdp,dpdk")
    ap.add_argument("--tune", action="store_true", help="measure again after the feed_sysctl Ansible role")
    args = ap.parse_args()
    from xdpfeed.capture.netns import veth_pair
    from xdpfeed.multicast.exchange import synthetic

    rates = [int(r) for r in args.rates.split(",")]
    sources = args.sources.split(",")
    before = sysctls()
    result = {"bench": "latency", "seconds": args.seconds, "rates": rates, "sources": sources, "sysctl_before": before}
    with tempfile.TemporaryDirectory() as tmp, veth_pair() as pair:
        days = {}
        for rate in rates:
            days[rate] = os.path.join(tmp, f"day{rate}.itch")
            synthetic.generate_to_file(days[rate], max(20_000, int(rate * args.seconds)), seed=7)
        rounds = [("untuned", None)] + ([("tuned", apply_feed_sysctl)] if args.tune else [])
        try:
            for name, prepare in rounds:
                if prepare is not None:
                    try:
                        prepare(tmp)
                    except RuntimeError as e:
                        result["tune_error"] = str(e)
                        break
                    result["sysctl_tuned"] = sysctls()
                runs = []
                for rate in rates:
                    for source in sources:
                        runs.append(one_run(pair, source, rate, args.seconds, tmp, days[rate]))
                        print(json.dumps({k: v for k, v in runs[-1].items() if k != "stages"}), file=sys.stderr,
                              flush=True)
                result[name] = {"runs": runs, "ratios": ratios(runs)}
        finally:
            restore(before)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
