"""The scenario model: a topology, Kubernetes manifests, and steps (wait, sleep, traffic, assert).

Steps are single-key mappings (`{wait: {...}}`); the key picks the step class. Traffic
specs hold one load generator (`http`, `tcp`, `udp`, `ping`, `iperf3`: the optional fields
listed in `TrafficSpec.LOADS`, models in `loads.py`) and may run in the background until
an `await` step. Cross-references (flows, pods, nodes,
hosts, waited objects, timing keys) are checked by `scenario_checks.scenario_problems`
once the manifests are loaded.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (BeforeValidator, Discriminator, Field, PlainValidator, PrivateAttr, Tag,
                      WithJsonSchema, model_validator)

from emulator.config.limits import MAX_REPLICAS, MAX_STEPS
from emulator.config.manifests import ManifestObject
from emulator.config.reachability import LabelStep, ReachabilityStep
from emulator.config.loads import Iperf3Load, Pacing, PingLoad, TcpLoad, UdpLoad, url_problem
from emulator.config.dns_load import DnsLoad
from emulator.config.object_steps import ObjectCondition, SaveStep
from emulator.config.chaos import AvailabilityStep, FaultStep
from emulator.config.timing import Timing, TimingName, timing_for
from emulator.config.machines import Machines
from emulator.config.impairments import Impairments
from emulator.config.topology import StrictModel, Topology
from emulator.config.types import ComparisonField, DnsLabel, Duration, WholeNumber, Comparison
from emulator.config.refs import ObjectRefField, SourceField
from emulator.config.study import CompareStep, SweepStep

PositiveInt = Annotated[int, WholeNumber, Field(ge=1)]


class WaitSpec(StrictModel):
    """Wait until a Deployment is fully ready, a Pod is ready, a Service has endpoints, or
    (`until`) an object's field meets a condition."""

    ready: ObjectRefField | None = None
    until: ObjectCondition | None = None
    namespace: DnsLabel = "default"
    timeout: Duration = 60.0

    @model_validator(mode="after")
    def _one_target(self) -> "WaitSpec":
        """Exactly one of ready and until."""
        if (self.ready is None) == (self.until is None):
            raise ValueError("give exactly one of ready and until")
        return self


class WaitStep(StrictModel):
    """`- wait: {ready: deployment/web, timeout: 60s}`."""

    KIND: ClassVar[str] = "wait"
    wait: WaitSpec


class SleepStep(StrictModel):
    """`- sleep: 2s`."""

    KIND: ClassVar[str] = "sleep"
    sleep: Duration


class HttpLoad(Pacing):
    """HTTP GET requests to one URL: a count and/or a duration, at a concurrency or a rate."""

    url: str
    keepalive: bool = False
    headers: dict[str, str] | None = Field(default=None, description="request headers, e.g. Host: demo.example.com")

    @model_validator(mode="after")
    def _url_is_http(self) -> "HttpLoad":
        """Only http:// and https:// URLs with a host."""
        problem = url_problem(self.url)
        if problem:
            raise ValueError(problem)
        for name, value in (self.headers or {}).items():
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name) or "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r}: a token name and a one-line value")
        return self


