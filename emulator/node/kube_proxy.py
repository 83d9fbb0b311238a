"""kube-proxy of one emulated node, as one object: `start` is the process starting, `stop` it dying.

`start` builds a fresh Proxier, its sync worker, its health servers (healthz and each
Service's healthCheckNodePort, in the node's namespace) and its Service/EndpointSlice
watch, lists, then syncs: as after a restart, the first sync rewrites its chains in one
iptables-restore. `stop` ends the watch, the worker and the health servers; the rules
stay in the kernel, as when the process dies.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from emulator.boundedsync import BoundedSyncRunner
from emulator.config.timing import Timing
from emulator.kernel import netns
from emulator.kernel.iptables import IptablesRunner
from emulator.kubeproxy.health import HealthServer
from emulator.kubeproxy.proxier import Proxier
from emulator.records.hosts import HostSpec
from emulator.workloads.host import WorkloadHost

log = logging.getLogger(__name__)
KINDS = ["Service", "EndpointSlice"]
SYNCED_TIMEOUT = 30.0      # how long `start` waits for the first list

InformerFactory = Callable[[list[str], Callable[[str, dict], None]], Any]


class KubeProxy:
    """One node's kube-proxy: rules, sync worker, health servers and watch; restartable."""

    def __init__(self, spec: HostSpec, netns_name: str, lock_file: str, timing: Timing, workloads: WorkloadHost,
                 informer: InformerFactory, on_change: Callable[[], None] | None = None) -> None:
        self.spec, self.netns, self.lock_file, self.timing = spec, netns_name, lock_file, timing
        self.workloads, self.new_informer, self.on_change = workloads, informer, on_change
        self.proxier: Proxier | None = None
        self.worker: BoundedSyncRunner | None = None
        self.health: HealthServer | None = None
        self.informer = None
        self.seen_rv = 0
        self.running = False
        self.starts = 0

    def start(self) -> None:
        """A fresh kube-proxy (rules, health servers, watch) with a full sync."""
        t = self.timing
        runner = IptablesRunner.in_netns(self.netns, backend=self.spec.iptables_backend, lock_file=self.lock_file)
        self.proxier = Proxier(self.spec.name, [self.spec.ip], self.spec.cluster_cidr, runner,
                               min_sync_period=t.kube_proxy_min_sync_period, sync_period=t.kube_proxy_sync_period)
        self.seen_rv = 0
        self.proxier.sync_mark_fn = lambda: self.seen_rv
        self.worker = BoundedSyncRunner(self.proxier)
        self.health = HealthServer(self.workloads.loop, self._socket, self.proxier)
        self.informer = self.new_informer(KINDS, self._on_event)
        self.informer.start()
        self.informer.synced.wait(SYNCED_TIMEOUT)
        self.worker.start()
        self.workloads.call(self.health.start())
        self.running = True
        self.starts += 1

    def stop(self) -> None:
        """The process dies: health servers, watch and worker stop; the rules stay in the kernel."""
        self.running = False
        if self.health is not None:
            try:
                self.workloads.call(self.health.stop())
            except Exception:
                log.exception("stopping kube-proxy's health servers failed")
        for part in (self.informer, self.worker):
            if part is not None:
                part.stop()

    def list(self, kind: str) -> list[dict]:
        """The Services or EndpointSlices kube-proxy's watch holds (the node's DNS zone reads them)."""
        return self.informer.list(kind) if self.informer is not None else []

    def _socket(self, port: int):
        """A listening TCP socket in the node's namespace (the health servers)."""
        return netns.socket_in(self.netns, bind=("0.0.0.0", port))

    def _on_event(self, type_: str, obj: dict) -> None:
        if obj["kind"] == "Service":
            self.proxier.on_service(type_, obj)
        else:
            self.proxier.on_endpointslice(type_, obj)
        if self.on_change is not None:      # the cluster DNS zone follows both kinds
            self.on_change()
        # After the proxier has the change: a sync that reads this mark includes it.
        self.seen_rv = max(self.seen_rv, int(obj["metadata"].get("resourceVersion", 0)))
        # The proxier already asked for a sync when it recorded the change, and that sync
        # may have read the mark before the line above: ask again, so that a sync starting
        # from now on publishes the new mark. Otherwise `synced_rv` would lag until the
        # next periodic sync (sync_period: 5 s fast, 30 s gke) although the rules were
        # applied. Merged with the pending request when that sync has not started yet.
        if self.worker is not None:
            self.worker.notify()

    def synced_rv(self) -> int:
        """The API resourceVersion of the newest Service/EndpointSlice change in the node's rules."""
        return self.proxier.synced_mark if self.proxier is not None else 0

    def iptables_save(self) -> str:
        """The node's iptables rules as iptables-save prints them ("" before the first start)."""
        return self.proxier.runner.save() if self.proxier is not None else ""

    def backend(self) -> str | None:
        """The iptables backend kube-proxy uses (legacy or nft); None before the first start."""
        return self.proxier.runner.backend if self.proxier is not None else None
