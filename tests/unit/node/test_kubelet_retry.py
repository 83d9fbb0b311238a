"""A pod whose sync failed (its namespace could not be made on a busy machine, say) is
synced again with back-off, as the kubelet's pod workers retry; before, it waited for
another change to the pod."""
import queue
import threading
import time

import pytest

from emulator.node import kubelet as kl

pytestmark = pytest.mark.unit


def test_back_off_doubles_up_to_the_cap():
    assert [kl.sync_retry_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert kl.sync_retry_delay(50) == kl.SYNC_RETRY_MAX


def test_a_failed_pod_sync_is_tried_again_until_it_succeeds(monkeypatch):
    monkeypatch.setattr(kl, "sync_retry_delay", lambda failures: 0.05)
    k = kl.Kubelet.__new__(kl.Kubelet)   # only what the worker loop uses
    k._queue, k._lock, k._busy, k._sync_failures = queue.Queue(), threading.Lock(), set(), {}
    k._stopped, k._status_pending = threading.Event(), False
    attempts, done = [], threading.Event()

    def sync(key):
        attempts.append(key)
        if len(attempts) < 3:
            raise TimeoutError("ip netns add timed out after 30 seconds")
        done.set()
    k._sync = sync
    worker = threading.Thread(target=k._work, daemon=True)
    worker.start()
    k._queue.put("default/web-1")
    assert done.wait(30), attempts
    deadline = time.monotonic() + 10
    while k._sync_failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert attempts == ["default/web-1"] * 3 and k._sync_failures == {}
    k._queue.put(None)
    worker.join(10)
