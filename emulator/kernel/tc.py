"""Traffic control: qdiscs of one namespace, applied with one `tc -batch`."""
from __future__ import annotations

import subprocess

from emulator.kernel.command import run


def netem_available(netns: str) -> bool:
    """True when a netem qdisc can be created (tried on the namespace's own lo, then removed)."""
    ok = subprocess.run(["tc", "-n", netns, "qdisc", "add", "dev", "lo", "root", "handle", "9:", "netem",
                         "delay", "0ms"], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["tc", "-n", netns, "qdisc", "del", "dev", "lo", "root"], capture_output=True)
    return ok


def del_root_qdisc(netns: str, dev: str) -> None:
    """Remove a device's root qdisc (no error if it has none)."""
    run(["tc", "-n", netns, "qdisc", "del", "dev", dev, "root"], check=False)


def batch(netns: str, lines: list[str]) -> None:
    """Run many `tc` commands in one process in `netns`."""
    if lines:
        run(["tc", "-n", netns, "-batch", "-"], "\n".join(lines) + "\n")
