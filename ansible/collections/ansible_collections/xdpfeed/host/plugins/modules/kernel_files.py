#!/usr/bin/python
# Apache-2.0 (see the xdpfeed repository)
"""xdpfeed.host.kernel_files: values written to /proc and /sys files (RPS/XPS masks, hugepage counts,
queue settings) only when they differ, compared as text or as CPU sets; check mode and --diff."""

import glob

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.xdpfeed.host.plugins.module_utils import cpus

DOCUMENTATION = r"""
module: kernel_files
short_description: Write values to /proc and /sys files when they differ
description:
  - For each path (a glob pattern is expanded), reads the file and writes the value when it differs.
    Kernel files cannot be replaced atomically, so this writes in place, which is what
    C(ansible.builtin.copy) cannot do.
options:
  files:
    description: Path (or glob) to value.
    type: dict
    required: true
  compare:
    description:
      - How the current and wanted values are compared. V(cpulist) reads both as CPU lists
        (C(0-2,5)), V(cpumask) both as hex masks (C(00000000,0000000c)), V(text) compares stripped text.
    type: str
    choices: [text, cpulist, cpumask]
    default: text
  missing:
    description: What a path (or a glob) that matches no file does.
    type: str
    choices: [fail, ignore]
    default: fail
author: xdpfeed
"""

EXAMPLES = r"""
- name: RPS off on every receive queue of eth1
  xdpfeed.host.kernel_files:
    files: {/sys/class/net/eth1/queues/rx-*/rps_cpus: "0"}
    compare: cpumask
"""

RETURN = r"""
written:
  description: The files written (or, in check mode, that would be).
  type: list
  returned: always
"""

PARSE = {"text": lambda v: str(v).strip(), "cpulist": cpus.parse_list, "cpumask": cpus.parse_mask}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type="dict", required=True),
            compare=dict(type="str", choices=list(PARSE), default="text"),
            missing=dict(type="str", choices=["fail", "ignore"], default="fail"),
        ),
        supports_check_mode=True,
    )
    parse = PARSE[module.params["compare"]]
    before, after, written = [], [], []
    for pattern, value in sorted(module.params["files"].items()):
        paths = sorted(glob.glob(pattern))
        if not paths and module.check_mode:  # may appear with an earlier change (e.g. more channels)
            before.append(f"{pattern}: (absent)\n")
            after.append(f"{pattern}: {str(value).strip()}\n")
            written.append(pattern)
            continue
        if not paths and module.params["missing"] == "fail":
            module.fail_json(msg=f"no such file: {pattern}")
        for path in paths:
            try:
                with open(path) as f:
                    current = f.read().strip()
                same = parse(current) == parse(value)
            except (OSError, ValueError) as e:
                module.fail_json(msg=f"{path}: {e}")
            before.append(f"{path}: {current}\n")
            after.append(f"{path}: {current if same else str(value).strip()}\n")
            if same:
                continue
            written.append(path)
            if not module.check_mode:
                try:
                    with open(path, "w") as f:
                        f.write(str(value).strip() + "\n")
                except OSError as e:
                    module.fail_json(msg=f"writing {value!r} to {path}: {e.strerror}")
    module.exit_json(changed=bool(written), written=written,
                     diff={"before": "".join(before), "after": "".join(after)})


if __name__ == "__main__":
    main()
