"""IP sets of one namespace: `ipset restore` in bulk, `ipset list -n` to see what exists."""
from __future__ import annotations

from emulator.kernel.command import run


def restore(netns: str, payload: str) -> None:
    """Apply an `ipset restore -exist` payload in one process."""
    run(["ip", "netns", "exec", netns, "ipset", "restore", "-exist"], payload)


def list_names(netns: str) -> list[str]:
    """The names of every set in `netns`."""
    return run(["ip", "netns", "exec", netns, "ipset", "list", "-n"]).split()
