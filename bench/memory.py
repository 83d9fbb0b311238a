"""Memory of a run's processes: resident (RSS) and proportional (PSS) set size, per process kind.

RSS counts a shared page (the Python interpreter, Ray's libraries) once per process that maps
it; PSS divides it among them, so the PSS sum is what the run really holds. Kernel objects
(namespaces, links, iptables tables, conntrack, sockets) belong to no process: `kernel_memory`
reads the kernel's own allocations from /proc/meminfo, to be compared before and after a run.
"""
from __future__ import annotations

import os
from collections import defaultdict

from emulator.runner import cleanup

PAGE = os.sysconf("SC_PAGE_SIZE")
# Kernel allocations that grow with kernel objects, not with processes (a process's own
# kernel cost, its stacks and page tables, is in KernelStack and PageTables).
KERNEL_FIELDS = ("SUnreclaim", "Percpu", "VmallocUsed")
PROCESS_KERNEL_FIELDS = ("KernelStack", "PageTables")


def _kind(pid: int) -> str:
    """A short name for a process: its Ray actor class or worker state, else its program."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return "?"
    first = argv[0].decode(errors="replace")
    if first.startswith("ray::"):
        return first.split(".")[0]
    name = os.path.basename(first.split()[0]) if first else "?"
    if name.startswith("python") and len(argv) > 1:
        script = next((a.decode(errors="replace") for a in argv[1:] if a.endswith(b".py")), "")
        return f"python {os.path.basename(script)}" if script else name
    return name


def _pss_rss(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in bytes; zeros when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            vals = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f if ln.split(":")[0] in ("Pss", "Rss")}
        return vals.get("Pss", 0), vals.get("Rss", 0)
    except (OSError, ValueError, IndexError):
        return 0, 0


def run_memory(run_id: str) -> dict:
    """Totals (MiB) and per kind [processes, PSS MiB, RSS MiB] of every process of the run."""
    kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for pid in cleanup.run_processes(run_id):
        pss, rss = _pss_rss(pid)
        k = kinds[_kind(pid)]
        k[0] += 1
        k[1] += pss / 2**20
        k[2] += rss / 2**20
    return {"pss": sum(v[1] for v in kinds.values()), "rss": sum(v[2] for v in kinds.values()),
            "kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1][1]))}


def format_kinds(mem: dict, top: int = 12) -> str:
    """One line per process kind: count, PSS and RSS in MiB."""
    return "\n".join(f"    {k:<32} {int(n):>4} procs  PSS {p:>7.0f} MiB  RSS {r:>7.0f} MiB"
                     for k, (n, p, r) in list(mem["kinds"].items())[:top])


def kernel_memory() -> dict[str, float]:
    """MiB of the kernel's allocations by /proc/meminfo field (KERNEL_FIELDS and PROCESS_KERNEL_FIELDS)."""
    out: dict[str, float] = {}
    with open("/proc/meminfo") as f:
        for ln in f:
            key, _, rest = ln.partition(":")
            if key in KERNEL_FIELDS + PROCESS_KERNEL_FIELDS:
                out[key] = int(rest.split()[0]) / 1024
    return out


def kernel_growth(before: dict[str, float], after: dict[str, float]) -> tuple[float, float]:
    """(kernel objects, processes' stacks and page tables): MiB grown from `before` to `after`
    (machine-wide, so other work on the machine meanwhile counts too)."""
    grown = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    return sum(grown.get(k, 0.0) for k in KERNEL_FIELDS), sum(grown.get(k, 0.0) for k in PROCESS_KERNEL_FIELDS)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads) so far; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS   # utime, stime (stat fields 14, 15)
    except (OSError, ValueError, IndexError):
        return 0.0


def run_cpu(run_id: str) -> dict[str, tuple[int, float]]:
    """Per process kind: (processes, CPU seconds used so far), busiest first."""
    kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for pid in cleanup.run_processes(run_id):
        k = kinds[_kind(pid)]
        k[0] += 1
        k[1] += _cpu_seconds(pid)
    return {k: (int(n), s) for k, (n, s) in sorted(kinds.items(), key=lambda kv: -kv[1][1])}


def mem_available_mib() -> float:
    """MemAvailable of /proc/meminfo, MiB."""
    with open("/proc/meminfo") as f:
        for ln in f:
            if ln.startswith("MemAvailable:"):
                return int(ln.split()[1]) / 1024
    return float("nan")
