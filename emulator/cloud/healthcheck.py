"""GKE's L4 load balancer health checks: which nodes a load balancer sends new connections to.

Pure: no sockets, no threads, no clock of its own (every call takes `now`).

What GKE configures (FEATURES.md section 6, `emulator.config.timing`):
- `externalTrafficPolicy: Cluster`: HTTP GET `/healthz` on port 10256 (kube-proxy's
  healthz) of every node, every `lb_health_check_interval_cluster` seconds, timeout
  `lb_health_check_timeout`, healthy threshold 1, unhealthy threshold 3.
- `externalTrafficPolicy: Local`: HTTP GET `/healthz` on the Service's
  healthCheckNodePort (kube-proxy answers 200 only where the Service has a local ready
  endpoint), every `lb_health_check_interval_local` seconds, healthy 1, unhealthy 2.
  The path is the one GKE's cloud provider sets (`GetServiceHealthCheckPathPort` returns
  "/healthz"); kube-proxy's per-Service server answers any path.
- A probe succeeds on an HTTP 200 within the timeout (GCP's HTTP health check rule). An
  answer late only because the emulating process was (the node accepted the connection in
  time) counts by its status and is reported as load (emulator/workloads/hc_prober.py).
- A node starts unhealthy and turns healthy after `healthy_threshold` consecutive
  successes; a healthy node turns unhealthy after `unhealthy_threshold` consecutive
  failures. Every transition is recorded with its time ("when the load balancer steered
  away"). A change of the check (policy or healthCheckNodePort changed: GKE recreates
  the target pool with the new health check) starts that Service's nodes over.

Probes are real HTTP requests sent from a prober host on the fabric (Google's probers
come from 35.191.0.0/16 and 130.211.0.0/22) and go to the node's own IP. (GCP addresses
passthrough load balancer probes to the forwarding rule's IP, which the guest accepts
locally; a single fabric cannot steer one probe per node to a shared VIP, and kube-proxy's
health servers listen on every address, so the node IP gives the same answers.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from emulator.records.timing import Timing

from emulator.gke import CLUSTER_THRESHOLDS, HEALTHZ_PATH, HEALTHZ_PORT, LOCAL_PATH, LOCAL_THRESHOLDS


@dataclass(frozen=True)
class CheckSpec:
    """One health check: what is probed, how often, and the thresholds."""

    policy: str            # "Cluster" (node health check) or "Local" (per Service)
    port: int
    path: str
    interval: float
    timeout: float
    healthy_threshold: int
    unhealthy_threshold: int

    @property
    def shared(self) -> bool:
        """True for the node health check that all Cluster-policy load balancers share."""
        return self.policy == "Cluster"

    def url(self, ip: str) -> str:
        return f"http://{ip}:{self.port}{self.path}"


def health_check_port(svc: dict) -> tuple[int, bool]:
    """(port probed, shared node check?) of a LoadBalancer Service's health check."""
    spec = svc.get("spec", {})
    if spec.get("externalTrafficPolicy") == "Local" and spec.get("healthCheckNodePort"):
        return int(spec["healthCheckNodePort"]), False
    return HEALTHZ_PORT, True


def check_for_service(svc: dict, timing: Timing) -> CheckSpec:
    """The health check GKE sets up for a LoadBalancer Service.

    Local without a healthCheckNodePort falls back to the nodes check, as GKE does.
    """
    timeout = timing.lb_health_check_timeout
    port, shared = health_check_port(svc)
    if not shared:
        return CheckSpec("Local", port, LOCAL_PATH,
                         timing.lb_health_check_interval_local, timeout, *LOCAL_THRESHOLDS)
    return CheckSpec("Cluster", port, HEALTHZ_PATH,
                     timing.lb_health_check_interval_cluster, timeout, *CLUSTER_THRESHOLDS)


