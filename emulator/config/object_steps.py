"""Steps on API objects' fields: `wait: {until: ...}`, object assertions and `save`.

    - wait: {until: {object: endpointslices?service=web, field: "endpoints[*].conditions.ready",
                     equals: [true, true]}, timeout: 30s}
    - assert: {object: service/web, field: spec.clusterIP, equals: "{var:web-ip}"}
    - save: {name: web-ip, from: {object: service/web, field: spec.clusterIP}}
    - save: {name: p50, from: {flow: t1, field: total_ms.p50}}

An object is `KIND/NAME`, `KIND/NAMESPACE/NAME` (or `namespace:`), or
`endpointslices?service=NAME`: the EndpointSlices of a Service (label
kubernetes.io/service-name) seen as one object whose `endpoints` are every slice's,
sorted by address, and whose `ports` are the first slice's. Fields use fieldpath.py.
A condition is one of `equals: V` (V's placeholders rendered when V is text),
`empty: true` (absent, null, "", [] or {}), `absent: true` (the field is not there) or
`gone: true` (the object does not exist).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, PlainValidator, WithJsonSchema, model_validator
from typing_extensions import Annotated

from emulator.config.fieldpath import FieldPathError, parse
from emulator.config.topology import StrictModel
from emulator.config.types import DnsLabel

KINDS = {"pod": "Pod", "service": "Service", "deployment": "Deployment", "endpointslice": "EndpointSlice",
         "node": "Node", "namespace": "Namespace", "networkpolicy": "NetworkPolicy", "ingress": "Ingress",
         "replicaset": "ReplicaSet", "secret": "Secret"}
CLUSTER_SCOPED = ("Node", "Namespace")
CONDITIONS = ("equals", "empty", "absent", "gone")
_SLICES_RE = re.compile(r"^endpointslices?\?service=([a-z0-9]([-a-z0-9]*[a-z0-9])?)$")
VAR_RE = re.compile(r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")


@dataclass(frozen=True)
class ObjectTarget:
    """What an `object:` names: an API kind, a namespace (None: from `namespace:`) and a name,
    or (kind EndpointSlice with `service`) a Service's slices."""

    kind: str
    name: str
    namespace: str | None = None
    service: str | None = None

    def __str__(self) -> str:
        if self.service:
            return f"endpointslices?service={self.service}"
        lower = next(k for k, v in KINDS.items() if v == self.kind)
        return f"{lower}/{self.namespace + '/' if self.namespace else ''}{self.name}"

    @classmethod
    def parse(cls, text: Any) -> "ObjectTarget":
        """`KIND/NAME`, `KIND/NS/NAME` or `endpointslices?service=NAME`."""
        if isinstance(text, ObjectTarget):
            return text
        if not isinstance(text, str):
            raise ValueError("write KIND/NAME, KIND/NAMESPACE/NAME or endpointslices?service=NAME")
        if m := _SLICES_RE.match(text):
            return cls("EndpointSlice", "", None, m.group(1))
        parts = text.split("/")
        if len(parts) in (2, 3) and parts[0] in KINDS and all(parts[1:]):
            return cls(KINDS[parts[0]], parts[-1], parts[1] if len(parts) == 3 else None)
        raise ValueError(f"invalid object {text!r}: write KIND/NAME, KIND/NAMESPACE/NAME or "
                         f"endpointslices?service=NAME (KIND: {', '.join(KINDS)})")


ObjectTargetField = Annotated[ObjectTarget, PlainValidator(ObjectTarget.parse),
                              WithJsonSchema({"type": "string", "pattern": r"^([a-z]+/([^/]+/)?[^/]+|endpointslices?\?service=[a-z0-9-]+)$"})]


def _field_ok(path: str | None) -> None:
    """Raise ValueError for a field path that does not parse."""
    if path is not None:
        try:
            parse(path)
        except FieldPathError as exc:
            raise ValueError(str(exc)) from None


class ObjectCondition(StrictModel):
    """A condition on an object's field (or on the object's existence)."""

    object: ObjectTargetField
    namespace: DnsLabel = "default"
    field: str | None = Field(default=None, description="JSONPath-like: spec.clusterIP, endpoints[0].conditions.ready, "
                                                        "endpoints[*].addresses[0], endpoints[hostname=db-1].conditions.ready")
    equals: Any = Field(default=None, description="the field's value is this (text: placeholders rendered)")
    empty: bool | None = Field(default=None, description="true: absent, null, '', [] or {}")
    absent: bool | None = Field(default=None, description="true: the field is not there")
    gone: bool | None = Field(default=None, description="true: the object does not exist")

    @model_validator(mode="after")
    def _one_condition(self) -> "ObjectCondition":
        """Exactly one condition; a field unless `gone`; the field parses."""
        given = [c for c in CONDITIONS if c in self.model_fields_set]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(CONDITIONS)}")
        if given[0] in ("empty", "absent", "gone") and getattr(self, given[0]) is not True:
            raise ValueError(f"{given[0]} must be true")
        if given[0] != "gone" and self.field is None:
            raise ValueError("field is required (except with gone: true)")
        _field_ok(self.field)
        return self

    @property
    def namespace_of(self) -> str | None:
        """The object's namespace (None for cluster-scoped kinds)."""
        if self.object.kind in CLUSTER_SCOPED:
            return None
        return self.object.namespace or self.namespace

    def condition(self) -> str:
        """Which condition: equals | empty | absent | gone."""
        return next(c for c in CONDITIONS if c in self.model_fields_set)

    def describe(self) -> str:
        """`service/web spec.clusterIP equals '10.8.0.2'`."""
        c = self.condition()
        what = f"{c} {self.equals!r}" if c == "equals" else c
        return f"{self.object}{' ' + self.field if self.field else ''} {what}"


class SaveSource(StrictModel):
    """Where a saved value comes from: an object's field or a flow summary's field."""

    object: ObjectTargetField | None = None
    flow: DnsLabel | None = None
    namespace: DnsLabel = "default"
    field: str

    @model_validator(mode="after")
    def _one_source(self) -> "SaveSource":
        """Exactly one of object and flow; the field parses."""
        if (self.object is None) == (self.flow is None):
            raise ValueError("give exactly one of object and flow")
        _field_ok(self.field)
        return self


class SaveSpec(StrictModel):
    """Save a value under a name, usable later as `{var:NAME}`."""

    name: str = Field(description="lowercase letters, digits, '-' and '_'")
    from_: SaveSource = Field(alias="from")

    @model_validator(mode="after")
    def _name_ok(self) -> "SaveSpec":
        if not VAR_RE.match(self.name) or len(self.name) > 63:
            raise ValueError(f"name {self.name!r}: lowercase letters, digits, '-' and '_' (at most 63)")
        return self


class SaveStep(StrictModel):
    """`- save: {name: web-ip, from: {object: service/web, field: spec.clusterIP}}`."""

    KIND: ClassVar[str] = "save"
    save: SaveSpec
