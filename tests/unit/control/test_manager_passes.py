"""What starts a controller manager pass: object changes start the workload controllers,
the node lifecycle controller looks on its own period, and Lease renewals start nothing."""
from __future__ import annotations

import threading
import time
import types

import pytest

from emulator.config.timing import timing_for
from emulator.control import manager

pytestmark = pytest.mark.unit


def wait_until(cond, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_leases_reach_only_the_lifecycle_controller(monkeypatch):
    monkeypatch.setattr(manager, "RESYNC_PERIOD", 3600.0)
    cm = manager.ControllerManager(types.SimpleNamespace(), timing=timing_for("fast", {"node_monitor_period": 0.05}))
    cm.informer = types.SimpleNamespace(synced=threading.Event(), start=lambda: None, stop=lambda: None)
    cm.informer.synced.set()
    passes: list[tuple[bool, bool]] = []
    monkeypatch.setattr(cm, "reconcile", lambda controllers=True, lifecycle=True: passes.append((controllers, lifecycle)))
    cm.start()
    try:
        wait_until(lambda: len(passes) >= 1)
        assert passes[0] == (True, True)        # the first pass: everything
        for i in range(200):                    # a storm of renewals
            cm._on_event("MODIFIED", {"kind": "Lease", "metadata": {"name": f"n{i % 10}"}})
        wait_until(lambda: sum(1 for p in passes if p[1]) >= 5)
        assert all(not c for c, _ in passes[1:])     # lifecycle looks, no workload pass
        before = len(passes)
        cm._on_event("ADDED", {"kind": "Pod", "metadata": {"name": "web"}})
        wait_until(lambda: any(c for c, _ in passes[before:]))
    finally:
        cm.stop()
