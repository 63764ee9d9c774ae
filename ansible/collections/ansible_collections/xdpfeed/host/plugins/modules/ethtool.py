#!/usr/bin/python
# Apache-2.0 (see the xdpfeed repository)
"""xdpfeed.host.ethtool: one NIC's ring sizes, interrupt coalescing, channels, offloads and ntuple
flow-steering rules, read back with ethtool and changed only where they differ (check mode and --diff)."""

import re

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: ethtool
short_description: Ring sizes, coalescing, channels, offloads and ntuple rules of one NIC
description:
  - Reads the NIC's settings with C(ethtool -l/-g/-c/-k/-n), compares them with the ones asked for, and
    runs C(ethtool -L/-G/-C/-K/-N) only for what differs, in that order (channels before flow rules
    that name a queue, the ntuple feature before the rules).
  - A setting the driver does not have (C(n/a)), a fixed feature, or a value above the NIC's maximum
    fails with a message naming it.
options:
  name:
    description: Interface name.
    type: str
    required: true
  channels:
    description: "C(ethtool -L) settings, e.g. C({combined: 4}) or C({rx: 2, tx: 2})."
    type: dict
    default: {}
  rings:
    description: "C(ethtool -G) settings, e.g. C({rx: 4096, tx: 1024})."
    type: dict
    default: {}
  coalesce:
    description: "C(ethtool -C) settings, e.g. C({adaptive-rx: false, rx-usecs: 0}); booleans are on/off."
    type: dict
    default: {}
  features:
    description: "C(ethtool -K) settings by short or long name, e.g. C({gro: false, lro: false, ntuple: true})."
    type: dict
    default: {}
  flows:
    description:
      - ntuple rules steering UDP over IPv4 to a queue. A rule is added unless one with the same
        destination (address, and port when given) and queue exists already.
    type: list
    elements: dict
    default: []
    suboptions:
      dst_ip:
        description: Destination (multicast group) address.
        type: str
        required: true
      dst_port:
        description: Destination UDP port; omitted, any port.
        type: int
      queue:
        description: Receive queue the flow goes to.
        type: int
        required: true
      loc:
        description: Rule location, for drivers that cannot choose one.
        type: int
  ethtool:
    description: The ethtool program.
    type: str
    default: ethtool
author: xdpfeed
"""

EXAMPLES = r"""
- name: Tune the feed NIC
  xdpfeed.host.ethtool:
    name: eth1
    channels: {combined: 4}
    rings: {rx: 4096}
    coalesce: {adaptive-rx: false, rx-usecs: 0}
    features: {gro: false, lro: false, ntuple: true}
    flows:
      - {dst_ip: 233.54.12.111, dst_port: 26477, queue: 3}
"""

RETURN = r"""
commands:
  description: The ethtool argument lists run (or, in check mode, that would run).
  type: list
  returned: always
state:
  description: The settings read before any change, by section.
  type: dict
  returned: always
