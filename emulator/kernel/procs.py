"""The process table: children of processes, read from /proc."""
from __future__ import annotations

import os


def children(pids: list[int]) -> list[int]:
    """The live children of `pids` (by parent pid, from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) in pids:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out
