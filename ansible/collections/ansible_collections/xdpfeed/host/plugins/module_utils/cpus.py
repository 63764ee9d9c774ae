# Apache-2.0 (see the xdpfeed repository)
"""CPU sets as the kernel spells them: lists ("0-1,4") in smp_affinity_list and isolcpus=, hex masks
("c", "00000000,0000000c") in rps_cpus, xps_cpus and smp_affinity. Parsed to sets so that two spellings
of the same CPUs compare equal."""


def parse_list(text):
    """'0-2,5' -> {0, 1, 2, 5}; '' -> set()."""
    cpus = set()
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"not a CPU list: {text!r}")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def parse_mask(text):
    """'00000000,0000000c' -> {2, 3}."""
    digits = str(text).strip().replace(",", "")
    try:
        value = int(digits or "0", 16)
    except ValueError:
        raise ValueError(f"not a CPU mask: {text!r}") from None
    return {bit for bit in range(value.bit_length()) if value >> bit & 1}


def to_mask(cpus):
    """{2, 3} -> 'c' (the form the kernel accepts in rps_cpus and default_smp_affinity)."""
    return format(sum(1 << c for c in cpus), "x")


def to_list(cpus):
    """{0, 1, 2, 5} -> '0-2,5'."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
