"""Chaos steps of a scenario: `fault` (break or repair something) and `availability` (assert on
what the clients of a flow saw around a fault).

    - fault: {name: crash-b, action: crash, node: random, at: 5s, since: probe-local}
    - fault: {action: recover, of: crash-b}
    - availability: {flow: probe-local, fault: crash-b, recovered_within: 10s, max_error_ratio: 0.2}
    - fault: {name: zone-down, action: machine-failure, machine: 1}   # needs machines.count >= 2

`at` is seconds after the step list started, or after the flow named by `since` started;
without `at` the fault happens when the step is reached. `node: random` (and `zone:
random`, a random pod of `deployment:`) draws from the scenario's `seed`.
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from emulator.config.source import Loc
from emulator.config.topology import StrictModel
from emulator.config.types import ComparisonField, DnsLabel, Duration

FaultAction = Literal["crash", "partition", "recover", "zone-outage", "pod-kill", "kube-proxy-crash",
                      "link-flap", "sdn-restart", "api-restart", "controller-manager-restart", "machine-failure"]
RANDOM = "random"


class FaultSpec(StrictModel):
    """One fault (or its repair) and where and when it happens."""

    name: DnsLabel | None = Field(default=None, description="label for results, plots and `of:`")
    action: FaultAction
    node: str | None = Field(default=None, description="a node of the topology or `random`")
    zone: str | None = Field(default=None, description="zone-outage/recover: a zone or `random`")
    machine: int | None = Field(default=None, strict=True,
                                description="machine-failure/recover: a machine's index, 1 to machines.count - 1 "
                                            "(machine 0 runs the control plane)")
    of: DnsLabel | None = Field(default=None, description="recover: the nodes an earlier fault took down")
    deployment: DnsLabel | None = Field(default=None, description="pod-kill: a random pod of it")
    pod: DnsLabel | None = Field(default=None, description="pod-kill: this pod")
    namespace: DnsLabel = "default"
    at: Duration | None = Field(default=None, description="seconds after the steps (or `since`) started")
    since: DnsLabel | None = Field(default=None, description="a traffic flow whose start `at` counts from")
    down: Duration = Field(default=1.0, description="kube-proxy-crash: restart delay; link-flap: time down")

    @model_validator(mode="after")
    def _target_given(self) -> "FaultSpec":
        """Each action names what it needs and nothing it ignores."""
        need = {"crash": ["node"], "partition": ["node"], "kube-proxy-crash": ["node"], "link-flap": ["node"],
                "zone-outage": ["zone"], "machine-failure": ["machine"]}.get(self.action, [])
        for f in need:
            if getattr(self, f) is None:
                raise ValueError(f"action {self.action} needs `{f}`")
        if self.action == "recover" and [self.node, self.zone, self.of, self.machine].count(None) != 3:
            raise ValueError("action recover needs exactly one of `node`, `zone`, `of`, `machine`")
        if self.machine is not None and self.action not in ("machine-failure", "recover"):
            raise ValueError(f"action {self.action} takes no `machine` (only machine-failure and recover)")
        if self.action == "pod-kill" and (self.pod is None) == (self.deployment is None):
            raise ValueError("action pod-kill needs exactly one of `pod`, `deployment`")
        if self.since is not None and self.at is None:
            raise ValueError("`since` needs `at`")
        return self

    def label(self, index: int) -> str:
        """The fault's name, or `ACTION-STEP` when it has none."""
        return self.name or f"{self.action}-{index + 1}"


class FaultStep(StrictModel):
    """`- fault: {action: crash, node: default-pool-a-1}`."""

    KIND: ClassVar[str] = "fault"
    fault: FaultSpec


