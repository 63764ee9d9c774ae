#!/usr/bin/python
# Apache-2.0 (see the xdpfeed repository)
"""xdpfeed.host.irq_affinity: pin the IRQs whose /proc/interrupts name matches a pattern (the feed
queue's) to some CPUs and move every other IRQ to the housekeeping CPUs, in one pass; check mode and
--diff. IRQs the kernel will not move (per-CPU timers, some chip IRQs) are reported, not fatal."""

import errno
import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.xdpfeed.host.plugins.module_utils import cpus

DOCUMENTATION = r"""
module: irq_affinity
short_description: Pin matching IRQs to CPUs and keep all other IRQs on the housekeeping CPUs
description:
  - "Reads C(/proc/interrupts). An IRQ whose description (the text after the per-CPU counts: chip,
    type and action names such as C(eth1-TxRx-3) or C(mlx5_comp3@pci:0000:3b:00.0)) matches
    O(pattern), or whose number is in O(irqs), is pinned to O(cpus) through
    C(/proc/irq/N/smp_affinity_list). Every other IRQ is moved to O(others) when given."
options:
  pattern:
    description: Regular expression searched in each IRQ's description.
    type: str
  irqs:
    description: IRQ numbers pinned as well as those matching O(pattern).
    type: list
    elements: int
    default: []
  cpus:
    description: CPU list for the matching IRQs, e.g. C(2) or C(2-3).
    type: str
    required: true
  others:
    description: CPU list for every other IRQ (the housekeeping CPUs); omitted, they are left alone.
    type: str
  default_affinity:
    description: CPU list written (as a mask) to C(default_smp_affinity), where new IRQs start; omitted, left alone.
    type: str
  require_match:
    description: Fail when no IRQ matches, so that a mistyped pattern does not pass silently.
    type: bool
    default: true
  interrupts_file:
    description: The interrupts table.
    type: path
    default: /proc/interrupts
  irq_dir:
    description: The per-IRQ directory.
    type: path
    default: /proc/irq
author: xdpfeed
"""

EXAMPLES = r"""
- name: Feed queue 3 of eth1 on CPU 2; everything else on CPUs 0-1
  xdpfeed.host.irq_affinity:
    pattern: 'eth1-TxRx-3$'
    cpus: "2"
    others: "0-1"
    default_affinity: "0-1"
"""

RETURN = r"""
matched:
  description: The IRQs pinned to O(cpus).
  type: list
  returned: always
written:
  description: The IRQs whose affinity was (or, in check mode, would be) changed.
  type: list
  returned: always
unmovable:
  description: Other IRQs the kernel refused to move.
  type: list
  returned: always
"""


def read_interrupts(path):
    """{irq: description} for the numbered lines of /proc/interrupts."""
    with open(path) as f:
        lines = f.read().splitlines()
    ncpu = len(lines[0].split()) if lines else 0
    table = {}
    for line in lines[1:]:
        head, sep, rest = line.partition(":")
        if not sep or not head.strip().isdigit():
            continue
        fields = rest.split(None, ncpu)
        table[int(head)] = fields[ncpu].strip() if len(fields) > ncpu else ""
    return table


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pattern=dict(type="str"),
            irqs=dict(type="list", elements="int", default=[]),
            cpus=dict(type="str", required=True),
            others=dict(type="str"),
            default_affinity=dict(type="str"),
            require_match=dict(type="bool", default=True),
            interrupts_file=dict(type="path", default="/proc/interrupts"),
            irq_dir=dict(type="path", default="/proc/irq"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        feed_cpus = cpus.parse_list(p["cpus"])
        other_cpus = cpus.parse_list(p["others"]) if p["others"] is not None else None
        default_cpus = cpus.parse_list(p["default_affinity"]) if p["default_affinity"] is not None else None
        table = read_interrupts(p["interrupts_file"])
        regex = re.compile(p["pattern"]) if p["pattern"] else None
    except (ValueError, OSError, re.error) as e:
        module.fail_json(msg=str(e))
    matched = sorted({irq for irq, desc in table.items() if regex and regex.search(desc)} | set(p["irqs"]))
    if not matched and p["require_match"]:
        module.fail_json(msg=f"no IRQ in {p['interrupts_file']} matches {p['pattern']!r} (nor irqs={p['irqs']})")
    before, after, written, unmovable = [], [], [], []

    def apply(name, path, want, as_mask, must):
        try:
            with open(path) as f:
                current = f.read().strip()
        except OSError as e:
            if must:
                module.fail_json(msg=f"{path}: {e.strerror}")
            return
        have = cpus.parse_mask(current) if as_mask else cpus.parse_list(current)
        before.append(f"{name}: {cpus.to_list(have)}\n")
        if have == want:
            after.append(f"{name}: {cpus.to_list(have)}\n")
            return
        if not module.check_mode:
            try:
                with open(path, "w") as f:
                    f.write((cpus.to_mask(want) if as_mask else cpus.to_list(want)) + "\n")
            except OSError as e:
                if must or e.errno not in (errno.EIO, errno.EINVAL, errno.EPERM):
                    module.fail_json(msg=f"writing {cpus.to_list(want)} to {path}: {e.strerror}")
                unmovable.append(name)
                after.append(f"{name}: {cpus.to_list(have)} (cannot be moved)\n")
                return
        written.append(name)
        after.append(f"{name}: {cpus.to_list(want)}\n")

    for irq in sorted(set(table) | set(matched)):
        want = feed_cpus if irq in matched else other_cpus
        if want is not None:
            path = os.path.join(p["irq_dir"], str(irq), "smp_affinity_list")
            apply(f"irq {irq} ({table.get(irq, '?')})", path, want, False, irq in matched)
    if default_cpus is not None:
        apply("default_smp_affinity", os.path.join(p["irq_dir"], "default_smp_affinity"), default_cpus, True, True)
    if unmovable:
        module.warn(f"IRQs the kernel would not move: {', '.join(unmovable)}")
    module.exit_json(changed=bool(written), matched=matched, written=written, unmovable=unmovable,
                     diff={"before": "".join(before), "after": "".join(after)})


if __name__ == "__main__":
    main()
