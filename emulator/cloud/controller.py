"""The cloud controller: GKE's load balancer side, run against the emulated cluster.

`CloudCore` makes every decision without Ray or threads (times come in as arguments, the
clock for "applied_at" is injected): it reads
Nodes and Services through an injected lister, allocates load balancer IPs (writing
`status.loadBalancer.ingress` through an injected `patch_status`), decides which health
probes are due and records their results, and pushes the desired VPC state through an
injected `push_state` whenever it changed (and again when `force` is asked, so a
restarted SDN controller gets everything back: the desired state comes from the API
server and the probes, nothing is lost with the SDN controller).

`CloudController` is the actor class (the driver wraps it with `ray.remote`): an Informer
on Nodes and Services, one reconcile thread (on every change, and a forced re-push every
`resync_interval` seconds) and one health-check thread that sends probe batches through
the prober host's NodeAgent (`http_probes`) without waiting on them.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any, Callable, Iterable

import ray

from emulator.api.client import Informer
from emulator.cloud import lbip
from emulator.cloud.healthcheck import HealthChecker, LateAnswers, Probe, check_for_service, group_targets
from emulator.cloud.ingress_setup import ingress_sync_for
from emulator.cloud.ingress_sync import KINDS as INGRESS_KINDS, IngressSync
from emulator.cloud.names import service_key
from emulator.cloud.vpcstate import desired_vpc_state, lb_converged, node_ips
from emulator.control.events import EventRecorder
from emulator.lateness import LATE_CAP
from emulator.logs import setup_actor_logging
from emulator.records.cloud import CloudFacts
from emulator.records.timing import Timing

log = logging.getLogger(__name__)

Lister = Callable[[str], list[dict]]
PatchStatus = Callable[[str, str, dict], Any]     # (namespace, name, status)
PushState = Callable[[dict], Any]


class CloudCore:
    """Load balancer IPs, health checks and desired VPC state; I/O through callables.

    `facts`: the VPC's ranges and the planned hosts (emulator.records.cloud.CloudFacts).
    `health_checks=False`: no probing, every node is a backend of every load balancer.
    """

    def __init__(self, facts: CloudFacts, timing: Timing, firewall_rules: Iterable[Any] = (), *,
                 list_objects: Lister, patch_status: PatchStatus, push_state: PushState,
                 health_checks: bool = True, source_ranges_in_firewall: bool = True,
                 clock: Callable[[], float] = time.time, ingress: IngressSync | None = None) -> None:
        self.facts = facts
        self.clock = clock
        self.timing = timing
        self.firewall_rules = list(firewall_rules or [])
        self.list_objects, self.patch_status, self.push_state = list_objects, patch_status, push_state
        self.health_checks = health_checks
        self.source_ranges_in_firewall = source_ranges_in_firewall
        self.hosts = list(facts.hosts)
        self.host_macs = {h.name: h.mac for h in self.hosts if h.mac}
        self.vpc_ranges = [facts.subnet, facts.pod_range]
        self.allocator = lbip.LbIpAllocator(facts.external_range, facts.subnet)
        self.checker = HealthChecker()
        self.late = LateAnswers()
        self.lock = threading.RLock()
        self._pass_lock = threading.Lock()   # one reconcile pass at a time
        self.errors: dict[str, str] = {}
        self.last_pushed: dict | None = None
        self.pushed_at: float | None = None
        self.pushes = 0
        self.push_failures = 0
        self._unapplied: list[dict] = []   # transitions not yet in a pushed state
        self._desired: dict | None = None
        self.ingress = ingress   # GKE's Ingress controller (HTTP(S) load balancers), or None
        # Fail at construction, not on every pass, when a topology rule clashes with GKE's.
        self.desired([], [])

    # --- pure parts ---
    def host_ips(self) -> set[str]:
        return {h.ip for h in self.hosts}

    def desired(self, nodes: list[dict], services: list[dict]) -> dict:
        """The VPC state for these Nodes and Services and the current health."""
        hosts, rules = self.hosts, self.firewall_rules
        if self.ingress is not None:
            hosts, rules = self.ingress.vpc_hosts(hosts), self.ingress.vpc_rules() + list(rules)
        return desired_vpc_state(
            hosts, self.host_macs, nodes, services, self.checker.state if self.health_checks else None,
            rules, self.vpc_ranges, cluster_name=self.facts.cluster_name,
            gateways=self.facts.gateways, dpid=self.facts.dpid,
            source_ranges_in_firewall=self.source_ranges_in_firewall, extra=self.facts.extra)

    # --- one pass ---
    def reconcile(self, now: float, force: bool = False) -> bool:
        """Allocate IPs, write status, update health checks, push the state if it changed.

        Decisions are taken under the state lock; the writes and the push happen outside
        it, so probes keep being recorded while the SDN controller is slow or restarting.
        Returns False when a write or the push failed (the caller retries soon).
        """
        with self._pass_lock:
            with self.lock:
                nodes = self.list_objects("Node")
                services = self.list_objects("Service")
                patches = self._allocate(services)
                services = [self._with_ingress(s) for s in services]
                if self.ingress is not None:
                    self.ingress.plan(nodes, services, {a.ip for a in self.allocator.assigned.values()})
                self._configure_health(nodes, services, now)
                state = self.desired(nodes, services)
                self._desired = state
                included = list(self._unapplied)
                need_push = force or state != self.last_pushed
            ok = self._write_status(patches)
            if self.ingress is not None:
                ok = self.ingress.apply_proxy() and ok   # the proxy before the route to it
            if need_push:
                ok = self._push(state, included) and ok
            if self.ingress is not None:
                ok = self.ingress.write_status(ok) and ok
            return ok

    def _allocate(self, services: list[dict]) -> list[tuple[str, str, dict]]:
        """Run the allocator; the status patches to write as (namespace, name, status)."""
        result = self.allocator.sync(services, self.host_ips())
        for a in result.released:
            log.info("released load balancer IP %s of %s", a.ip, a.key)
        for key, msg in result.errors.items():
            if self.errors.get(key) != msg:
                log.warning("load balancer of %s: %s", key, msg)
        self.errors = dict(result.errors)
        patches = []
        for svc in services:
            typ = svc.get("spec", {}).get("type")
            if lbip.is_load_balancer(svc):
                want = result.ingress.get(service_key(svc), [])
            elif typ != "LoadBalancer":
                want = None   # not (or no longer) a load balancer: clear a stale address
            else:
                continue      # another loadBalancerClass: not ours
            patch = lbip.desired_status(svc, want)
            if patch is not None:
                meta = svc["metadata"]
                patches.append((meta.get("namespace", "default"), meta["name"], patch))
        return patches

    def _write_status(self, patches: list[tuple[str, str, dict]]) -> bool:
        ok = True
        for ns, name, patch in patches:
            try:
                self.patch_status(ns, name, patch)
                log.info("%s/%s: status.loadBalancer = %s", ns, name, patch["loadBalancer"])
            except Exception as e:  # retried on the next pass
                log.warning("writing the status of %s/%s failed: %s", ns, name, e)
                ok = False
        return ok

    def _with_ingress(self, svc: dict) -> dict:
        """The Service as it will read once our status write lands (no wait for the watch)."""
        if not lbip.is_load_balancer(svc):
            return svc
        ip = self.allocator.ip_of(service_key(svc))
        if lbip.status_ip(svc) == ip:
            return svc
        out = copy.deepcopy(svc)
        out.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip}]} if ip else {}
        return out

    def _configure_health(self, nodes: list[dict], services: list[dict], now: float) -> None:
        checks = {service_key(s): check_for_service(s, self.timing) for s in services
                  if lbip.is_load_balancer(s) and lbip.status_ip(s)}
        self.checker.configure(checks, node_ips(nodes), now)

    def _push(self, state: dict, included: list[dict]) -> bool:
        try:
            self.push_state(state)
        except Exception as e:
            with self.lock:
                self.push_failures += 1
                self.last_pushed = None   # unknown what the SDN controller has: push again
            log.warning("pushing the VPC state failed (%s); retrying", e)
            return False
        done = self.clock()
        with self.lock:
            if state != self.last_pushed:
                log.info("pushed VPC state: %s", _lb_summary(state))
            self.last_pushed, self.pushed_at = state, done
            self.pushes += 1
            for t in included:
                t.setdefault("applied_at", done)
            ids = {id(t) for t in included}
            self._unapplied = [t for t in self._unapplied if id(t) not in ids]
        return True

    # --- health checks ---
    def due_probes(self, now: float) -> list[Probe]:
        with self.lock:
            return self.checker.due(now) if self.health_checks else []

    def next_probe_at(self) -> float | None:
        with self.lock:
            return self.checker.next_due() if self.health_checks else None

    def record_probes(self, probes: list[Probe], oks: list[bool], now: float) -> list[dict]:
        """Feed probe results; returns the transitions (the caller then reconciles)."""
        with self.lock:
            out = self.checker.record(probes, oks, now)
            for t in out:
                log.info("health check: %s on %s is %s after %d probe(s)", t["service"], t["node"],
                         t["state"], t["consecutive"])
            self._unapplied += out
            return out

    def record_batch(self, probes: list[Probe], where: list[int], results: list, now: float) -> list[dict]:
        """Feed a batch's (passed, late) per target (`where`: each probe's target); late answers
        are counted apart."""
        with self.lock:
            self.late.note(probes, where, results, now)
        return self.record_probes(probes, [bool(results[i][0]) for i in where], now)

    def probe_once(self, now: float, probe: Callable[[list, float, float], list]) -> list[dict]:
        """Send the due probes through a blocking `probe(targets, timeout, late_cap)` and record them."""
        probes = self.due_probes(now)
        if not probes:
            return []
        targets, where = group_targets(probes)
        try:
            results = list(probe(targets, self.probe_timeout, LATE_CAP))
        except Exception as e:
            log.warning("probe batch failed: %s", e)
            results = [(False, False)] * len(targets)
        return self.record_batch(probes, where, results, now)

    @property
    def probe_timeout(self) -> float:
        return self.timing.lb_health_check_timeout

    # --- views ---
    def late_answers(self) -> dict | None:
        with self.lock:
            return self.late.summary()

    def health_events(self) -> list[dict]:
        with self.lock:
            return [dict(t) for t in self.checker.state.transitions]

    def load_balancers(self) -> list[dict]:
        """Per LB Service: address, scheme, policy, backends and each node's health."""
        with self.lock:
            snap = self.checker.state.snapshot()
            out = []
            for key, a in sorted(self.allocator.assigned.items()):
                h = snap.get(key, {})
                entries = [lb for lb in (self._desired or {}).get("load_balancers", [])
                           if lb["name"] == key or lb["name"].startswith(key + "/")]
                out.append({"name": key, "ip": a.ip, "scheme": a.scheme, "policy": h.get("policy"),
                            "backends": entries[0]["backends"] if entries else [],
                            "nodes": h.get("nodes", {})})
            for key, msg in sorted(self.errors.items()):
                out.append({"name": key, "ip": None, "error": msg, "backends": [], "nodes": {}})
            return out


