"""What veth lacks, for the Ansible tests: ring sizes (-g/-G), interrupt coalescing (-c/-C) and ntuple
flow steering (-k/-K ntuple, -n/-N) of a NIC, kept in a JSON state file and printed the way ethtool 6.1
prints them. Everything else (channels -l/-L, other features) goes to the real ethtool, on the real veth.

Run inside a test host's namespace as /usr/local/sbin/ethtool through a wrapper:
    python3 fake_ethtool.py --state STATE.json -- ARGS...
"""

import json
import os
import sys

REAL = "/usr/sbin/ethtool"
RING_KEYS = {"rx": "RX", "rx-mini": "RX Mini", "rx-jumbo": "RX Jumbo", "tx": "TX"}
COALESCE_KEYS = ["rx-usecs", "rx-frames", "tx-usecs", "tx-frames"]


def new_nic() -> dict:
    """A NIC as it comes up: small rings, adaptive coalescing, ntuple off, no rules."""
    return {"max": {"rx": 8192, "tx": 8192}, "rings": {"rx": 1024, "tx": 1024},
            "coalesce": {"adaptive-rx": True, "adaptive-tx": True, "rx-usecs": 8, "rx-frames": 128,
                         "tx-usecs": 8, "tx-frames": 128},
            "ntuple": False, "rules": []}


def real(args: list[str]):
    os.execv(REAL, [REAL, *args])


def fail(msg: str, code: int = 1):
    print(msg, file=sys.stderr)
    sys.exit(code)


def pairs(args: list[str]) -> list[tuple[str, str]]:
    if len(args) % 2:
        fail("ethtool: bad command line argument(s)", 1)
    return list(zip(args[::2], args[1::2], strict=True))


def rx_queues(iface: str) -> int:
    return sum(1 for n in os.listdir(f"/sys/class/net/{iface}/queues") if n.startswith("rx-"))


def show_rings(iface: str, nic: dict) -> None:
    out = [f"Ring parameters for {iface}:", "Pre-set maximums:"]
    for section, values in (("max", nic["max"]), ("cur", nic["rings"])):
        if section == "cur":
            out.append("Current hardware settings:")
        for key, label in RING_KEYS.items():
            out.append(f"{label}:\t{values.get(key, 'n/a')}")
    print("\n".join(out + ["RX Buf Len:\t\tn/a", "CQE Size:\t\tn/a", "TX Push:\toff", "TCP data split:\tn/a"]))


def show_coalesce(iface: str, nic: dict) -> None:
    c = nic["coalesce"]
    onoff = {True: "on", False: "off"}
    out = [f"Coalesce parameters for {iface}:",
           f"Adaptive RX: {onoff[c['adaptive-rx']]}  TX: {onoff[c['adaptive-tx']]}",
           "stats-block-usecs:\tn/a", "sample-interval:\tn/a"]
    out += [f"{k}:\t{c[k]}" for k in COALESCE_KEYS]
    print("\n".join(out + ["rx-usecs-irq:\tn/a", "tx-usecs-irq:\tn/a"]))


def show_rules(iface: str, nic: dict) -> None:
    print(f"{rx_queues(iface)} RX rings available\nTotal {len(nic['rules'])} rules\n")
    for r in sorted(nic["rules"], key=lambda r: r["loc"]):
        port, port_mask = (r["dst_port"], "0x0") if r.get("dst_port") is not None else (0, "0xffff")
        print(f"Filter: {r['loc']}\n\tRule Type: UDP over IPv4\n"
              "\tSrc IP addr: 0.0.0.0 mask: 255.255.255.255\n"
              f"\tDest IP addr: {r['dst_ip']} mask: 0.0.0.0\n\tTOS: 0x0 mask: 0xff\n"
              f"\tSrc port: 0 mask: 0xffff\n\tDest port: {port} mask: {port_mask}\n"
              f"\tAction: Direct to queue {r['queue']}\n")


def add_rule(iface: str, nic: dict, args: list[str]) -> None:
    spec = dict(pairs(args))
    if not nic["ntuple"]:
        fail("rmgr: Cannot insert RX class rule: Operation not supported")
    if spec.get("flow-type") != "udp4" or "dst-ip" not in spec or "action" not in spec:
        fail("fake ethtool: only flow-type udp4 dst-ip G [dst-port P] action Q [loc L]", 1)
    queue = int(spec["action"])
    if queue >= rx_queues(iface):
        fail("rmgr: Cannot insert RX class rule: Invalid argument")
    used = {r["loc"] for r in nic["rules"]}
    loc = int(spec["loc"]) if "loc" in spec else max(set(range(1024)) - used)
    nic["rules"].append({"loc": loc, "dst_ip": spec["dst-ip"], "queue": queue,
                         "dst_port": int(spec["dst-port"]) if "dst-port" in spec else None})
    if "loc" not in spec:
        print(f"Added rule with ID {loc}")


def main(argv: list[str]) -> None:
    state_path, args = argv[2], argv[4:]
    if len(args) < 2 or args[0] not in ("-g", "-G", "-c", "-C", "-k", "-K", "-n", "-u", "-N"):
        real(args)
    flag, iface, rest = args[0], args[1], args[2:]
    if not os.path.isdir(f"/sys/class/net/{iface}"):
        fail(f"netlink error: no device matches name ({iface})", 1)
    with open(state_path) as f:
        state = json.load(f)
    nic = state.get(iface) or new_nic()  # written back only when something is set
    if flag == "-g":
        show_rings(iface, nic)
    elif flag == "-G":
        for key, value in pairs(rest):
            if key not in nic["max"]:
                fail("netlink error: Operation not supported")
            if int(value) > nic["max"][key]:
                fail(f"netlink error: requested ring size exceeds maximum ({key})")
            nic["rings"][key] = int(value)
    elif flag == "-c":
        show_coalesce(iface, nic)
    elif flag == "-C":
        for key, value in pairs(rest):
            if key not in nic["coalesce"]:
                fail("netlink error: Operation not supported")
            nic["coalesce"][key] = value == "on" if key.startswith("adaptive") else int(value)
    elif flag == "-k":
        import subprocess

        out = subprocess.run([REAL, "-k", iface], capture_output=True, text=True, check=True).stdout
        print("".join(f"ntuple-filters: {'on' if nic['ntuple'] else 'off'}\n"
                      if line.startswith("ntuple-filters:") else line for line in out.splitlines(True)), end="")
    elif flag == "-K":
        others = []
        for key, value in pairs(rest):
            if key in ("ntuple", "ntuple-filters"):
                nic["ntuple"] = value == "on"
            else:
                others += [key, value]
        if others:
            import subprocess

            subprocess.run([REAL, "-K", iface, *others], check=True)
    elif flag in ("-n", "-u"):
        show_rules(iface, nic)
    elif flag == "-N":
        add_rule(iface, nic, rest)
    else:
        fail(f"fake ethtool: {flag} is not faked")
    if flag in ("-G", "-C", "-K", "-N"):
        state[iface] = nic
        with open(state_path, "w") as f:
            json.dump(state, f, indent=1)


if __name__ == "__main__":
    main(sys.argv)
