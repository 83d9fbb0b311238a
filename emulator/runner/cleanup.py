"""Find and remove what kubemu runs left behind, by run prefix only.

Leftovers of a run `kubemu<id>`: processes (whose command line or environment carries
the prefix, or which live in one of its namespaces), named namespaces, root-namespace
links, OVS bridges on a system OVS, and its state directories. Nothing is ever
matched by a broad name: only exact `kubemu<id>` prefixes of the ids found.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time

from emulator.naming import PREFIX, RUN_ID_LEN

STATE_ROOT = "/run/kubemu"
RUN_ENV = "KUBEMU_RUN_ID"
_ID = re.compile(rf"{PREFIX}([a-z0-9]{{{RUN_ID_LEN}}})(?=[-a-z0-9]|$)")


def state_dir(run_id: str) -> str:
    """Per-run state (private OVS, driver record) under /run/kubemu/kubemu<id>."""
    return os.path.join(STATE_ROOT, f"{PREFIX}{run_id}")


def ray_temp_dir(run_id: str) -> str:
    return f"/tmp/{PREFIX}{run_id}-ray"


def _ids_in(names) -> set[str]:
    out = set()
    for n in names:
        m = _ID.match(n)
        if m:
            out.add(m.group(1))
    return out


def _netns_names() -> list[str]:
    try:
        return [n for n in os.listdir("/run/netns")]
    except FileNotFoundError:
        return []


def _links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _proc_info(pid: int) -> tuple[str, str, str | None]:
    """(cmdline, environ, netns link) of a process, '' when unreadable."""
    def rd(p: str) -> str:
        try:
            with open(f"/proc/{pid}/{p}", "rb") as f:
                return f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        ns = None
    return rd("cmdline"), rd("environ"), ns


def _netns_inode(name: str) -> str | None:
    try:
        return f"net:[{os.stat(os.path.join('/run/netns', name)).st_ino}]"
    except OSError:
        return None


def find_run_ids() -> set[str]:
    """Run ids that left something on this machine (or are running)."""
    ids = _ids_in(_netns_names()) | _ids_in(_links())
    ids |= _ids_in(os.listdir(STATE_ROOT) if os.path.isdir(STATE_ROOT) else [])
    ids |= _ids_in(os.path.basename(p) for p in glob.glob(f"/tmp/{PREFIX}*-ray"))
    ids |= _ids_in(os.path.basename(p) for p in glob.glob(f"/etc/netns/{PREFIX}*"))
    for pid in _pids():
        cmd, env, _ = _proc_info(pid)
        m = re.search(rf"{RUN_ENV}=([a-z0-9]{{{RUN_ID_LEN}}})\b", env)
        if m:
            ids.add(m.group(1))
        ids |= {m.group(1) for m in _ID.finditer(cmd)}
    return ids


def _pids() -> list[int]:
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]


def driver_alive(run_id: str) -> bool:
    """True when the driver that owns the run is still running."""
    try:
        with open(os.path.join(state_dir(run_id), "driver.json")) as f:
            pid = json.load(f)["pid"]
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")   # a zombie is a dead driver not yet reaped
    except (OSError, ValueError, KeyError, IndexError):
        return False


def run_processes(run_id: str) -> list[int]:
    """Processes of a run: prefix in command line or environment, or inside its namespaces."""
    prefix = f"{PREFIX}{run_id}"
    inodes = {i for i in (_netns_inode(n) for n in _netns_names() if n.startswith(prefix)) if i}
    out = []
    for pid in _pids():
        cmd, env, ns = _proc_info(pid)
        if prefix in cmd or f"{RUN_ENV}={run_id}" in env or (ns and ns in inodes):
            out.append(pid)
    return out


def clean_run(run_id: str) -> dict[str, int]:
    """Remove every leftover of one run; returns counts of what was removed."""
    prefix = f"{PREFIX}{run_id}"
    counts = {"processes": 0, "namespaces": 0, "links": 0, "bridges": 0, "dirs": 0}
    for _ in range(3):  # killed parents may have had children starting
        pids = run_processes(run_id)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                counts["processes"] += 1
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    _clean_system_ovs(prefix, counts)
    for n in _netns_names():
        if n.startswith(prefix):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
            counts["namespaces"] += 1
    for link in _links():
        if link.startswith(prefix):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
            counts["links"] += 1
    for d in glob.glob(f"/etc/netns/{prefix}-*") + [ray_temp_dir(run_id), state_dir(run_id)]:
        if os.path.exists(d):
            shutil.rmtree(d, ignore_errors=True)
            counts["dirs"] += 1
    return counts


def _clean_system_ovs(prefix: str, counts: dict[str, int]) -> None:
    """Bridges of this run on a system-wide OVS (a private OVS died with its processes)."""
    if not os.path.exists("/var/run/openvswitch/db.sock"):
        return
    res = subprocess.run(["ovs-vsctl", "--timeout=3", "list-br"], capture_output=True, text=True)
    for br in res.stdout.split():
        if br.startswith(prefix):
            subprocess.run(["ovs-vsctl", "--timeout=3", "--if-exists", "del-br", br], capture_output=True)
            counts["bridges"] += 1


def clean(run_ids: list[str] | None = None, force: bool = False) -> dict[str, dict[str, int] | str]:
    """Clean the given runs (default: every run found whose driver is gone)."""
    ids = sorted(set(run_ids) if run_ids else find_run_ids())
    report: dict[str, dict[str, int] | str] = {}
    for rid in ids:
        if not force and driver_alive(rid):
            report[rid] = "running (skipped; use --force)"
            continue
        report[rid] = clean_run(rid)
    return report