@dataclass
class NodeHealth:
    """The health of one node as seen by one load balancer."""

    healthy: bool = False
    successes: int = 0      # consecutive
    failures: int = 0       # consecutive
    since: float | None = None   # time of the last transition (None: never healthy yet)
    last_probe: float | None = None
    last_ok: bool | None = None
    probes: int = 0


class HealthState:
    """Per (service, node) state machines with the thresholds of each Service's check."""

    def __init__(self) -> None:
        self.checks: dict[str, CheckSpec] = {}
        self.nodes: dict[str, dict[str, NodeHealth]] = {}
        self.transitions: list[dict] = []

    def set_check(self, service: str, spec: CheckSpec, nodes: Iterable[str]) -> bool:
        """Check `nodes` for `service` with `spec`; True when its state started over.

        New nodes start unhealthy; nodes not listed are forgotten; a different spec
        forgets every node's history (a new health check).
        """
        reset = self.checks.get(service) != spec
        self.checks[service] = spec
        have = {} if reset else self.nodes.get(service, {})
        self.nodes[service] = {n: have.get(n) or NodeHealth() for n in nodes}
        return reset

    def remove(self, service: str) -> None:
        """The Service is no longer a load balancer: forget it."""
        self.checks.pop(service, None)
        self.nodes.pop(service, None)

    def services(self) -> list[str]:
        return sorted(self.checks)

    def record(self, service: str, node: str, ok: bool, now: float) -> dict | None:
        """One probe result; returns the transition it caused (also kept in `transitions`)."""
        spec = self.checks.get(service)
        h = self.nodes.get(service, {}).get(node)
        if spec is None or h is None:
            return None  # the check or the node went away while the probe was out
        h.probes += 1
        h.last_probe, h.last_ok = now, ok
        if ok:
            h.successes, h.failures = h.successes + 1, 0
            if not h.healthy and h.successes >= spec.healthy_threshold:
                return self._transition(service, node, h, True, now, spec, h.successes)
        else:
            h.successes, h.failures = 0, h.failures + 1
            if h.healthy and h.failures >= spec.unhealthy_threshold:
                return self._transition(service, node, h, False, now, spec, h.failures)
        return None

    def _transition(self, service: str, node: str, h: NodeHealth, healthy: bool, now: float,
                    spec: CheckSpec, count: int) -> dict:
        first = h.since is None
        h.healthy, h.since = healthy, now
        event = {"time": now, "service": service, "node": node, "healthy": healthy,
                 "state": "HEALTHY" if healthy else "UNHEALTHY", "first": first,
                 "policy": spec.policy, "port": spec.port, "path": spec.path,
                 "consecutive": count}
        self.transitions.append(event)
        return event

    def is_healthy(self, service: str, node: str) -> bool:
        h = self.nodes.get(service, {}).get(node)
        return bool(h and h.healthy)

    def healthy_nodes(self, service: str) -> list[str]:
        """Nodes that receive the Service's new connections, sorted."""
        return sorted(n for n, h in self.nodes.get(service, {}).items() if h.healthy)

    def checked_nodes(self, service: str) -> list[str]:
        return sorted(self.nodes.get(service, {}))

    def snapshot(self) -> dict[str, dict]:
        """JSON-able view: per Service its check and each node's health."""
        out = {}
        for svc, spec in sorted(self.checks.items()):
            out[svc] = {"policy": spec.policy, "port": spec.port, "path": spec.path,
                        "interval": spec.interval, "timeout": spec.timeout,
                        "nodes": {n: {"healthy": h.healthy, "since": h.since, "last_probe": h.last_probe,
                                      "last_ok": h.last_ok, "successes": h.successes,
                                      "failures": h.failures, "probes": h.probes}
                                  for n, h in sorted(self.nodes.get(svc, {}).items())}}
        return out


@dataclass(frozen=True)
class Probe:
    """One probe to send: (service, node) and where; `generation` spots stale results."""

    service: str
    node: str
    ip: str
    port: int
    path: str
    generation: int
    sent_at: float

    @property
    def target(self) -> tuple[str, int, str]:
        return (self.ip, self.port, self.path)


