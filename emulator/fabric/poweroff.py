"""A machine fails for real: its Ray node's processes and the run's kernel objects on it vanish.

`machine-failure` on a run whose machines are real Ray nodes (`--address`) runs `start`
as a Ray task on the machine's node. The task finds its raylet (an ancestor of the
worker), starts a reaper in a session of its own (so killing the raylet's process group
spares it) and returns; the reaper (`python -m emulator.fabric.poweroff`) does what a VM
losing its power does to the run: SIGKILL to the raylet's process group, the raylet and
every process under it (the machine's actors: node hosts, the fabric actor), and every
process living in one of the run's namespaces mounted on this machine (pods,
ovs-vswitchd) or naming the machine's OVS directory (ovsdb-server, in the machine's own
namespace, detached from Ray); then
the run's namespaces and links of this machine are gone and so is the machine's OVS
directory (/run is a tmpfs a rebooted VM gets back empty). Only this machine's objects:
names are matched by the exact run id, namespaces only if their bind mount lives in this
machine's mount namespace (on one host, a "VM" of the test harness sees the others' names).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from emulator.kernel import links, netns, procs
from emulator.naming import owned_by

KILL_ROUNDS = 3


def is_raylet(argv: list[str]) -> bool:
    """True for a raylet's command line."""
    return bool(argv) and os.path.basename(argv[0]) == "raylet"


def start(run_id: str, machine: int, state_dir: str) -> dict:
    """In a Ray task on the failing machine: start the reaper, detached; its pid and the raylet's."""
    raylet = procs.ancestor(os.getpid(), is_raylet)
    if raylet is None:
        raise RuntimeError(f"machine {machine}: no raylet above process {os.getpid()}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    reaper = subprocess.Popen([sys.executable, "-m", __name__, run_id, str(machine), state_dir, str(raylet)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, env=env, cwd="/")
    return {"raylet": raylet, "reaper": reaper.pid, "node_ip": _node_ip()}


def _node_ip() -> str | None:
    import ray   # only inside a Ray task
    return ray.util.get_node_ip_address() if ray.is_initialized() else None


def run_namespaces(run_id: str) -> dict[str, str]:
    """The run's namespaces whose names are mounted here: name -> `net:[inode]`."""
    found = {n: netns.mounted_inode(n) for n in netns.names() if owned_by(n, run_id)}
    return {n: ino for n, ino in found.items() if ino}


def ovs_dir(state_dir: str, machine: int) -> str:
    """The machine's private OVS directory (emulator/fabric/machine.py)."""
    return os.path.join(state_dir, f"ovs{machine}")


def doomed(run_id: str, raylet: int, ovs: str) -> set[int]:
    """The processes a failure of this machine ends: the raylet's group and tree, the run's namespaces',
    those naming the machine's OVS directory `ovs`."""
    out = {raylet, *procs.descendants(raylet)}
    out |= {p for p in _pids() if any(a.startswith(ovs + os.sep) or f"={ovs}{os.sep}" in a
                                      for a in procs.command(p))}
    try:
        pgid = os.getpgid(raylet)
    except ProcessLookupError:
        pgid = None
    me = os.getpid()
    for pid in procs.in_netns(set(run_namespaces(run_id).values())):
        out.add(pid)
    if pgid is not None and pgid != os.getpgid(me):
        out |= {p for p in _pids() if _pgid(p) == pgid}
    out.discard(me)
    return out


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def power_off(run_id: str, machine: int, state_dir: str, raylet: int) -> dict[str, int]:
    """Kill the machine's processes, then remove the run's kernel objects on it; counts of each."""
    counts = {"processes": procs.kill_until_gone(lambda: doomed(run_id, raylet, ovs_dir(state_dir, machine)),
                                                 KILL_ROUNDS), "namespaces": 0, "links": 0}
    for name in run_namespaces(run_id):
        netns.delete(name)
        counts["namespaces"] += 1
    for link in links.link_names():
        if owned_by(link, run_id):
            links.delete_link(None, link)
            counts["links"] += 1
    shutil.rmtree(ovs_dir(state_dir, machine), ignore_errors=True)
    return counts


if __name__ == "__main__":
    rid, index, state, raylet_pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    time.sleep(0.5)   # the task's reply reaches the driver first
    power_off(rid, index, state, raylet_pid)