"""

# ethtool -k prints long names; -K takes either. Short names users know, mapped to the long ones.
FEATURE_ALIASES = {
    "gro": "generic-receive-offload", "lro": "large-receive-offload", "ntuple": "ntuple-filters",
    "rxhash": "receive-hashing", "tso": "tcp-segmentation-offload", "gso": "generic-segmentation-offload",
    "sg": "scatter-gather", "rx": "rx-checksumming", "tx": "tx-checksumming", "rxvlan": "rx-vlan-offload",
    "txvlan": "tx-vlan-offload", "rx-gro": "generic-receive-offload",
}
# ethtool -g / -l print these labels; -G / -L take the keys.
RING_LABELS = {"RX": "rx", "RX Mini": "rx-mini", "RX Jumbo": "rx-jumbo", "TX": "tx"}
CHANNEL_LABELS = {"RX": "rx", "TX": "tx", "Other": "other", "Combined": "combined"}


def _number(text):
    text = text.strip()
    return int(text) if text.isdigit() else None  # "n/a": the driver has no such setting


def parse_maxima_current(out, labels):
    """ethtool -g / -l: ({key: maximum}, {key: current}); None where the driver prints n/a."""
    maxima, current, section = {}, {}, None
    for line in out.splitlines():
        if line.startswith("Pre-set maximums"):
            section = maxima
        elif line.startswith("Current hardware settings"):
            section = current
        elif section is not None and ":" in line:
            label, _, value = line.partition(":")
            if label.strip() in labels:
                section[labels[label.strip()]] = _number(value)
    return maxima, current


def parse_coalesce(out):
    """ethtool -c: {key: int, bool or None}."""
    values = {}
    for line in out.splitlines():
        m = re.match(r"Adaptive RX:\s*(\w+)\s+TX:\s*(\w+)", line)
        if m:
            values["adaptive-rx"] = {"on": True, "off": False}.get(m.group(1))
            values["adaptive-tx"] = {"on": True, "off": False}.get(m.group(2))
            continue
        m = re.match(r"([a-z][a-z0-9-]+):\s+(\S+)\s*$", line)
        if m:
            values[m.group(1)] = _number(m.group(2))
    return values


def parse_features(out):
    """ethtool -k: {long name: (on, fixed)}."""
    feats = {}
    for line in out.splitlines():
        m = re.match(r"\s*([a-z0-9-]+): (on|off)( \[fixed\])?", line)
        if m:
            feats[m.group(1)] = (m.group(2) == "on", bool(m.group(3)))
    return feats


def parse_rules(out):
    """ethtool -n: [{loc, type, dst_ip, dst_ip_mask, dst_port, dst_port_mask, src_ip_mask, queue}]."""
    rules, rule = [], None
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"Filter: (\d+)", line)
        if m:
            rule = {"loc": int(m.group(1))}
            rules.append(rule)
            continue
        if rule is None:
            continue
        m = re.match(r"Rule Type: (.*)", line)
        if m:
            rule["type"] = m.group(1)
        m = re.match(r"(Src|Dest) IP addr: (\S+) mask: (\S+)", line)
        if m:
            side = "dst" if m.group(1) == "Dest" else "src"
            rule[side + "_ip"], rule[side + "_ip_mask"] = m.group(2), m.group(3)
        m = re.match(r"(Src|Dest) port: (\d+) mask: (0x[0-9a-f]+)", line)
        if m:
            side = "dst" if m.group(1) == "Dest" else "src"
            rule[side + "_port"], rule[side + "_port_mask"] = int(m.group(2)), int(m.group(3), 16)
        m = re.match(r"Action: Direct to queue (\d+)", line)
        if m:
            rule["queue"] = int(m.group(1))
    return rules


def rule_matches(rule, flow):
    """The printed masks are inverted: 0 bits must match, so an exact address prints mask 0.0.0.0."""
    if rule.get("type") != "UDP over IPv4" or rule.get("queue") != flow["queue"]:
        return False
    if rule.get("dst_ip") != flow["dst_ip"] or rule.get("dst_ip_mask") != "0.0.0.0":
        return False
    if rule.get("src_ip_mask", "255.255.255.255") != "255.255.255.255":
        return False
    if flow.get("dst_port") is None:
        return rule.get("dst_port_mask", 0xFFFF) == 0xFFFF
    return rule.get("dst_port") == flow["dst_port"] and rule.get("dst_port_mask") == 0


def _onoff(v):
    return "on" if v else "off"


class Nic:
    def __init__(self, module):
        self.module = module
        self.name = module.params["name"]
        self.ethtool = module.get_bin_path(module.params["ethtool"], required=True)
        self.commands, self.before, self.after = [], {}, {}

    def run(self, *args, check_rc=True):
        rc, out, err = self.module.run_command([self.ethtool, *args])
        if check_rc and rc != 0:
            self.module.fail_json(msg=f"ethtool {' '.join(args)}: {(err or out).strip()}", rc=rc)
        return rc, out

    def change(self, *args):
        self.commands.append(list(args))
        if not self.module.check_mode:
            self.run(*args)

    def numeric(self, what, read_flag, set_flag, labels):
        wanted = {str(k): v for k, v in self.module.params[what].items() if v is not None}
        if not wanted:
            return
        maxima, current = parse_maxima_current(self.run(read_flag, self.name)[1], labels)
        args = []
        for key, value in sorted(wanted.items()):
            if key not in current:
                self.module.fail_json(msg=f"{self.name}: unknown {what} setting {key!r}; known: {sorted(current)}")
            if current[key] is None:
                self.module.fail_json(msg=f"{self.name}: the driver has no {what} setting {key!r} (n/a)")
            if maxima.get(key) is not None and int(value) > maxima[key]:
                self.module.fail_json(msg=f"{self.name}: {what} {key}={value} is above the maximum {maxima[key]}")
            self.before[f"{what}.{key}"], self.after[f"{what}.{key}"] = current[key], int(value)
            if current[key] != int(value):
                args += [key, str(int(value))]
        if args:
            self.change(set_flag, self.name, *args)

    def coalesce(self):
        wanted = {str(k): v for k, v in self.module.params["coalesce"].items() if v is not None}
        if not wanted:
            return
        current = parse_coalesce(self.run("-c", self.name)[1])
        args = []
        for key, value in sorted(wanted.items()):
            if current.get(key) is None:
                self.module.fail_json(msg=f"{self.name}: the driver has no coalesce setting {key!r}")
            want = self.module.boolean(value) if isinstance(current[key], bool) else int(value)
            self.before[f"coalesce.{key}"], self.after[f"coalesce.{key}"] = current[key], want
            if current[key] != want:
                args += [key, _onoff(want) if isinstance(want, bool) else str(want)]
        if args:
            self.change("-C", self.name, *args)

    def features(self):
        wanted = self.module.params["features"]
        if not wanted:
            return
        current = parse_features(self.run("-k", self.name)[1])
        args = []
        for key, value in sorted(wanted.items()):
            long = FEATURE_ALIASES.get(key, key)
            if long not in current:
                self.module.fail_json(msg=f"{self.name}: unknown feature {key!r} (ethtool -k {self.name} lists them)")
            on, fixed = current[long]
            want = self.module.boolean(value)
            self.before[f"features.{long}"], self.after[f"features.{long}"] = _onoff(on), _onoff(want)
            if on != want:
                if fixed:
                    self.module.fail_json(msg=f"{self.name}: {long} is fixed {_onoff(on)}: the driver cannot change it")
                args += [key, _onoff(want)]
        if args:
            self.change("-K", self.name, *args)

    def flows(self):
        flows = self.module.params["flows"]
        if not flows:
            return
        rc, out = self.run("-n", self.name, check_rc=False)
        if rc != 0 and not (self.module.check_mode and self.commands):
            self.module.fail_json(msg=f"{self.name}: the driver has no ntuple flow steering (ethtool -n failed)")
        rules = parse_rules(out) if rc == 0 else []
        for flow in flows:
            key = f"flows.{flow['dst_ip']}:{flow.get('dst_port') or '*'}"
            found = [r for r in rules if rule_matches(r, flow)]
            self.before[key] = f"queue {flow['queue']} (rule {found[0]['loc']})" if found else "absent"
            self.after[key] = f"queue {flow['queue']}" + (f" (rule {found[0]['loc']})" if found else "")
            if found:
                continue
            args = ["-N", self.name, "flow-type", "udp4", "dst-ip", flow["dst_ip"]]
            if flow.get("dst_port") is not None:
                args += ["dst-port", str(flow["dst_port"])]
            args += ["action", str(flow["queue"])]
            if flow.get("loc") is not None:
                args += ["loc", str(flow["loc"])]
            self.change(*args)


def _text(d):
    return "".join(f"{k}: {v}\n" for k, v in sorted(d.items()))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            channels=dict(type="dict", default={}),
            rings=dict(type="dict", default={}),
            coalesce=dict(type="dict", default={}),
            features=dict(type="dict", default={}),
            flows=dict(type="list", elements="dict", default=[], options=dict(
                dst_ip=dict(type="str", required=True), dst_port=dict(type="int"),
                queue=dict(type="int", required=True), loc=dict(type="int"))),
            ethtool=dict(type="str", default="ethtool"),
        ),
        supports_check_mode=True,
    )
    nic = Nic(module)
    nic.numeric("channels", "-l", "-L", CHANNEL_LABELS)
    nic.numeric("rings", "-g", "-G", RING_LABELS)
    nic.coalesce()
    nic.features()
    nic.flows()
    module.exit_json(changed=bool(nic.commands), commands=nic.commands, state=nic.before,
                     diff={"before": _text(nic.before), "after": _text(nic.after),
                           "before_header": f"{nic.name} (ethtool)", "after_header": f"{nic.name} (ethtool)"})


if __name__ == "__main__":
    main()
