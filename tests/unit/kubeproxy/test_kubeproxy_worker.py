"""The worker merges bursts of events and syncs periodically."""
import threading
import time

import pytest

from emulator.kubeproxy.worker import KubeProxyWorker
from kubeproxy_helpers import apply, endpoint, make_proxier, service, slice_

pytestmark = pytest.mark.unit


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_burst_of_events_is_merged_into_few_syncs():
    proxier, runner = make_proxier(min_sync_period=0.3, sync_period=60.0)
    results = []
    with KubeProxyWorker(proxier, on_sync=results.append):
        assert wait_for(lambda: len(results) == 1)                  # the initial sync
        for i in range(50):
            apply(proxier, service(f"s{i}", f"10.8.1.{i}"), slice_(f"s{i}", [endpoint(f"10.4.2.{i}")]))
            time.sleep(0.005)
        assert wait_for(lambda: proxier.service_changes.pending() == 0 and len(results) >= 2)
        time.sleep(0.4)
    assert 2 <= len(results) <= 4                                     # 50 events, a handful of syncs
    assert all(r.ok for r in results)
    assert '"default/s49 cluster IP"' in runner.last_restore


def test_syncs_are_at_least_min_sync_period_apart():
    proxier, _ = make_proxier(min_sync_period=0.2, sync_period=60.0)
    stamps = []
    worker = KubeProxyWorker(proxier, on_sync=lambda r: stamps.append(time.monotonic()))
    worker.start()
    try:
        for i in range(30):
            apply(proxier, service(f"s{i}", f"10.8.1.{i}"))
            time.sleep(0.02)
        assert wait_for(lambda: proxier.service_changes.pending() == 0)
        time.sleep(0.25)
    finally:
        worker.stop()
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert gaps and min(gaps) >= 0.19


def test_periodic_sync_checks_the_canary_and_resyncs_fully():
    proxier, runner = make_proxier(min_sync_period=0.0, sync_period=0.2)
    apply(proxier, service("a", "10.8.0.1"), slice_("a", [endpoint("10.4.2.1")]))
    results = []
    done = threading.Event()

    def record(result):
        results.append(result)
        if len(results) >= 3:
            done.set()

    with KubeProxyWorker(proxier, on_sync=record):
        assert wait_for(lambda: len(results) >= 1)
        runner.ruleset.tables = {}                                    # flushed behind our back
        assert done.wait(3.0)
    assert results[0].full and any(r.full for r in results[1:])
    assert "KUBE-PROXY-CANARY" in runner.ruleset.tables["mangle"]