class TrafficSpec(StrictModel):
    """A named flow from a source, with exactly one load generator."""

    LOADS: ClassVar[tuple[str, ...]] = ("http", "tcp", "udp", "ping", "iperf3", "dns")
    name: DnsLabel
    from_: SourceField = Field(alias="from")
    background: bool = Field(default=False, description="start the flow and go on; `await` or an assert waits")
    pod: Annotated[int, WholeNumber, Field(ge=0)] | None = Field(
        default=None, description="from: deployment/NAME: only its N-th pod (by name, from 0)")
    pods: Literal["all"] | None = Field(default=None, description="from: deployment/NAME: every pod at once "
                                                                  "(without pod/pods: every pod in turn)")
    http: HttpLoad | None = None
    tcp: TcpLoad | None = None
    udp: UdpLoad | None = None
    ping: PingLoad | None = None
    iperf3: Iperf3Load | None = None
    dns: DnsLoad | None = None

    @model_validator(mode="after")
    def _one_load(self) -> "TrafficSpec":
        """Exactly one of the load generators is given."""
        given = [k for k in self.LOADS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one load generator: {', '.join(self.LOADS)}")
        if (self.pod is not None or self.pods is not None) and self.from_.kind != "deployment":
            raise ValueError("pod and pods apply to from: deployment/NAME only")
        if self.pod is not None and self.pods is not None:
            raise ValueError("give pod (one pod) or pods: all, not both")
        return self

    @property
    def protocol(self) -> str:
        """Which load generator: `http`, ..."""
        return next(k for k in self.LOADS if getattr(self, k) is not None)

    @property
    def load(self) -> HttpLoad | TcpLoad | UdpLoad | PingLoad | Iperf3Load | DnsLoad:
        """The load generator's settings."""
        return getattr(self, self.protocol)


class TrafficStep(StrictModel):
    """`- traffic: {name: ..., from: pod/client, http: {...}}`."""

    KIND: ClassVar[str] = "traffic"
    traffic: TrafficSpec


def _await_list(value: Any) -> str | list[str]:
    """`all` or a non-empty list of flow names."""
    if value == "all":
        return "all"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError("write `all` or a list of background flow names")
    return value


AwaitField = Annotated[str | list[str], PlainValidator(_await_list),
                       WithJsonSchema({"anyOf": [{"const": "all"}, {"type": "array", "items": {"type": "string"}}]})]


class AwaitStep(StrictModel):
    """`- await: [flow-a, flow-b]` or `- await: all`: wait until background flows have finished."""

    KIND: ClassVar[str] = "await"
    await_: AwaitField = Field(alias="await")


def _manifest_entry(value: Any) -> str | dict[str, Any]:
    """A manifest entry: a file path (relative to the scenario) or an inline object."""
    if isinstance(value, (str, dict)) and value:
        return value
    raise ValueError("a manifest entry is a file path or an inline Kubernetes object")


ManifestEntry = Annotated[str | dict[str, Any], PlainValidator(_manifest_entry),
                          WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "object"}]})]


class ApplyStep(StrictModel):
    """`- apply: [file.yaml, {inline object}]`: create or update objects while the cluster runs."""

    KIND: ClassVar[str] = "apply"
    apply: list[ManifestEntry] = Field(min_length=1)


class DeleteSpec(StrictModel):
    """Delete a Deployment, Pod or Service; a Pod gracefully, as `kubectl delete` does
    (`grace_period`: kubectl's --grace-period, default the pod's own; `force`: --force)."""

    object: ObjectRefField
    namespace: DnsLabel = "default"
    grace_period: Annotated[int, WholeNumber, Field(ge=0, le=86400)] | None = None
    force: bool = False


class DeleteStep(StrictModel):
    """`- delete: {object: service/web}`."""

    KIND: ClassVar[str] = "delete"
    delete: DeleteSpec


class ScaleSpec(StrictModel):
    """Set a Deployment's replicas."""

    deployment: DnsLabel
    replicas: Annotated[int, WholeNumber, Field(ge=0, le=MAX_REPLICAS)]
    namespace: DnsLabel = "default"


class ScaleStep(StrictModel):
    """`- scale: {deployment: web, replicas: 4}`."""

    KIND: ClassVar[str] = "scale"
    scale: ScaleSpec


