"""The kubelet's node heartbeat: renew the node's Lease in kube-node-lease every interval.

While renewing, it also makes sure the Node reports Ready=True (the kubelet posts its
status on start and whenever the controller marked it otherwise) and asks the kubelet to
post again any pod readiness the API server has wrong (its status sync: the node
lifecycle controller marks pods not ready while the node is silent). `pause()` stops the
heartbeat while the node lives on (a network partition: the kubelet cannot reach the API
server); `resume()` starts it again.

Renewals of the nodes of one process go together: a `LeaseGroup` renews every due lease
of its nodes in one API call per interval (each Lease still carries its own node's
renewTime), instead of a thread and two calls per node, so a process holding a hundred
nodes keeps their clocks on a busy machine. A renewer without a group has a group of its own.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import ray

from emulator.api.apilink import NodeApiClient, answered, generation_of
from emulator.control.nodelifecycle import LEASE_NAMESPACE

log = logging.getLogger(__name__)


def lease_object(node: str, interval: float, now: float) -> dict:
    """The coordination.k8s.io/v1 Lease of a node (renewTime in epoch seconds)."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": max(1, round(interval * 4)),
                     "renewTime": now}}


class LeaseRenewer:
    """Renews one node's Lease until stopped, in its group's rounds (a group of its own
    without one); pausable."""

    def __init__(self, api, node: str, interval: float, status_sync: Callable[[], None] | None = None,
                 group: "LeaseGroup | None" = None) -> None:
        self.api, self.node, self.interval = api, node, interval
        self.status_sync = status_sync
        self.group = group if group is not None else LeaseGroups().group(api, interval)
        self.renewals = 0
        self._paused = threading.Event()
        self._stop = threading.Event()

    def start(self) -> "LeaseRenewer":
        self.renew_once()
        self.group.add(self)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.group.remove(self)

    @property
    def due(self) -> bool:
        """Renewed by the next round: running, not paused, its node reaching the API server."""
        return not self._stop.is_set() and not self._paused.is_set() and getattr(self.api, "reachable", True)

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
        ready = ray.get(self.api.renew_leases.remote([lease_object(self.node, self.interval, time.time())]))
        if needs_ready(ready.get(self.node)):
            ray.get(self.api.post_nodes_ready.remote([self.node]))
        self.renewed()

    def renewed(self) -> None:
        """After a renewal (and the Ready post it called for): sync the pods' readiness."""
        self.renewals += 1
        if self.status_sync is not None:
            self.status_sync()


def needs_ready(ready: str | None) -> bool:
    """Whether a renewed node must post Ready=True (`ready`: its Node's Ready status, "" without
    one, None without a Node): after a lapse, or before its first post."""
    return ready is not None and ready != "True"


class LeaseGroup:
    """The lease renewals of one process's nodes: every `interval`, one API call renews each due lease.

    The thread runs while the group has renewers. A failed call (API server restarting)
    is retried at the next round; a renewer whose node was cut off while the call was in
    flight does not count its renewal (the reply never reached it).
    """

    def __init__(self, api, interval: float) -> None:
        self.api, self.interval = api, interval
        self.rounds = 0
        self._renewers: list[LeaseRenewer] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, renewer: LeaseRenewer) -> None:
        with self._lock:
            self._renewers.append(renewer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
                self._thread.start()

    def remove(self, renewer: LeaseRenewer) -> None:
        with self._lock:
            if renewer in self._renewers:
                self._renewers.remove(renewer)

    def renew_due(self) -> list[LeaseRenewer]:
        """One round: renew every due lease in one call; returns the renewers renewed."""
        with self._lock:
            due = [r for r in self._renewers if r.due]
        if not due:
            return []
        gens = [generation_of(r.api) for r in due]
        now = time.time()
        ready = ray.get(self.api.renew_leases.remote([lease_object(r.node, r.interval, now) for r in due]))
        called = time.time()
        self.rounds += 1
        done = [r for r, g in zip(due, gens) if answered(r.api, g) and r.due]
        not_ready = [r.node for r in done if needs_ready(ready.get(r.node))]
        if not_ready:   # one call for all (after a lapse, one per node made the round last 10-40 s)
            try:
                ray.get(self.api.post_nodes_ready.remote(not_ready))
            except Exception as e:  # the heartbeat goes on; the next round posts again
                log.warning("posting Ready for %d node(s) after renewal failed: %s", len(not_ready), e)
        for r in done:
            try:
                r.renewed()
            except Exception as e:  # one node's status sync must not stop the others' heartbeat
                log.warning("%s: pod status sync after renewal failed: %s", r.node, e)
        took = time.time() - now
        if took > self.interval:   # the machine cannot keep this clock: say so
            log.warning("lease renewal round of %d nodes took %.2f s (API call %.2f s), longer than the "
                        "%g s interval", len(due), took, called - now, self.interval)
        return done

    def _run(self) -> None:
        due = time.monotonic()
        while True:
            due += self.interval
            now = time.monotonic()
            if due < now:   # a round took longer than an interval: the next one at once, not a burst
                due = now
            time.sleep(due - now)
            with self._lock:
                if not self._renewers:
                    self._thread = None
                    return
            try:
                self.renew_due()
            except Exception as e:  # API server restarting: next round
                log.warning("lease renewals failed: %s", e)


class LeaseGroups:
    """The lease groups of one process, one per interval, made on first use."""

    def __init__(self) -> None:
        self.by_interval: dict[float, LeaseGroup] = {}
        self._lock = threading.Lock()

    def group(self, api, interval: float) -> LeaseGroup:
        """The group renewing every `interval` (`api`: a node's NodeApiClient or the ApiServer handle)."""
        raw = api.api if isinstance(api, NodeApiClient) else api
        with self._lock:
            found = self.by_interval.get(interval)
            if found is None:
                found = self.by_interval[interval] = LeaseGroup(raw, interval)
            return found
