"""Connection tracking: flush a namespace's table (as a machine crash loses it), list its entries."""
from __future__ import annotations

from emulator.kernel.command import run


def flush(netns: str) -> None:
    """`conntrack -F` in `netns` (best effort: conntrack-tools may be missing)."""
    run(["ip", "netns", "exec", netns, "conntrack", "-F"], check=False)


def entries_from(netns: str, source_ip: str) -> list[str]:
    """`conntrack -L -s IP` in `netns`: the entries of flows `source_ip` started ([] without the tool)."""
    return run(["ip", "netns", "exec", netns, "conntrack", "-L", "-s", source_ip], check=False).splitlines()