class AssertSpec(StrictModel):
    """Bounds on the results of an earlier flow; each given metric must hold."""

    SET_METRICS: ClassVar[tuple[str, ...]] = ("client_ips_seen", "nodes_served", "entered_nodes", "statuses_seen",
                                              "answers")
    flow: DnsLabel
    minus: DnsLabel | None = Field(
        default=None, description="another flow: each numeric bound holds for this flow's value minus that "
                                  "flow's (e.g. the penalty with delay minus the one without)")
    success_ratio: ComparisonField | None = None
    refused_ratio: ComparisonField | None = None
    timeout_ratio: ComparisonField | None = None
    reset_ratio: ComparisonField | None = None
    loss_ratio: ComparisonField | None = Field(
        default=None, description="share of requests, probes or echoes that got no good answer (1 - success)")
    throughput_mbps: ComparisonField | None = Field(
        default=None, description="iperf3: megabits per second received (0 when no test succeeded)")
    distinct_backends: ComparisonField | None = None
    extra_hop_ratio: ComparisonField | None = Field(
        default=None, description="share of requests served by another node than the one they entered")
    entered_without_pod_ratio: ComparisonField | None = Field(
        default=None, description="share of requests that entered a node with no pod of the flow")
    extra_hop_penalty_ms: ComparisonField | None = Field(
        default=None, description="median latency of extra-hop requests minus that of direct ones")
    extra_hop_penalty_ms_ci_low: ComparisonField | None = Field(
        default=None, description="low end of the penalty's 95% bootstrap interval (over trials and requests)")
    extra_hop_penalty_ms_ci_high: ComparisonField | None = Field(
        default=None, description="high end of the penalty's 95% bootstrap interval (over trials and requests)")
    p50_ms: ComparisonField | None = None
    p50_ms_ci_low: ComparisonField | None = Field(
        default=None, description="low end of the p50's 95% bootstrap interval (over trials and requests)")
    p50_ms_ci_high: ComparisonField | None = Field(
        default=None, description="high end of the p50's 95% bootstrap interval (over trials and requests)")
    p90_ms: ComparisonField | None = None
    p99_ms: ComparisonField | None = None
    max_ms: ComparisonField | None = None
    client_ips_seen: list[str] | None = Field(
        default=None, description="exactly these client IPs reached the pods ({node:N}, {host:H}, ...)")
    nodes_served: list[str] | None = Field(default=None, description="exactly these nodes' pods answered")
    entered_nodes: list[str] | None = Field(
        default=None, description="exactly these nodes received the requests (load balancer's choice)")
    statuses_seen: list[Annotated[int, WholeNumber, Field(ge=100, le=599)]] | None = Field(
        default=None, description="exactly these HTTP status codes were answered (e.g. [404])")
    answers: list[str] | None = Field(
        default=None, description="dns: the last question's answers are exactly these (order ignored)")
    contains: dict[str, list[str | int]] | None = Field(
        default=None, description="set metric -> values it must include, e.g. {nodes_served: [n1]}")
    not_contains: dict[str, list[str | int]] | None = Field(
        default=None, description="set metric -> values it must not include, e.g. {answers: ['{pod:db-1}']}")

    @model_validator(mode="after")
    def _some_metric(self) -> "AssertSpec":
        """At least one metric is bounded; contains/not_contains name set metrics."""
        if not self.checks() and not self.set_checks() and not self.contains and not self.not_contains:
            raise ValueError("give at least one metric: " + ", ".join(self._metrics()))
        for key in ("contains", "not_contains"):
            for metric in getattr(self, key) or {}:
                if metric not in self.SET_METRICS:
                    raise ValueError(f"{key}: {metric!r} is not a set metric ({', '.join(self.SET_METRICS)})")
        if self.minus is not None:
            other = [n for n in self.set_checks()] + (["contains"] if self.contains else []) + \
                (["not_contains"] if self.not_contains else []) + [n for n in self.checks() if "_ci_" in n]
            if other:
                raise ValueError(f"minus compares point values only; it cannot go with {', '.join(other)} "
                                 "(an interval's end minus another's means nothing)")
            if self.minus == self.flow:
                raise ValueError("minus names the flow itself")
        return self

    @classmethod
    def _metrics(cls) -> list[str]:
        """Names of the metric fields."""
        return [n for n in cls.model_fields if n not in ("flow", "minus", "contains", "not_contains")]

    def checks(self) -> dict[str, Comparison]:
        """metric name -> bound, for the numeric metrics given."""
        return {n: getattr(self, n) for n in self._metrics()
                if n not in self.SET_METRICS and getattr(self, n) is not None}

    def set_checks(self) -> dict[str, list[str]]:
        """metric name -> expected set (as a list), for the set metrics given."""
        return {n: getattr(self, n) for n in self.SET_METRICS if getattr(self, n) is not None}


def _assert_kind(value: Any) -> str:
    """The union tag: `object-assert` for an object assertion, `flow-assert` otherwise
    (tags that are no data key, so error locations name the data)."""
    if isinstance(value, (AssertSpec, ObjectCondition)):
        return "object-assert" if isinstance(value, ObjectCondition) else "flow-assert"
    return "object-assert" if isinstance(value, dict) and "object" in value else "flow-assert"


class AssertStep(StrictModel):
    """`- assert: {flow: NAME, success_ratio: ">= 1.0"}` or `- assert: {object: ..., field: ..., equals: ...}`."""

    KIND: ClassVar[str] = "assert"
    assert_: Annotated[Union[Annotated[AssertSpec, Tag("flow-assert")], Annotated[ObjectCondition, Tag("object-assert")]],
                       Discriminator(_assert_kind)] = Field(alias="assert")


