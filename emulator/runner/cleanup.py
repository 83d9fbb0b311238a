"""Find and remove what kubemu runs left behind, by exact run id only.

Leftovers of a run `kubemu<id>`: processes (whose command line names `kubemu<id>` as a
whole token, whose environment has KUBEMU_RUN_ID=<id>, or which live in one of its
namespaces), named namespaces, root-namespace links, OVS bridges on a system OVS, and
its state directories. Names are matched by the run's exact id (emulator.naming.owned_by):
never by a broad name or a partial id, and a run whose driver is alive is left alone
unless forced (then its driver is stopped first, so it tears down what it can itself).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field

from emulator.errors import ConfigError
from emulator.kernel import links, netns, procs
from emulator.kernel.ovs_orphans import del_system_bridge, system_bridges
from emulator.naming import PREFIX, owned_by, run_id_of, run_ids_in, valid_run_id
from emulator import paths
from emulator.paths import RUN_ENV, ray_temp_dir, state_dir  # noqa: F401 (the runner reads them as cleanup.X)

DRIVER_STOP_GRACE = 120.0   # seconds a forced live run gets to tear itself down


def parse_run_id(text: str) -> str:
    """A run id as the user typed it (`q3zx` or `kubemuq3zx`); ConfigError (exit 2) if malformed."""
    rid = text[len(PREFIX):] if text.startswith(PREFIX) and len(text) > len(PREFIX) else text
    if not valid_run_id(rid):
        raise ConfigError(f"{text!r} is not a run id (4 characters a-z0-9, e.g. q3zx from "
                          f"`running ... as run kubemuq3zx`); `kubemu clean` alone lists every run")
    return rid


# --- what is on the machine ---
def _read(pid: int, what: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def env_run_id(environ: bytes) -> str | None:
    """The KUBEMU_RUN_ID entry of a NUL-separated environment block, exactly."""
    key = f"{RUN_ENV}=".encode()
    for entry in environ.split(b"\0"):
        if entry.startswith(key):
            return entry[len(key):].decode(errors="replace")
    return None


def _proc_info(pid: int) -> tuple[str, str | None, str | None]:
    """(command line, KUBEMU_RUN_ID, netns link) of a process; '' / None when unreadable."""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        ns = None
    cmd = _read(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace")
    return cmd, env_run_id(_read(pid, "environ")), ns


def _netns_inode(name: str) -> str | None:
    try:
        return f"net:[{os.stat(os.path.join('/run/netns', name)).st_ino}]"
    except OSError:
        return None


def _pids() -> list[int]:
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]


def _ids_of(names) -> set[str]:
    return {rid for rid in map(run_id_of, names) if rid}


def find_run_ids() -> set[str]:
    """Run ids that left something on this machine (or are running)."""
    ids = _ids_of(netns.names()) | _ids_of(links.link_names())
    ids |= _ids_of(os.listdir(paths.STATE_ROOT) if os.path.isdir(paths.STATE_ROOT) else [])
    ids |= _ids_of(os.path.basename(p) for p in glob.glob(f"/tmp/{PREFIX}*-ray"))
    ids |= _ids_of(os.path.basename(p) for p in glob.glob(f"/etc/netns/{PREFIX}*"))
    for pid in _pids():
        cmd, env_id, _ = _proc_info(pid)
        if env_id and valid_run_id(env_id):
            ids.add(env_id)
        ids |= run_ids_in(cmd)
    return ids


# --- the driver ---
def proc_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot): with the pid, names one process for good."""
    stat = _read(pid, "stat").decode(errors="replace")
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def write_driver_record(run_id: str, run_dir: str) -> None:
    """driver.json: the pid and start time of this process, the run's driver."""
    os.makedirs(state_dir(run_id), exist_ok=True)
    with open(os.path.join(state_dir(run_id), "driver.json"), "w") as f:
        json.dump({"pid": os.getpid(), "proc_start": proc_start(os.getpid()), "run_dir": run_dir,
                   "started": time.time()}, f)


def _running(pid: int, start: int | None) -> bool:
    """True while process `pid` runs (not a zombie) and, given `start`, is the one started then."""
    stat = _read(pid, "stat").decode(errors="replace")
    if not stat or stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):   # gone, or dead not yet reaped
        return False
    return start is None or proc_start(pid) == start


