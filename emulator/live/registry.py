"""Where a live run is recorded, and finding live runs from another shell (`kubemu ls/down/exec`).

A live driver writes `live.json` in the run's state dir (emulator.paths.state_dir)
next to `driver.json`; a run is live while that file exists and its driver is alive.
"""
from __future__ import annotations

import glob
import json
import os
import time

from emulator.errors import KubemuError
from emulator import paths
from emulator.naming import PREFIX
from emulator.runner import cleanup

RECORD = "live.json"
CONTROL = "control.sock"


def record_path(run_id: str) -> str:
    return os.path.join(paths.state_dir(run_id), RECORD)


def control_path(run_id: str) -> str:
    """The live driver's control socket (0600, root only)."""
    return os.path.join(paths.state_dir(run_id), CONTROL)


def write_record(run_id: str, record: dict) -> None:
    """Replace live.json atomically (readers never see half a file)."""
    path = record_path(run_id)
    tmp = path + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def live_runs() -> list[dict]:
    """Records of the live runs on this machine whose driver is alive, oldest first."""
    out = []
    for path in glob.glob(os.path.join(paths.STATE_ROOT, f"{PREFIX}*", RECORD)):
        try:
            with open(path) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        if cleanup.driver_alive(rec.get("run_id", "")):
            out.append(rec)
    return sorted(out, key=lambda r: r.get("started", 0))


def resolve(run_id: str | None) -> dict:
    """The live run named (with or without the `kubemu` prefix), or the only one."""
    runs = live_runs()
    if run_id:
        rid = run_id[len(PREFIX):] if run_id.startswith(PREFIX) else run_id
        for r in runs:
            if r["run_id"] == rid:
                return r
        raise KubemuError(f"no live run {run_id!r}" + (f" (live: {_names(runs)})" if runs else " (none is up)"))
    if not runs:
        raise KubemuError("no live run (start one with `kubemu up SCENARIO`)")
    if len(runs) > 1:
        raise KubemuError(f"several live runs: {_names(runs)}; choose one with --run")
    return runs[0]


def _names(runs: list[dict]) -> str:
    return ", ".join(f"{r['run_id']} ({r['scenario']})" for r in runs)


def age(record: dict, now: float | None = None) -> str:
    """`3m12s` since the run started."""
    s = int((now or time.time()) - record.get("started", 0))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"
