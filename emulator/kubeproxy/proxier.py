"""The kube-proxy iptables proxier of one node: state, sync, health.

Events (`on_service`, `on_endpointslice`) only record changes; `sync` folds them into
the applied state, renders one payload (pure `render` functions) and applies it with
one `iptables-restore --noflush`. A partial sync rewrites only the changed Services'
chains; a full one (first sync, after a failed restore, after the canary vanished,
hourly) rewrites everything and re-checks the hooks and leftover chains.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import ipaddress
import logging
import threading
import time
from typing import Any, Callable, Iterator, Protocol, Sequence

from emulator.errors import KernelError
from emulator.kubeproxy import names as n
from emulator.kubeproxy.hooks import JUMPS, KUBELET_JUMPS, missing_jumps, parse_save
from emulator.kubeproxy.model import NamespacedName, ServicePortName
from emulator.kubeproxy.render import (LARGE_CLUSTER_ENDPOINTS, RenderConfig, ServiceRules,
                                       render_ruleset, render_service_port)
from emulator.kubeproxy.tracker import (EndpointsChangeTracker, EndpointsMap,
                                        ServiceChangeTracker, ServicePortMap)

log = logging.getLogger(__name__)


class Runner(Protocol):
    """What the proxier needs from an iptables adapter (emulator.kernel.iptables, or a fake)."""

    backend: str

    def restore(self, text: str) -> None: ...

    def save(self, tables: Sequence[str] = ("filter", "nat")) -> str: ...

    def chain_exists(self, table: str, chain: str) -> bool: ...

    def clear_conntrack(self, filters: Sequence[Sequence[str]]) -> None: ...
FULL_SYNC_PERIOD = 3600.0        # kube-proxy forces a full sync at least hourly
SYNC_LOG_PERIOD = 30.0           # at most one "rules synced" line per node this often (1000 nodes log too)


@dataclasses.dataclass
class SyncResult:
    """What one sync did and how long its parts took (seconds)."""

    ok: bool
    full: bool
    service_ports: int = 0
    rewritten_services: int = 0   # Services whose own chains were written
    deleted_chains: int = 0
    lines: int = 0
    conntrack_filters: int = 0    # `conntrack -D` runs for stale UDP flows
    queued_seconds: float = 0.0   # from the oldest change it applies to its start
    save_seconds: float = 0.0
    render_seconds: float = 0.0
    restore_seconds: float = 0.0
    total_seconds: float = 0.0
    error: str = ""


@dataclasses.dataclass(frozen=True)
class ProxyHealth:
    """Node-wide health as /healthz reports it."""

    healthy: bool
    last_updated: float | None
    current_time: float
    node_eligible: bool


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while rendering ~100k strings: its passes would double the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _order(sp: Any) -> tuple[str, str, str, str]:
    name = sp.name
    return (name.namespace, name.name, name.port, name.protocol)


class Proxier:
    """kube-proxy (iptables mode) for one node."""

    def __init__(self, node_name: str, node_ips: list[str], cluster_cidr: str, runner: Runner,
                 min_sync_period: float = 1.0, sync_period: float = 30.0, *,
                 masquerade_all: bool = False, localhost_nodeports: bool = True,
                 random_fully: bool = True,
                 large_cluster_endpoints: int = LARGE_CLUSTER_ENDPOINTS,
                 clock: Callable[[], float] = time.time) -> None:
        if cluster_cidr:
            cluster_cidr = str(ipaddress.ip_network(cluster_cidr, strict=False))
        self.node_name = node_name
        self.node_ips = list(node_ips)
        self.runner = runner
        self.min_sync_period = min_sync_period
        self.sync_period = sync_period
        self.config = RenderConfig(node_ip=self.node_ips[0] if self.node_ips else "",
                                   cluster_cidr=cluster_cidr, masquerade_all=masquerade_all,
                                   localhost_nodeports=localhost_nodeports, random_fully=random_fully)
        self.large_cluster_endpoints = large_cluster_endpoints
        self.clock = clock
        self.service_changes = ServiceChangeTracker()
        self.endpoints_changes = EndpointsChangeTracker(node_name)
        self.service_map = ServicePortMap()
        self.endpoints_map = EndpointsMap()
        self.on_change: Callable[[], None] | None = None   # set by BoundedSyncRunner
        self.node_eligible = True
        self.last_successful_sync: float | None = None
        # Optional progress marker (e.g. the API resourceVersion the caller has fed in):
        # read at the start of each sync; `synced_mark` is the value of the last good one.
        self.sync_mark_fn: Callable[[], int] | None = None
        self.synced_mark = 0
        self.last_result: SyncResult | None = None
        self._sync_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._need_full = True
        self._last_full = 0.0
        self._large_cluster: bool | None = None
        self._cache: dict[ServicePortName, ServiceRules] = {}
        self._active_chains: set[str] = set()
        self._oldest_pending: float | None = None
        self._local_ready: dict[NamespacedName, int] = {}
        self._hc_ports: dict[NamespacedName, int] = {}
        self._listeners: list[Callable[[SyncResult], None]] = []
        self._log_after = float("-inf")   # when the next "rules synced" line may be written
        self._unlogged = (0, 0.0)         # syncs since the last line, their longest restore
        # Stale UDP conntrack entries to delete after the next successful restore.
        self._ct_ips: set[str] = set()
        self._ct_endpoints: list[tuple[ServicePortName, str]] = []
        self._ct_newly_active: set[ServicePortName] = set()

    # ---- events: record only ----
    def on_service(self, event: str, obj: dict[str, Any]) -> None:
        """Record a Service watch event (ADDED / MODIFIED / DELETED)."""
        if self.service_changes.update(event, obj):
            self._queued()

    def on_endpointslice(self, event: str, obj: dict[str, Any]) -> None:
        """Record an EndpointSlice watch event (ADDED / MODIFIED / DELETED)."""
        if self.endpoints_changes.update(event, obj):
            self._queued()

    def _queued(self) -> None:
        with self._state_lock:
            if self._oldest_pending is None:
                self._oldest_pending = self.clock()
        if self.on_change is not None:
            self.on_change()

    def mark_queued(self) -> None:
        """Note that a sync is wanted (periodic ticks count, as in kube-proxy's healthz)."""
        with self._state_lock:
            if self._oldest_pending is None:
                self._oldest_pending = self.clock()

    def add_sync_listener(self, listener: Callable[[SyncResult], None]) -> None:
        """Call `listener(result)` after every successful sync (from the syncing thread)."""
        self._listeners.append(listener)

    # ---- sync ----
    def check_canary(self) -> bool:
        """False (and the next sync is full) when KUBE-PROXY-CANARY vanished from mangle."""
        if self.last_successful_sync is None:
            return True
        if self.runner.chain_exists("mangle", n.KUBE_PROXY_CANARY):
            return True
        log.info("%s: KUBE-PROXY-CANARY is gone; iptables was flushed, next sync is full", self.node_name)
        self._need_full = True
        return False

    def sync(self, full: bool = False) -> SyncResult:
        """Apply recorded changes with one iptables-restore; never raises KernelError."""
        with self._sync_lock, _gc_paused():
            result = self._sync_locked(full)
        self.last_result = result
        if result.ok:
            for listener in list(self._listeners):
                try:
                    listener(result)
                except Exception:  # a listener must not break the sync loop
                    log.exception("sync listener failed")
        return result

    def _sync_locked(self, full: bool) -> SyncResult:
        mark = self.sync_mark_fn() if self.sync_mark_fn is not None else 0
        with self._state_lock:
            pending = self._oldest_pending
        started = self.clock()
        result = self._sync_changes(full)
        if pending is not None:
            result.queued_seconds = max(0.0, started - pending)
        if result.ok and mark > self.synced_mark:
            self.synced_mark = mark
            self._log_sync(mark, result)
        return result

    def _log_sync(self, mark: int, result: SyncResult) -> None:
        """One line for a sync that advanced the mark, at most every SYNC_LOG_PERIOD; the
        syncs between two lines are counted in the second, with their longest restore."""
        now = self.clock()
        if now < self._log_after:
            count, longest = self._unlogged
            self._unlogged = (count + 1, max(longest, result.restore_seconds))
            return
        count, longest = self._unlogged
        self._unlogged, self._log_after = (0, 0.0), now + SYNC_LOG_PERIOD
        since = f"; {count} more sync(s) since the last line, longest restore {longest:.3f} s" if count else ""
        log.info("%s: rules synced up to resourceVersion %d: queued %.2f s, %d Service(s) rewritten "
                 "(%d service ports in all), render %.3f s, iptables-restore %.3f s (%d lines)%s",
                 self.node_name, mark, result.queued_seconds, result.rewritten_services, result.service_ports,
                 result.render_seconds, result.restore_seconds, result.lines, since)

    def _sync_changes(self, full: bool) -> SyncResult:
        start = self.clock()
        t0 = time.perf_counter()
        changed = self.service_map.update(self.service_changes)
        changed |= self.endpoints_map.update(self.endpoints_changes)
        self._ct_ips |= self.service_map.deleted_udp_cluster_ips
        self._ct_endpoints += self.endpoints_map.deleted_udp_endpoints
        self._ct_newly_active |= self.endpoints_map.newly_active_udp
        large = self.endpoints_map.total > self.large_cluster_endpoints
        if large != self._large_cluster:      # comment style changes: rewrite everything
            self._large_cluster, self._cache = large, {}
            full = True
        do_full = full or self._need_full or (start - self._last_full > FULL_SYNC_PERIOD)
        result = SyncResult(ok=False, full=do_full)
        existing: set[str] = set(self._active_chains)
        jumps = []
        if do_full:
            ts = time.perf_counter()
            try:
                saved = parse_save(self.runner.save(("filter", "nat")))
            except KernelError as exc:
                self._need_full = True
                result.error = str(exc)
                return result
            result.save_seconds = time.perf_counter() - ts
            existing = saved.get("nat", (set(), []))[0]
            wanted = JUMPS + (KUBELET_JUMPS if self.config.localhost_nodeports else ())
            jumps = missing_jumps(saved, wanted)
        tr = time.perf_counter()
        entries: list[tuple[ServiceRules, bool]] = []
        active: set[str] = set()
        rewritten = set()
        for sp in sorted(self.service_map, key=_order):
            write = do_full or sp.name.nsn in changed
            rules = None if write else self._cache.get(sp.name)
            if rules is None:
                rules = render_service_port(sp, self.endpoints_map.get(sp.name), self.config, large)
                self._cache[sp.name] = rules
                write = True
            if write:
                rewritten.add(sp.name.nsn)
            active.update(rules.chains)
            entries.append((rules, write))
        for gone in [k for k in self._cache if k.nsn in changed and not self.service_map.ports_of(k.nsn).get(k)]:
            del self._cache[gone]
        stale = {c for c in existing - active if n.is_service_chain(c)}
        text = render_ruleset(entries, self.config, full=do_full, stale_chains=stale, jumps=jumps)
        result.render_seconds = time.perf_counter() - tr
        result.service_ports, result.rewritten_services = len(entries), len(rewritten)
        result.deleted_chains, result.lines = len(stale), text.count("\n")
        tx = time.perf_counter()
        try:
            self.runner.restore(text)
        except KernelError as exc:
            log.error("%s: iptables-restore failed: %s", self.node_name, exc)
            self._need_full = True
            result.error = str(exc)
            result.restore_seconds = time.perf_counter() - tx
            result.total_seconds = time.perf_counter() - t0
            return result
        result.restore_seconds = time.perf_counter() - tx
        self._active_chains = active
        self._need_full = False
        if do_full:
            self._last_full = start
        now = self.clock()
        with self._state_lock:
            self.last_successful_sync = now
            self._oldest_pending = None
            self._local_ready = self.endpoints_map.local_ready_endpoints()
            self._hc_ports = self.service_map.health_check_node_ports()
        result.ok = True
        result.conntrack_filters = self._clear_stale_udp()
        result.total_seconds = time.perf_counter() - t0
        return result

    # ---- conntrack: UDP has no connection end, so flows outlive rule changes ----
    def _conntrack_filters(self) -> list[list[str]]:
        """`conntrack -D` filters for the UDP flows the last changes made stale.

        As kube-proxy's CleanStaleEntries: every flow to the ClusterIP of a deleted UDP
        port, and to every address (and NodePort) of a UDP port that had no serving
        endpoint before (flows created meanwhile went nowhere); and the flows NATed to
        an endpoint that was removed or changed, for each address of its port.
        """
        ips: set[str] = set(self._ct_ips)
        node_ports: set[int] = set()
        for spn in self._ct_newly_active:
            sp = self.service_map.ports_of(spn.nsn).get(spn)
            if sp is not None:
                ips.update((sp.cluster_ip, *sp.external_ips, *sp.lb_ips))
                if sp.node_port:
                    node_ports.add(sp.node_port)
        filters = [["-p", "udp", "--orig-dst", ip] for ip in sorted(ips)]
        filters += [["-p", "udp", "--dport", str(port)] for port in sorted(node_ports)]
        for spn, ep_ip in self._ct_endpoints:
            sp = self.service_map.ports_of(spn.nsn).get(spn)
            if sp is None:                    # the whole port is gone: covered above
                continue
            if sp.node_port:
                filters.append(["-p", "udp", "--dport", str(sp.node_port), "--dst-nat", ep_ip])
            filters += [["-p", "udp", "--orig-dst", vip, "--dst-nat", ep_ip]
                        for vip in (sp.cluster_ip, *sp.external_ips, *sp.lb_ips)]
        unique: dict[tuple[str, ...], list[str]] = {}
        for f in filters:
            unique.setdefault(tuple(f), f)
        return list(unique.values())

    def _clear_stale_udp(self) -> int:
        """Delete the stale UDP flows found since the last successful sync; how many filters."""
        filters = self._conntrack_filters()
        self._ct_ips, self._ct_endpoints, self._ct_newly_active = set(), [], set()
        clear = getattr(self.runner, "clear_conntrack", None)
        if not filters or clear is None:
            return 0
        try:
            clear(filters)
        except KernelError as exc:            # the rules are in place; log like kube-proxy
            log.error("%s: clearing stale UDP conntrack entries failed: %s", self.node_name, exc)
        return len(filters)

    # ---- what health checks read (snapshots of the last successful sync) ----
    def local_ready_endpoints(self) -> dict[NamespacedName, int]:
        """Ready endpoints on this node per Service (distinct IPs), as last applied."""
        with self._state_lock:
            return dict(self._local_ready)

    def health_check_node_ports(self) -> dict[NamespacedName, int]:
        """healthCheckNodePort per Service with externalTrafficPolicy Local, as last applied."""
        with self._state_lock:
            return dict(self._hc_ports)

    def health(self, now: float | None = None) -> ProxyHealth:
        """Unhealthy when an update has waited more than 2 x syncPeriod to be applied."""
        now = self.clock() if now is None else now
        with self._state_lock:
            pending = self._oldest_pending
            healthy = pending is None or now - pending < 2 * self.sync_period
            return ProxyHealth(healthy, self.last_successful_sync, now, self.node_eligible)