def driver_pid(run_id: str) -> int | None:
    """The pid of the run's driver while it runs: the very process that wrote driver.json
    (same pid and start time), never another one that reused its pid."""
    try:
        with open(os.path.join(state_dir(run_id), "driver.json")) as f:
            rec = json.load(f)
        pid = int(rec["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # A record without start time (an older kubemu): any live process with that pid counts,
    # so a run is never taken for dead while its driver may still run.
    return pid if _running(pid, rec.get("proc_start")) else None


def driver_alive(run_id: str) -> bool:
    """True when the driver that owns the run is still running."""
    return driver_pid(run_id) is not None


def stop_driver(pid: int, grace: float = DRIVER_STOP_GRACE) -> None:
    """SIGTERM a run's driver (it tears its cluster down), SIGKILL it after `grace` seconds."""
    start = proc_start(pid)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while _running(pid, start) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _running(pid, start):
            return


# --- one run's leftovers ---
def live_drivers() -> set[int]:
    """The pids of every run's driver that still runs (never a leftover of another run)."""
    try:
        ids = [d[len(PREFIX):] for d in os.listdir(paths.STATE_ROOT) if d.startswith(PREFIX)]
    except OSError:
        return set()
    return {pid for pid in (driver_pid(i) for i in ids if valid_run_id(i)) if pid is not None}


def run_processes(run_id: str) -> list[int]:
    """Processes of a run: `kubemu<id>` in command line, KUBEMU_RUN_ID=<id>, or inside its namespaces.

    Another run's live driver is never one of them, even when it inherited KUBEMU_RUN_ID=<id>
    from whoever started it (its /proc environ keeps what it was started with)."""
    if not valid_run_id(run_id):
        return []
    inodes = {i for i in (_netns_inode(n) for n in netns.names() if owned_by(n, run_id)) if i}
    mine = driver_pid(run_id)
    others = live_drivers() - ({mine} if mine else set())
    out = []
    for pid in _pids():
        if pid in others:
            continue
        cmd, env_id, ns = _proc_info(pid)
        if env_id == run_id or run_id in run_ids_in(cmd) or (ns and ns in inodes):
            out.append(pid)
    return out


def _dirs(run_id: str) -> list[str]:
    """The run's directories, and its controller symlinks in a system OVS's run directory."""
    prefix = f"{PREFIX}{run_id}"
    cands = glob.glob(f"/etc/netns/{prefix}*") + [ray_temp_dir(run_id), state_dir(run_id)]
    cands += [f for d in ("/var/run/openvswitch", "/run/openvswitch") for f in glob.glob(f"{d}/{prefix}*.sock")]
    return sorted({d for d in cands if os.path.lexists(d) and owned_by(os.path.basename(d), run_id)})


def inventory(run_id: str) -> dict[str, list[str]]:
    """Everything of one run on this machine, by kind (processes as `pid name`)."""
    def comm(pid: int) -> str:
        return _read(pid, "comm").decode(errors="replace").strip() or "?"
    return {"namespaces": sorted(n for n in netns.names() if owned_by(n, run_id)),
            "processes": [f"{p} {comm(p)}" for p in run_processes(run_id)],
            "links": sorted(ln for ln in links.link_names() if owned_by(ln, run_id)),
            "bridges": sorted(b for b in system_bridges() if owned_by(b, run_id)),
            "dirs": _dirs(run_id)}


def clean_run(run_id: str) -> dict[str, int]:
    """Remove every leftover of one run; returns counts of what was removed."""
    if not valid_run_id(run_id):
        raise ConfigError(f"{run_id!r} is not a run id")
    counts = {"processes": procs.kill_until_gone(lambda: run_processes(run_id)),
              "namespaces": 0, "links": 0, "bridges": 0, "dirs": 0}
    for br in system_bridges():   # a private OVS died with its processes; a system one did not
        if owned_by(br, run_id):
            del_system_bridge(br)
            counts["bridges"] += 1
    for n in netns.names():
        if owned_by(n, run_id):
            netns.delete(n)
            counts["namespaces"] += 1
    for link in links.link_names():
        if owned_by(link, run_id):
            links.delete_link(None, link)
            counts["links"] += 1
    for d in _dirs(run_id):
        if os.path.islink(d):
            os.unlink(d)
        else:
            shutil.rmtree(d, ignore_errors=True)
        counts["dirs"] += 1
    return counts


@dataclass
class RunReport:
    """What `kubemu clean` found and did for one run."""
    run_id: str
    driver: int | None                      # pid of the live driver, if any
    found: dict[str, list[str]] = field(default_factory=dict)
    action: str = ""                        # removed | skipped | would remove | stopped and removed
    removed: dict[str, int] = field(default_factory=dict)


def clean(run_ids: list[str] | None = None, force: bool = False, dry_run: bool = False) -> list[RunReport]:
    """Clean the given runs (exact ids), default every run found whose driver is gone.

    A live run is skipped unless `force` (only with ids); forced, its driver is stopped first."""
    if force and not run_ids:
        raise ConfigError("--force needs the ids of the runs to stop (it never applies to every run)")
    os.environ.pop(RUN_ENV, None)     # our own helpers (ip, ovs-vsctl) must not look like a run's
    ids = sorted({parse_run_id(r) for r in run_ids}) if run_ids else sorted(find_run_ids())
    reports = []
    for rid in ids:
        rep = RunReport(rid, driver_pid(rid), inventory(rid))
        if dry_run:
            rep.action = "skipped" if rep.driver and not force else "would remove"
        elif rep.driver and not force:
            rep.action = "skipped"
        else:
            if rep.driver:
                stop_driver(rep.driver)
            rep.removed = clean_run(rid)
            rep.action = "stopped and removed" if rep.driver else "removed"
        reports.append(rep)
    return reports
