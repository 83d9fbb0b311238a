"""Connection tracking: flush a namespace's table (as a machine crash loses it)."""
from __future__ import annotations

from emulator.kernel.command import run


def flush(netns: str) -> None:
    """`conntrack -F` in `netns` (best effort: conntrack-tools may be missing)."""
    run(["ip", "netns", "exec", netns, "conntrack", "-F"], check=False)
