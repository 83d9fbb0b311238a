"""Orphaned Open vSwitch state, for `kubemu clean`: private daemons of dead runs, system bridges."""
from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass

from emulator.errors import KernelError
from emulator.kernel.links import delete_link
from emulator.kernel.ovs import OvsInstance
from emulator.kernel.ovs_procs import DAEMONS, cmdline, ovs_tool, terminate
from emulator.naming import is_kubemu_name

SYSTEM_DB = "/var/run/openvswitch/db.sock"


@dataclass(frozen=True)
class OvsDaemon:
    """A running private OVS daemon of some kubemu run."""

    pid: int
    name: str
    run_dir: str


def find_private_daemons(run_prefix: str | None = None) -> list[OvsDaemon]:
    """Private ovsdb-server/ovs-vswitchd whose run directory path has a kubemu run component.

    With `run_prefix` (e.g. `kubemuq3zx`) only that run's; without, every kubemu run's. The
    run directory must therefore contain a path component that starts with the run prefix.
    """
    found: list[OvsDaemon] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = cmdline(int(entry))
        if not argv or os.path.basename(argv[0]) not in DAEMONS:
            continue
        pidfile = next((a.split("=", 1)[1] for a in argv if a.startswith("--pidfile=")), None)
        if pidfile is None:
            continue
        run_dir = os.path.dirname(pidfile)
        parts = [p for p in run_dir.split("/") if is_kubemu_name(p)]
        if parts and (run_prefix is None or any(p.startswith(run_prefix) for p in parts)):
            found.append(OvsDaemon(int(entry), os.path.basename(argv[0]), run_dir))
    return found


def kill_private_daemons(run_prefix: str | None = None) -> list[OvsDaemon]:
    """Stop the private OVS instances `find_private_daemons` reports and remove their bridges.

    Graceful first (`exit --cleanup` removes the bridges' devices), then SIGTERM/SIGKILL;
    the netdev datapath's bridge taps are persistent, so any that survive are deleted by
    the names the instance's own database listed.
    """
    daemons = find_private_daemons(run_prefix)
    bridges: list[str] = []
    for run_dir in sorted({d.run_dir for d in daemons}):
        inst = OvsInstance(run_dir, prefer_system=False)
        inst._db = f"unix:{inst.path('db.sock')}"
        names = {d.name for d in daemons if d.run_dir == run_dir}
        if "ovsdb-server" in names:
            with contextlib.suppress(KernelError, OSError):
                bridges += [b for b in inst.vsctl("list-br", timeout=3).split() if is_kubemu_name(b)]
        if "ovs-vswitchd" in names:
            subprocess.run([ovs_tool("ovs-appctl"), "-t", inst.path("ovs-vswitchd.ctl"), "--timeout=5",
                            "exit", "--cleanup"], capture_output=True, check=False)
    terminate([d.pid for d in daemons])
    for bridge in bridges:
        if os.path.exists(f"/sys/class/net/{bridge}"):
            delete_link(None, bridge)
    return daemons


def system_bridges() -> list[str]:
    """Bridges of a running system OVS (none when there is no system OVS)."""
    if not os.path.exists(SYSTEM_DB):
        return []
    res = subprocess.run(["ovs-vsctl", "--timeout=3", "list-br"], capture_output=True, text=True)
    return res.stdout.split()


def del_system_bridge(bridge: str) -> None:
    """Remove a bridge from the system OVS (no error if it is gone)."""
    subprocess.run(["ovs-vsctl", "--timeout=3", "--if-exists", "del-br", bridge], capture_output=True)
