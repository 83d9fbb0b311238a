"""The worker merges bursts of events and syncs periodically."""
import threading
import time

import pytest

from emulator.boundedsync import BoundedSyncRunner
from kubeproxy_helpers import apply, endpoint, make_proxier, service, slice_

pytestmark = pytest.mark.unit


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


class FakeClock:
    """The runner's clock: it moves only when the test says (the runner re-reads it on wake-ups)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def advance_to(self, t: float, runner: BoundedSyncRunner) -> None:
        self.t = t
        with runner._cv:
            runner._cv.notify()        # wake the runner to read the new time


def test_burst_of_events_is_merged_into_one_sync():
    proxier, runner = make_proxier(min_sync_period=0.3, sync_period=60.0)
    results, clock = [], FakeClock()
    with BoundedSyncRunner(proxier, on_sync=results.append, clock=clock) as worker:
        assert wait_for(lambda: len(results) == 1)                  # the initial sync, at t=0
        for i in range(50):
            apply(proxier, service(f"s{i}", f"10.8.1.{i}"), slice_(f"s{i}", [endpoint(f"10.4.2.{i}")]))
        clock.advance_to(0.29, worker)                              # within min_sync_period: no sync
        clock.advance_to(0.3, worker)
        assert wait_for(lambda: len(results) == 2)
        assert proxier.service_changes.pending() == 0
    assert len(results) == 2 and all(r.ok for r in results)       # 50 events, one sync
    assert '"default/s49 cluster IP"' in runner.last_restore


def test_syncs_are_at_least_min_sync_period_apart():
    proxier, _ = make_proxier(min_sync_period=0.2, sync_period=60.0)
    stamps, clock = [], FakeClock()
    worker = BoundedSyncRunner(proxier, on_sync=lambda r: stamps.append(clock()), clock=clock)
    with worker:
        assert wait_for(lambda: len(stamps) == 1)
        for i, t in enumerate((0.05, 0.1, 0.19, 0.2, 0.25, 0.3, 0.45)):
            apply(proxier, service(f"s{i}", f"10.8.1.{i}"))
            clock.advance_to(t, worker)
        clock.advance_to(0.7, worker)                               # the last event's sync is due
        assert wait_for(lambda: proxier.service_changes.pending() == 0)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]              # (stop waited for the last sync)
    assert stamps[0] == 0.0 and len(stamps) >= 2 and min(gaps) >= 0.2, stamps


def test_periodic_sync_checks_the_canary_and_resyncs_fully():
    proxier, runner = make_proxier(min_sync_period=0.0, sync_period=0.2)
    apply(proxier, service("a", "10.8.0.1"), slice_("a", [endpoint("10.4.2.1")]))
    results = []
    done = threading.Event()

    def record(result):
        results.append(result)
        if len(results) >= 3:
            done.set()

    with BoundedSyncRunner(proxier, on_sync=record):
        assert wait_for(lambda: len(results) >= 1)
        runner.ruleset.tables = {}                                    # flushed behind our back
        assert done.wait(3.0)
    assert results[0].full and any(r.full for r in results[1:])
    assert "KUBE-PROXY-CANARY" in runner.ruleset.tables["mangle"]
