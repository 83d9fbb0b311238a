"""The `reachability` and `label` steps: a probe matrix with a compact expectation, and label edits.

    - reachability:
        name: deny-ingress-x
        pods: [x/a, x/b, y/a]
        ports: [80/tcp, 81/tcp, 80/udp]
        expect: {default: allow, deny: ["*/* -> x/*"], allow: ["x/* -> x/*:80/tcp"]}

Each pair is probed through the target pod's own Service (`service`, default
`s-{namespace}-{pod}` as in the upstream netpol e2e suite). The expectation starts at
`default`, then `deny` patterns, then `allow` patterns (the later wins). A pattern is
`FROM -> TO[:PORT/PROTO]`, FROM and TO `namespace/pod` globs; a pod always reaches itself.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, WithJsonSchema, model_validator

from emulator.config.source import Loc
from emulator.config.topology import StrictModel
from emulator.config.types import DnsLabel, Duration

_POD_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
_PORT_RE = re.compile(r"^([0-9]{1,5})/(tcp|udp|sctp)$")
_GLOB = r"[-.a-z0-9*?]+/[-.a-z0-9*?]+"
_PATTERN_RE = re.compile(rf"^\s*({_GLOB})\s*->\s*({_GLOB})(?::([0-9]{{1,5}}|\*)/(tcp|udp|sctp|\*))?\s*$")
_TARGET_RE = re.compile(r"^(pod/[a-z0-9-]+/[a-z0-9.-]+|namespace/[a-z0-9-]+)$")


@dataclass(frozen=True)
class ProbePort:
    """`80/tcp`: a port and a protocol (upper case, as Kubernetes writes it)."""

    port: int
    protocol: str

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol.lower()}"

    @classmethod
    def parse(cls, text: Any) -> "ProbePort":
        """`PORT/tcp`, `PORT/udp` or `PORT/sctp`."""
        if isinstance(text, ProbePort):
            return text
        m = _PORT_RE.match(text) if isinstance(text, str) else None
        if not m or not 1 <= int(m.group(1)) <= 65535:
            raise ValueError(f"invalid port {text!r}: write PORT/tcp, PORT/udp or PORT/sctp (1-65535)")
        return cls(int(m.group(1)), m.group(2).upper())


@dataclass(frozen=True)
class PairPattern:
    """`x/* -> y/a:80/tcp`: which (from, to, port) cells a deny/allow entry covers."""

    src: str
    dst: str
    port: str = "*"
    protocol: str = "*"

    def covers(self, src: str, dst: str, port: ProbePort) -> bool:
        """True when the cell (from pod, to pod, port) matches."""
        return fnmatch.fnmatchcase(src, self.src) and fnmatch.fnmatchcase(dst, self.dst) and \
            self.port in ("*", str(port.port)) and self.protocol in ("*", port.protocol.lower())

    @classmethod
    def parse(cls, text: Any) -> "PairPattern":
        """`FROM -> TO` or `FROM -> TO:PORT/PROTO` (globs with `*`)."""
        if isinstance(text, PairPattern):
            return text
        m = _PATTERN_RE.match(text) if isinstance(text, str) else None
        if not m:
            raise ValueError(f"invalid pattern {text!r}: write NS/POD -> NS/POD or NS/POD -> NS/POD:PORT/PROTO "
                             "(globs allowed, e.g. \"*/* -> x/a:80/tcp\")")
        return cls(m.group(1), m.group(2), m.group(3) or "*", m.group(4) or "*")


def _pod_ref(text: Any) -> str:
    """`namespace/pod`."""
    if not isinstance(text, str) or not _POD_RE.match(text):
        raise ValueError(f"invalid pod {text!r}: write NAMESPACE/POD")
    return text


PodRef = Annotated[str, PlainValidator(_pod_ref), WithJsonSchema({"type": "string", "pattern": _POD_RE.pattern})]
PortField = Annotated[ProbePort, PlainValidator(ProbePort.parse),
                      WithJsonSchema({"type": "string", "pattern": _PORT_RE.pattern})]
PatternField = Annotated[PairPattern, PlainValidator(PairPattern.parse),
                         WithJsonSchema({"type": "string", "pattern": _PATTERN_RE.pattern})]


class Expectation(StrictModel):
    """The expected matrix: a default, then denied cells, then allowed cells."""

    default: Literal["allow", "deny"] = "allow"
    deny: list[PatternField] = Field(default_factory=list)
    allow: list[PatternField] = Field(default_factory=list)

    def allows(self, src: str, dst: str, port: ProbePort) -> bool:
        """The expected outcome of one cell."""
        if src == dst:
            return True
        ok = self.default == "allow"
        if any(p.covers(src, dst, port) for p in self.deny):
            ok = False
        if any(p.covers(src, dst, port) for p in self.allow):
            ok = True
        return ok


class ReachabilitySpec(StrictModel):
    """Probe every pod pair on every port; compare with the expectation."""

    name: DnsLabel | None = None
    pods: list[PodRef] = Field(min_length=1)
    ports: list[PortField] = Field(default_factory=lambda: [ProbePort(80, "TCP")], min_length=1)
    service: str = Field(default="s-{namespace}-{pod}", description="each target pod's own Service")
    timeout: Duration = Field(default=1.0, description="per probe; a blocked probe is retried once")
    expect: Expectation = Field(default_factory=Expectation)

    @model_validator(mode="after")
    def _distinct(self) -> "ReachabilitySpec":
        """No pod or port twice."""
        for what, items in (("pod", self.pods), ("port", [str(p) for p in self.ports])):
            dup = next((x for i, x in enumerate(items) if x in items[:i]), None)
            if dup is not None:
                raise ValueError(f"{what} {dup} is listed twice")
        try:
            self.service.format(namespace="n", pod="p")
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"service {self.service!r}: only {{namespace}} and {{pod}} may be used") from None
        return self

    def service_of(self, pod: str) -> tuple[str, str]:
        """(namespace, Service name) probed for a target pod."""
        ns, name = pod.split("/", 1)
        return ns, self.service.format(namespace=ns, pod=name)


class ReachabilityStep(StrictModel):
    """`- reachability: {pods: [...], ports: [...], expect: {...}}`."""

    KIND: ClassVar[str] = "reachability"
    reachability: ReachabilitySpec


class LabelSpec(StrictModel):
    """Set (or, with null, remove) labels of a running Pod or a Namespace."""

    object: Annotated[str, Field(pattern=_TARGET_RE.pattern, description="pod/NAMESPACE/NAME or namespace/NAME")]
    labels: dict[str, str | None] = Field(min_length=1)


class LabelStep(StrictModel):
    """`- label: {object: pod/x/a, labels: {team: blue, old: null}}`."""

    KIND: ClassVar[str] = "label"
    label: LabelSpec


def reachability_problems(scenario, step: StrictModel) -> list[tuple[Loc, str]]:
    """Pods, their Services and labelled objects must exist in the manifests."""
    problems: list[tuple[Loc, str]] = []
    if isinstance(step, LabelStep):
        kind, _, rest = step.label.object.partition("/")
        ns, _, name = rest.rpartition("/")
        if kind == "pod" and scenario.find("Pod", ns, name) is None:
            problems.append((("object",), f"no Pod {ns}/{name} in the manifests"))
        return problems
    spec = step.reachability
    if not scenario.topology.cluster.network_policy and (spec.expect.default == "deny" or spec.expect.deny):
        problems.append((("expect",), "expects blocked traffic, but the topology does not enable network "
                                      "policy (cluster.network_policy: true), so no policy is enforced"))
    for j, pod in enumerate(spec.pods):
        ns, name = pod.split("/", 1)
        if scenario.find("Pod", ns, name) is None:
            problems.append((("pods", j), f"no Pod {pod} in the manifests"))
            continue
        svc_ns, svc = spec.service_of(pod)
        if scenario.find("Service", svc_ns, svc) is None:
            problems.append((("pods", j), f"no Service {svc_ns}/{svc} (the probe target of {pod}) in the manifests"))
    return problems
