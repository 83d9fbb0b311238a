"""The kubelet's node heartbeat: renew the node's Lease in kube-node-lease every interval.

While renewing, it also makes sure the Node reports Ready=True (the kubelet posts its
status on start and whenever the controller marked it otherwise) and, like the kubelet's
status manager, posts again any pod readiness the API server has wrong (the node
lifecycle controller marks pods not ready while the node is silent). `pause()` stops the
heartbeat without stopping the thread (a network partition: the kubelet lives but cannot
reach the API server); `resume()` starts it again.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import ray

from emulator.control.nodelifecycle import LEASE_NAMESPACE, ready_status

log = logging.getLogger(__name__)


def lease_object(node: str, interval: float, now: float) -> dict:
    """The coordination.k8s.io/v1 Lease of a node (renewTime in epoch seconds)."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": max(1, round(interval * 4)),
                     "renewTime": now}}


class LeaseRenewer:
    """A thread renewing one node's Lease until stopped; pausable."""

    def __init__(self, api, node: str, interval: float, status_sync: Callable[[], None] | None = None) -> None:
        self.api, self.node, self.interval = api, node, interval
        self.status_sync = status_sync
        self.renewals = 0
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{node}", daemon=True)

    def start(self) -> "LeaseRenewer":
        self.renew_once()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        """Renew now and keep renewing."""
        self._paused.clear()
        self.renew_once()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def renew_once(self) -> None:
        """Renew the Lease and post Ready=True if the Node says otherwise."""
        ray.get(self.api.apply.remote(lease_object(self.node, self.interval, time.time())))
        self.renewals += 1
        node = ray.get(self.api.get.remote("Node", "", self.node))
        if node is not None and ready_status(node) != "True":
            conds = [c for c in node.get("status", {}).get("conditions", []) if c.get("type") != "Ready"]
            ray.get(self.api.patch_status.remote("Node", "", self.node, {"conditions": conds + [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "lastTransitionTime": time.time()}]}))
        if self.status_sync is not None:
            self.status_sync()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._paused.is_set():
                continue
            try:
                self.renew_once()
            except Exception as e:  # API server restarting: next interval
                log.warning("lease renewal failed: %s", e)


def sync_pod_status(kubelet) -> None:
    """Post the status of every local pod whose stored Ready condition differs from the kubelet's."""
    if kubelet is None:
        return
    for key, local in list(kubelet.pods.items()):
        ns, name = key.split("/", 1)
        with kubelet.informer.lock:
            pod = kubelet.informer.cache.get(("Pod", ns, name))
        if pod is not None and ready_status(pod) != kubelet.ready_of(local):
            kubelet.post_status(local)
