"""The controller manager actor: scheduler, Deployment/ReplicaSet and EndpointSlice controllers.

Level-triggered: any watched change marks the state dirty, and one reconcile pass runs
every controller's pure core over the informer cache and sends the resulting writes.
Bursts of events merge into one pass.
"""
from __future__ import annotations

import logging
import threading
import time

import ray

from emulator.api.client import Informer
from emulator.logs import setup_actor_logging
from emulator.control import endpointslices as eps
from emulator.control.action_events import lifecycle_events, workload_events
from emulator.control.events import EventRecorder
from emulator.control import nodelifecycle
from emulator.control import workloads
from emulator.control.objects import is_terminating, labels, name, namespace
from emulator.control.scheduler import Placement
from emulator.records.timing import Timing

log = logging.getLogger(__name__)
# A pass of every controller at least this often (seconds), events or not.
RESYNC_PERIOD = 5.0
KINDS = ["Node", "Pod", "Service", "EndpointSlice", "Deployment", "ReplicaSet", "Lease"]


class ControllerManager:
    """Runs the cluster's controllers against the API server until stopped."""

    def __init__(self, api, run_dir: str | None = None, min_interval: float = 0.05,
                 timing: Timing | None = None, autostart: bool = False) -> None:
        if run_dir:
            setup_actor_logging(run_dir, "controller-manager")
        # By name when Ray may restart this actor: a handle among the constructor's arguments
        # would have to outlive the caller in the object store.
        self.api = ray.get_actor(api) if isinstance(api, str) else api
        self.min_interval = min_interval
        self.timing = timing   # None: no node lifecycle controller
        self.lifecycle_log: list[dict] = []
        self.lease_clock = nodelifecycle.LeaseClock()   # when each node's renewals were seen
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self.informer = Informer(self.api, KINDS, self._on_event)
        self._thread = threading.Thread(target=self._loop, name="controller-manager", daemon=True)
        self.passes = 0
        self._recorders: dict[str, EventRecorder] = {}
        if autostart:
            self.start()

    def start(self) -> bool:
        """Start watching and reconciling (once; Ray's restart of the actor starts it again)."""
        if not self._thread.is_alive():
            self.informer.start()
            self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        self.informer.stop()

    def _on_event(self, _type: str, obj: dict) -> None:
        # A renewed Lease is for the node lifecycle controller alone, which looks on its own
        # period: at 1000 nodes the renewals alone would keep every controller busy.
        if obj.get("kind") != "Lease":
            self._dirty.set()

    def _loop(self) -> None:
        self.informer.synced.wait()
        period = self.timing.node_monitor_period if self.timing else None
        next_look = next_resync = time.monotonic()
        while not self._stop.is_set():
            due = next_resync if period is None else min(next_resync, next_look)
            dirty = self._dirty.wait(max(0.0, due - time.monotonic()))
            if self._stop.is_set():
                return
            self._dirty.clear()
            now = time.monotonic()
            look = period is not None and now >= next_look
            if look:
                next_look = now + period
            if now >= next_resync:
                dirty, next_resync = True, now + RESYNC_PERIOD
            try:
                self.reconcile(controllers=dirty, lifecycle=look)
            except Exception:
                log.exception("reconcile pass failed")
                self._dirty.set()
            self._stop.wait(self.min_interval)

    # --- one pass ---
    def reconcile(self, controllers: bool = True, lifecycle: bool = True) -> None:
        """One pass of the workload controllers (scheduler, Deployment, ReplicaSet,
        EndpointSlice) and of the node lifecycle controller, or of either alone."""
        if not (controllers or lifecycle):
            return
        inf = self.informer
        nodes, pods = inf.list("Node"), inf.list("Pod")
        self.passes += 1
        writes = []
        if controllers:
            writes.extend(self._workloads(pods))
            writes.extend(self._schedule(nodes, pods))
            self._record(workload_events(writes, self._cached))
        if lifecycle:
            writes.extend(self._node_lifecycle(nodes, pods))
        if controllers:
            writes.extend(self._endpointslices(pods))
        self._apply(writes)

    def _workloads(self, pods: list[dict]) -> list[workloads.Action]:
        inf, writes = self.informer, []
        replicasets = inf.list("ReplicaSet")
        for dep in inf.list("Deployment"):
            rss = [r for r in replicasets if namespace(r) == namespace(dep)]
            writes.extend(workloads.reconcile_deployment(dep, rss, pods))
            status = workloads.deployment_status(dep, rss, pods)
            if dep.get("status") != status:
                writes.append(workloads.Action("status", {**dep, "status": status}))
        for rs in replicasets:
            writes.extend(workloads.reconcile_replicaset(rs, pods))
            status = workloads.replicaset_status(rs, pods)
            if rs.get("status") != status:
                writes.append(workloads.Action("status", {**rs, "status": status}))
        return writes

    def _cached(self, kind: str, ns: str, nm: str) -> dict | None:
        with self.informer.lock:
            return self.informer.cache.get((kind, ns, nm))

    def _record(self, specs: list) -> None:
        """Send Events (fire and forget) from the component each names."""
        for s in specs:
            rec = self._recorders.get(s.component)
            if rec is None:
                rec = self._recorders[s.component] = EventRecorder(self.api, s.component)
            rec.record(s.involved, s.reason, s.message, s.type)

    def _node_lifecycle(self, nodes: list[dict], pods: list[dict]) -> list[workloads.Action]:
        if self.timing is None:
            return []
        leases, now = self.informer.list("Lease"), time.time()
        res = nodelifecycle.evaluate(nodes, leases, pods, self.timing.node_monitor_grace_period,
                                     self.timing.pod_eviction_timeout, now, self.lease_clock.observe(leases, now))
        for e in res.events:
            log.info("node lifecycle: %s", e)
        self.lifecycle_log.extend(res.events)
        self._record(lifecycle_events(res.events, res.actions, self._cached))
        return res.actions

    def lifecycle_events(self) -> list[dict]:
        """What the node lifecycle controller did, with times (epoch seconds)."""
        return list(self.lifecycle_log)

    def _schedule(self, nodes: list[dict], pods: list[dict]) -> list[workloads.Action]:
        out = []
        placement = Placement(nodes, pods)
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", 0)):
            if pod["spec"].get("nodeName") or is_terminating(pod):
                continue
            node = placement.choose(pod)
            if node is None:
                continue
            bound = {**pod, "spec": {**pod["spec"], "nodeName": node}}
            placement.bind(bound, node)
            out.append(workloads.Action("bind", bound))
        return out

    def _endpointslices(self, pods: list[dict]) -> list[workloads.Action]:
        out = []
        have_by_svc: dict[tuple[str, str], dict[str, dict]] = {}
        for s in self.informer.list("EndpointSlice"):
            svc_name = labels(s).get(eps.SERVICE_NAME_LABEL)
            if labels(s).get("endpointslice.kubernetes.io/managed-by") == eps.MANAGED_BY:
                have_by_svc.setdefault((namespace(s), svc_name), {})[name(s)] = s
        for svc in self.informer.list("Service"):
            key = (namespace(svc), name(svc))
            have = have_by_svc.pop(key, {})
            for want in eps.desired_slices(svc, pods):
                cur = have.pop(name(want), None)
                if cur is None:
                    out.append(workloads.Action("create", want))
                elif eps.slice_differs(cur, want):
                    out.append(workloads.Action("update", {**cur, "endpoints": want["endpoints"],
                                                           "ports": want["ports"]}))
            out.extend(workloads.Action("delete", s) for s in have.values())
        for stale in have_by_svc.values():
            out.extend(workloads.Action("delete", s) for s in stale.values())
        return out

    def _apply(self, actions: list[workloads.Action]) -> None:
        refs = []
        for a in actions:
            o = a.obj
            kind, ns, nm = o["kind"], o["metadata"].get("namespace", "default"), o["metadata"]["name"]
            if a.verb == "create":
                refs.append(self.api.create.remote(o))
            elif a.verb == "bind":   # only the pod as seen: a stale copy would wipe the kubelet's status
                refs.append(self.api.update.remote(o, o["metadata"].get("resourceVersion")))
            elif a.verb == "update":
                refs.append(self.api.update.remote(o))
            elif a.verb == "status":
                refs.append(self.api.patch_status.remote(kind, ns, nm, o["status"]))
            elif a.verb == "delete":
                refs.append(self.api.delete.remote(kind, ns, nm))
            elif a.verb == "terminate":   # graceful: the API server keeps a bound pod, Terminating
                refs.append(self.api.delete.remote(kind, ns, nm))
        for r in refs:
            try:
                ray.get(r)
            except Exception as e:  # conflicts resolve on the next pass
                log.info("write failed: %s", e)
                self._dirty.set()

    def ping(self) -> int:
        return self.passes