class AvailabilitySpec(StrictModel):
    """Bounds on a flow's availability around a fault (per 100 ms bins of request starts)."""

    flow: DnsLabel
    fault: DnsLabel | None = Field(default=None, description="measure from this fault (default: the first)")
    recovered_within: Duration | None = Field(default=None, description="back to 100% success this soon")
    max_error_ratio: float | None = Field(default=None, ge=0, le=1, description="failed share of all requests")
    stable: Duration = Field(default=5.0, description="recovered = this long without a failure")
    detect_ms: ComparisonField | None = None
    recover_ms: ComparisonField | None = None
    downtime_ms: ComparisonField | None = None
    requests_lost: ComparisonField | None = None
    final_success_ratio: ComparisonField | None = Field(default=None, description="success in the last second")

    BOUNDS: ClassVar[tuple[str, ...]] = ("detect_ms", "recover_ms", "downtime_ms", "requests_lost",
                                         "final_success_ratio")

    @model_validator(mode="after")
    def _some_bound(self) -> "AvailabilitySpec":
        """At least one bound."""
        if self.recovered_within is None and self.max_error_ratio is None and \
                all(getattr(self, b) is None for b in self.BOUNDS):
            raise ValueError("give at least one of: recovered_within, max_error_ratio, " + ", ".join(self.BOUNDS))
        return self


class AvailabilityStep(StrictModel):
    """`- availability: {flow: probe, recovered_within: 10s}`."""

    KIND: ClassVar[str] = "availability"
    availability: AvailabilitySpec


def fault_problems(spec: FaultSpec, topology: Any, flows: set[str], faults: set[str],
                   find: Any, machines: int = 1) -> list[tuple[Loc, str]]:
    """Cross-references of a fault: nodes, zones, machines, flows, earlier faults, Deployments."""
    out: list[tuple[Loc, str]] = []
    if spec.machine == 0:
        out.append((("machine",), "machine 0 cannot fail: it runs the driver and the control plane (API server, "
                                  "controllers, SDN controller); "
                                  + (f"fail machine 1 to {machines - 1}" if machines > 1 else "the scenario has "
                                     "one machine (machines.count: 1)")))
    elif spec.machine is not None and not 1 <= spec.machine < machines:
        out.append((("machine",), f"no machine {spec.machine} (the scenario's machines.count is {machines}; "
                                  "machine 0 runs the control plane and cannot fail)"))
    if spec.node not in (None, RANDOM) and topology.node(spec.node) is None:
        names = ", ".join(n.name for n in topology.nodes())
        out.append((("node",), f"no node {spec.node!r} in the topology (nodes: {names}, or random)"))
    if spec.zone not in (None, RANDOM) and spec.zone not in topology.zones():
        out.append((("zone",), f"no zone {spec.zone!r} in the topology (zones: {', '.join(topology.zones())})"))
    if spec.since is not None and spec.since not in flows:
        out.append((("since",), f"no earlier traffic step named {spec.since!r}"))
    if spec.of is not None and spec.of not in faults:
        out.append((("of",), f"no earlier fault named {spec.of!r} (faults: {', '.join(sorted(faults)) or 'none'})"))
    if spec.deployment is not None and find("Deployment", spec.namespace, spec.deployment) is None:
        out.append((("deployment",), f"no Deployment {spec.namespace}/{spec.deployment} in the manifests"))
    if spec.pod is not None and find("Pod", spec.namespace, spec.pod) is None:
        out.append((("pod",), f"no Pod {spec.namespace}/{spec.pod} in the manifests "
                              "(pods of a Deployment cannot be named; use deployment:)"))
    return out


def availability_problems(spec: AvailabilitySpec, flows: set[str], faults: set[str]) -> list[tuple[Loc, str]]:
    """The flow and the fault ran earlier."""
    out: list[tuple[Loc, str]] = []
    if spec.flow not in flows:
        out.append((("flow",), f"no earlier traffic step named {spec.flow!r}"))
    if spec.fault is not None and spec.fault not in faults:
        out.append((("fault",), f"no earlier fault named {spec.fault!r}"))
    elif spec.fault is None and not faults:
        out.append((("fault",), "no earlier fault step to measure from"))
    return out