class ImpairStep(StrictModel):
    """`- impair: {inter_node: {delay: 1ms}}`: change link impairments while the cluster runs."""

    KIND: ClassVar[str] = "impair"
    impair: Impairments


STEP_CLASSES: tuple[type[StrictModel], ...] = (WaitStep, SleepStep, TrafficStep, AssertStep, ApplyStep,
                                                DeleteStep, ScaleStep, AwaitStep, ImpairStep,
                                                ReachabilityStep, LabelStep, FaultStep,
                                                AvailabilityStep, CompareStep, SweepStep, SaveStep)
STEP_KINDS = tuple(c.KIND for c in STEP_CLASSES)   # type: ignore[attr-defined]


def _step_kind(value: Any) -> str | None:
    """The step's single key, or None when it has none or several."""
    if isinstance(value, StrictModel):
        return getattr(value, "KIND", None)
    if isinstance(value, dict):
        keys = [k for k in value if k in STEP_KINDS]
        return keys[0] if len(keys) == 1 else None
    return None


Step = Annotated[
    Union[tuple(Annotated[c, Tag(c.KIND)] for c in STEP_CLASSES)],  # type: ignore[misc,attr-defined]
    Discriminator(_step_kind, custom_error_type="invalid_step",
                  custom_error_message="a step is a mapping with exactly one of: " + ", ".join(STEP_KINDS)),
]


def _topology_resolved(value: Any) -> Any:
    """The loader replaces a topology path by the loaded Topology before validation."""
    if isinstance(value, str):
        raise ValueError("a topology path is resolved by load_scenario(), not by validation alone")
    return value


TopologyField = Annotated[Topology, BeforeValidator(_topology_resolved, json_schema_input_type=str | Topology)]


class Scenario(StrictModel):
    """A scenario file: where to run (topology), what to deploy (manifests), what to do (steps)."""

    name: DnsLabel
    description: str | None = None
    topology: TopologyField
    timing: TimingName = "fast"
    machines: Machines = Field(default_factory=Machines)
    timing_overrides: dict[str, Duration] = Field(default_factory=dict)
    seed: Annotated[int, WholeNumber] | None = Field(default=None, description="seeds random fault targets (replayable)")
    impairments: Impairments | None = Field(
        default=None, description="link impairments replacing the topology's, per link class")
    manifests: list[ManifestEntry] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)
    report: list[Literal["summary", "backends", "latency"]] = Field(default_factory=lambda: ["summary"])

    _file: str | None = PrivateAttr(default=None)
    _topology_file: str | None = PrivateAttr(default=None)
    _objects: list[ManifestObject] = PrivateAttr(default_factory=list)
    _step_objects: dict[int, list[ManifestObject]] = PrivateAttr(default_factory=dict)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def file(self) -> str | None:
        """The scenario file this was loaded from."""
        return self._file

    @property
    def topology_file(self) -> str | None:
        """The topology file, or None when the topology is inline."""
        return self._topology_file

    @property
    def objects(self) -> list[ManifestObject]:
        """Every Kubernetes object of the manifests, in file order, namespaces defaulted."""
        return self._objects

    def link_impairments(self) -> Impairments:
        """The topology's link impairments with the scenario's classes replacing them."""
        return self.topology.impairments.merged(self.impairments)

    def timings(self) -> Timing:
        """The timing profile with the scenario's overrides applied."""
        return timing_for(self.timing, self.timing_overrides)

    def flows(self) -> dict[str, TrafficSpec]:
        """Traffic specs by flow name."""
        return {s.traffic.name: s.traffic for s in self.steps if isinstance(s, TrafficStep)}

    def find(self, kind: str, namespace: str | None, name: str) -> ManifestObject | None:
        """The object of that kind, namespace and name, if the manifests define it."""
        every = self._objects + [o for objs in self._step_objects.values() for o in objs]
        return next((o for o in every if o.key == (kind, namespace, name)), None)

    def step_objects(self, index: int) -> list[ManifestObject]:
        """The objects of the apply step at `index` (validated like manifests)."""
        return self._step_objects.get(index, [])