@dataclass
class _Schedule:
    ip: str
    next_due: float
    generation: int


@dataclass
class HealthChecker:
    """Decides which probes are due and feeds their results to a `HealthState`.

    A newly checked (service, node) is probed at once, then every `interval` seconds
    (on a fixed cadence; when far behind, the cadence restarts from now).
    """

    state: HealthState = field(default_factory=HealthState)
    _schedule: dict[tuple[str, str], _Schedule] = field(default_factory=dict)
    _generation: int = 0

    def configure(self, checks: Mapping[str, CheckSpec], node_ips: Mapping[str, str], now: float) -> None:
        """The load balancers to check (service -> spec) and the nodes (name -> IP)."""
        for svc in [s for s in self.state.services() if s not in checks]:
            self.state.remove(svc)
        for key in [k for k in self._schedule if k[0] not in checks or k[1] not in node_ips]:
            del self._schedule[key]
        for svc, spec in checks.items():
            reset = self.state.set_check(svc, spec, node_ips)
            for node, ip in node_ips.items():
                sched = self._schedule.get((svc, node))
                if sched is None or reset or sched.ip != ip:
                    self._generation += 1
                    self._schedule[(svc, node)] = _Schedule(ip, now, self._generation)

    def due(self, now: float) -> list[Probe]:
        """Probes to send now; their next run is scheduled."""
        out = []
        for (svc, node), sched in sorted(self._schedule.items()):
            if sched.next_due > now:
                continue
            spec = self.state.checks[svc]
            out.append(Probe(svc, node, sched.ip, spec.port, spec.path, sched.generation, now))
            sched.next_due += spec.interval
            if sched.next_due <= now:
                sched.next_due = now + spec.interval
        return out

    def next_due(self) -> float | None:
        """When the next probe is due (None: nothing to check)."""
        return min((s.next_due for s in self._schedule.values()), default=None)

    def record(self, probes: Iterable[Probe], oks: Iterable[bool], now: float) -> list[dict]:
        """Feed results (same order as `probes`); returns the transitions they caused."""
        out = []
        for p, ok in zip(probes, oks):
            sched = self._schedule.get((p.service, p.node))
            if sched is None or sched.generation != p.generation:
                continue  # the check changed while this probe was out
            t = self.state.record(p.service, p.node, bool(ok), now)
            if t is not None:
                out.append(t)
        return out


def group_targets(probes: list[Probe]) -> tuple[list[tuple[str, int, str]], list[int]]:
    """Unique targets of a batch and, per probe, the index of its target.

    Load balancers sharing the node health check (Cluster policy) probe the same URL;
    one request answers all of them.
    """
    targets: list[tuple[str, int, str]] = []
    index: dict[tuple[str, int, str], int] = {}
    where = []
    for p in probes:
        t = p.target
        if t not in index:
            index[t] = len(targets)
            targets.append(t)
        where.append(index[t])
    return targets, where


@dataclass
class LateAnswers:
    """Probe answers that came after the timeout from a node whose connection was accepted in
    time (emulator/workloads/hc_prober.py): the emulating process was late, not the node.
    They count by their status; the run reports them as load."""

    count: int = 0
    passed: int = 0
    nodes: set[str] = field(default_factory=set)
    first: float | None = None

    def note(self, probes: list[Probe], where: list[int], results: list, now: float) -> None:
        """Count each late target of a batch once (`results`: (passed, late) per target)."""
        for i, (passed, late) in enumerate(results):
            if not late or i not in where:
                continue
            self.count += 1
            self.passed += bool(passed)
            self.nodes.add(probes[where.index(i)].node)
            self.first = now if self.first is None else self.first

    def summary(self) -> dict | None:
        """{answers, passed, nodes, first} (None when every answer was in time)."""
        if not self.count:
            return None
        return {"answers": self.count, "passed": self.passed, "nodes": sorted(self.nodes), "first": self.first}

