"""References written in scenario steps: `deployment/web` (ObjectRef), `pod/NS/client` (TrafficSource).

Shared by the scenario steps and the study steps (compare, sweep), which both name sources.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import PlainValidator, WithJsonSchema


@dataclass(frozen=True)
class ObjectRef:
    """`deployment/web` in a wait step: a kind (lowercase) and a name."""

    KINDS: ClassVar[dict[str, str]] = {"deployment": "Deployment", "pod": "Pod", "service": "Service",
                                       "networkpolicy": "NetworkPolicy", "ingress": "Ingress"}
    kind: str
    name: str

    @property
    def api_kind(self) -> str:
        """The Kubernetes kind: `Deployment`, `Pod` or `Service`."""
        return self.KINDS[self.kind]

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"

    @classmethod
    def parse(cls, text: Any) -> "ObjectRef":
        """`deployment/NAME`, `pod/NAME` or `service/NAME`."""
        if isinstance(text, ObjectRef):
            return text
        kind, _, name = text.partition("/") if isinstance(text, str) else ("", "", "")
        if kind not in cls.KINDS or not name or "/" in name:
            raise ValueError(f"invalid reference {text!r}: write deployment/NAME, pod/NAME, service/NAME, "
                             "networkpolicy/NAME or ingress/NAME")
        return cls(kind, name)


@dataclass(frozen=True)
class TrafficSource:
    """Where traffic starts: a pod (with namespace), a node, or a client host."""

    kind: Literal["pod", "node", "host", "deployment"]
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        if self.kind in ("pod", "deployment"):
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"

    @classmethod
    def parse(cls, text: Any) -> "TrafficSource":
        """`pod/NAME`, `pod/NS/NAME`, `node/NAME` or `host/NAME`."""
        if isinstance(text, TrafficSource):
            return text
        parts = text.split("/") if isinstance(text, str) else []
        if len(parts) == 2 and parts[0] == "pod" and parts[1]:
            return cls("pod", parts[1], "default")
        if len(parts) == 3 and parts[0] == "pod" and parts[1] and parts[2]:
            return cls("pod", parts[2], parts[1])
        if len(parts) == 2 and parts[0] in ("node", "host") and parts[1]:
            return cls(parts[0], parts[1])   # type: ignore[arg-type]
        if len(parts) in (2, 3) and parts[0] == "deployment" and all(parts[1:]):
            return cls("deployment", parts[-1], parts[1] if len(parts) == 3 else "default")
        raise ValueError(f"invalid source {text!r}: write pod/NAME, pod/NAMESPACE/NAME, node/NAME, host/NAME "
                         "or deployment/[NAMESPACE/]NAME")


ObjectRefField = Annotated[ObjectRef, PlainValidator(ObjectRef.parse),
                           WithJsonSchema({"type": "string", "pattern": "^(deployment|pod|service|networkpolicy|ingress)/[^/]+$"})]
SourceField = Annotated[TrafficSource, PlainValidator(TrafficSource.parse),
                        WithJsonSchema({"type": "string",
                                        "pattern": "^((pod|deployment)/([^/]+/)?[^/]+|node/[^/]+|host/[^/]+)$"})]
