"""Host-wide kernel tables and waits that every namespace shares, read from /proc.

Emulated nodes are namespaces of one kernel: some of its limits are one for all of them.
The ARP (neighbour) table is one table whose dynamic entries are capped by
`net.ipv4.neigh.default.gc_thresh3`; past it the kernel refuses new neighbours in every
namespace and counts a `table_fulls`. Tasks in uninterruptible sleep (state D) wait on
kernel locks such as rtnl (every `ip` in every namespace) or an iptables-legacy table
replacement.
"""
from __future__ import annotations

import os

ARP_STAT = "/proc/net/stat/arp_cache"
GC_THRESH3 = "/proc/sys/net/ipv4/neigh/default/gc_thresh3"


def neigh_table_fulls(path: str = ARP_STAT) -> int:
    """How many times since boot the ARP table refused a new entry (summed over CPUs; 0 if unreadable)."""
    try:
        with open(path) as f:
            header, *rows = f.read().split("\n")
    except OSError:
        return 0
    try:
        col = header.split().index("table_fulls")
    except ValueError:
        return 0
    return sum(int(r.split()[col], 16) for r in rows if len(r.split()) > col)


def gc_thresh3() -> int | None:
    """The cap on dynamic ARP entries, for every namespace together (None if unreadable)."""
    try:
        with open(GC_THRESH3) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def blocked_tasks() -> int:
    """Tasks in uninterruptible sleep (state D) on the whole host, threads included."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "D":
                        n += 1
        except (OSError, IndexError):
            continue
    return n