def _lb_summary(state: dict) -> str:
    lbs = state.get("load_balancers", [])
    if not lbs:
        return f"{len(state.get('endpoints', []))} endpoints, no load balancers"
    return "; ".join(f"{lb['name']} {lb['ip']} -> {','.join(lb['backends']) or '(none)'}" for lb in lbs)


class CloudController:
    """The cloud controller actor: watches the API server, probes nodes, programs the VPC.

    `api`: ApiServer actor; `sdn`: SdnController actor (`set_state`); `prober`: the prober
    host's NodeAgent actor (`http_probes`), or None for no health checks (every node is a
    backend); `facts`: see `CloudCore`; `timing`: the run's Timing; `firewall_rules`: the
    topology's rules (dicts or FirewallRule); `run_dir`: logs go to
    RUN_DIR/logs/cloud-controller.log.
    """

    def __init__(self, api, sdn, prober, facts: CloudFacts, timing: Timing, firewall_rules: Iterable[Any] = (),
                 run_dir: str | None = None, *, resync_interval: float = 3.0, min_interval: float = 0.02,
                 source_ranges_in_firewall: bool = True, push_timeout: float = 30.0, autostart: bool = True) -> None:
        if run_dir:
            setup_actor_logging(run_dir, "cloud-controller")
        self.api, self.sdn, self.prober = api, sdn, prober
        self.resync_interval, self.min_interval, self.push_timeout = resync_interval, min_interval, push_timeout
        self.informer = Informer(api, ["Node", "Service"] + (list(INGRESS_KINDS) if prober is not None else []),
                                 self._on_event)
        self.core = CloudCore(facts, timing, firewall_rules, list_objects=self.informer.list,
                              patch_status=self._patch_status, push_state=self._push_state,
                              health_checks=prober is not None,
                              source_ranges_in_firewall=source_ranges_in_firewall,
                              ingress=ingress_sync_for(api, prober, facts, timing, self.informer.list)
                              if prober is not None else None)
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._wake_health = threading.Event()   # new checks may be due at once
        self._threads: list[threading.Thread] = []
        self._started = False
        self.passes = 0
        if autostart:
            self.start()

    # --- I/O for the core ---
    def _patch_status(self, namespace: str, name: str, status: dict) -> None:
        svc = ray.get(self.api.patch_status.remote("Service", namespace, name, status))
        ips = [i.get("ip") for i in (status.get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]
        if svc is not None and ips:   # what `kubectl describe service` shows GKE's controller did
            rec = self.__dict__.setdefault("events", EventRecorder(self.api, "service-controller"))
            rec.record(svc, "EnsuringLoadBalancer", "Ensuring load balancer")
            rec.record(svc, "EnsuredLoadBalancer", "Ensured load balancer")

    def _push_state(self, state: dict) -> None:
        ray.get(self.sdn.set_state.remote(state), timeout=self.push_timeout)

    def _on_event(self, _type: str, _obj: dict) -> None:
        self._dirty.set()

    # --- lifecycle ---
    def start(self) -> bool:
        """Start the informer, the reconcile thread and the health-check thread (idempotent)."""
        if self._started:
            return True
        self._started = True
        self.informer.start()
        self._threads = [threading.Thread(target=self._reconcile_loop, name="cloud-reconcile", daemon=True),
                         threading.Thread(target=self._health_loop, name="cloud-health", daemon=True)]
        for t in self._threads:
            t.start()
        log.info("cloud controller started (health checks %s)", "on" if self.prober is not None else "off")
        return True

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._wake_health.set()
        self.informer.stop()

    def _reconcile_loop(self) -> None:
        while not self.informer.synced.wait(0.5):
            if self._stop.is_set():
                return
        last_force = 0.0
        self._dirty.set()
        while not self._stop.is_set():
            self._dirty.wait(max(0.05, last_force + self.resync_interval - time.time()))
            if self._stop.is_set():
                return
            self._dirty.clear()
            now = time.time()
            force = now - last_force >= self.resync_interval
            try:
                ok = self.core.reconcile(now, force=force)
            except Exception:
                log.exception("cloud reconcile pass failed")
                ok = False
            self.passes += 1
            self._wake_health.set()
            if force and ok:
                last_force = now
            if not ok:
                self._stop.wait(0.5)
                self._dirty.set()
            self._stop.wait(self.min_interval)

    def _health_loop(self) -> None:
        if self.prober is None:
            return
        inflight: list[tuple[Any, list[Probe], list[int], float]] = []
        while not self._stop.is_set():
            now = time.time()
            probes = self.core.due_probes(now)
            if probes:
                targets, where = group_targets(probes)
                ref = self.prober.http_probes.remote([list(t) for t in targets], self.core.probe_timeout, LATE_CAP)
                inflight.append((ref, probes, where, now))
            wait = self._health_wait(bool(inflight))
            if not inflight:
                self._wake_health.wait(wait)
                self._wake_health.clear()
                continue
            refs = [r for r, *_ in inflight]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait)
            ready_set = set(ready)
            still = []
            changed = False
            now = time.time()
            for ref, probes_, where_, sent in inflight:
                if ref in ready_set:
                    try:
                        results = ray.get(ref)
                    except Exception as e:
                        log.warning("probe batch failed: %s", e)
                        results = [(False, False)] * (max(where_) + 1)
                elif now - sent > self.core.probe_timeout + LATE_CAP + 5.0:
                    log.warning("probe batch sent %.1fs ago never answered; counted as failed", now - sent)
                    results = [(False, False)] * (max(where_) + 1)
                else:
                    still.append((ref, probes_, where_, sent))
                    continue
                if self.core.record_batch(probes_, where_, results, now):
                    changed = True
            inflight = still
            if changed:
                self._dirty.set()

    def _health_wait(self, busy: bool) -> float:
        nxt = self.core.next_probe_at()
        wait = 0.5 if nxt is None else max(0.0, nxt - time.time())
        return min(wait, 0.02 if busy else 0.5)

    # --- queries ---
    def health_events(self) -> list[dict]:
        """Health transitions with their times (`applied_at`: when the VPC got the change)."""
        return self.core.health_events()

    def late_answers(self) -> dict | None:
        """Health-check answers late from load: {answers, passed, nodes, first}, None if none."""
        return self.core.late_answers()

    def state(self) -> dict | None:
        """The VPC state last pushed to the SDN controller."""
        return self.core.last_pushed

    def load_balancers(self) -> list[dict]:
        """Per LB Service: IP, scheme, policy, backends, per-node health (for `kubemu get`)."""
        return self.core.load_balancers()

    def lb_converged(self, svc: dict, endpoint_nodes: list[str], down_nodes: list[str]) -> bool:
        """Whether the state last pushed to the switches sends `svc`'s load balancer to exactly the
        nodes it should (`vpcstate.lb_converged`): what the switches have, not what is about to be pushed."""
        return lb_converged(self.core.last_pushed, svc, endpoint_nodes, down_nodes)

    def reconcile_now(self, force: bool = True) -> bool:
        """Run one pass at once (steps and tests); True when everything was written."""
        return self.core.reconcile(time.time(), force=force)

    def ingresses(self) -> dict:
        """Ingress load balancers: errors, applied versions, backends (for steps and tests)."""
        with self.core.lock:
            return self.core.ingress.view() if self.core.ingress is not None else {}

    def ping(self) -> int:
        return self.passes
