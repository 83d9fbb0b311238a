"""What the API server rejects: schema errors (strict unknown fields) and Service field rules.

Causes are worded as the API server's field errors (`Invalid value: 0: must be between 1
and 65535, inclusive`), so kubectl prints what it prints against a real cluster.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import pydantic

from emulator.config.extra_kinds import BackendConfig
from emulator.config.manifests import _openapi_validator
from emulator.config.types import is_dns_label, is_dns_subdomain
from emulator.labels import label_selector_matches

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PROTOCOLS = ("TCP", "UDP", "SCTP")


def _path(loc: tuple) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, str) else ("null" if v is None else str(v))


def cause(field: str, reason: str, message: str) -> dict:
    """A StatusCause."""
    return {"reason": reason, "message": message, "field": field}


def model_problems(obj: dict, model: type[pydantic.BaseModel]) -> tuple[list[tuple], list[dict]]:
    """(unknown field locations, causes) from a pydantic model of a kind kubemu adds."""
    try:
        model.model_validate(obj)
    except pydantic.ValidationError as exc:
        unknown, causes = [], []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                unknown.append(loc)
            else:
                causes.append(cause(_path(loc), "FieldValueInvalid",
                                    f"Invalid value: {_value(err.get('input'))}: {err['msg']}"))
        return unknown, causes
    return [], []


def schema_problems(obj: dict) -> tuple[list[tuple], list[dict]]:
    """(unknown field locations, causes) from the bundled strict schema; no schema -> nothing."""
    if obj.get("kind") == "BackendConfig":
        return model_problems(obj, BackendConfig)
    try:
        validator = _openapi_validator(obj.get("apiVersion", ""), obj.get("kind", ""))
    except (FileNotFoundError, KeyError):
        return [], []
    unknown: list[tuple] = []
    causes: list[dict] = []
    for err in validator.iter_errors(obj):
        loc = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = set(err.schema.get("properties", {}))
            unknown += [loc + (k,) for k in err.instance if k not in known]
        elif err.validator == "required" and isinstance(err.instance, dict):
            for k in err.validator_value:
                if k not in err.instance:
                    causes.append(cause(_path(loc + (k,)), "FieldValueRequired", "Required value"))
        elif err.validator == "enum":
            allowed = ", ".join(json.dumps(v) for v in err.validator_value if v is not None)
            causes.append(cause(_path(loc), "FieldValueNotSupported",
                                f"Unsupported value: {_value(err.instance)}: supported values: {allowed}"))
        else:
            causes.append(cause(_path(loc), "FieldValueInvalid", f"Invalid value: {_value(err.instance)}: {err.message}"))
    return sorted(set(unknown)), causes


def _port(field: str, v: Any) -> Iterator[dict]:
    if isinstance(v, int) and not 1 <= v <= 65535:
        yield cause(field, "FieldValueInvalid", f"Invalid value: {v}: must be between 1 and 65535, inclusive")


def service_problems(svc: dict) -> Iterator[dict]:
    """Service rules the schema does not carry (ports, type, protocol, names)."""
    spec = svc.get("spec") or {}
    typ = spec.get("type", "ClusterIP")
    if typ not in SERVICE_TYPES:
        allowed = ", ".join(f'"{t}"' for t in SERVICE_TYPES)
        yield cause("spec.type", "FieldValueNotSupported", f"Unsupported value: {_value(typ)}: supported values: {allowed}")
    ports = spec.get("ports") or []
    if not ports and typ != "ExternalName" and spec.get("clusterIP") != "None":
        yield cause("spec.ports", "FieldValueRequired", "Required value")
    names = set()
    for i, p in enumerate(ports):
        f = f"spec.ports[{i}]"
        yield from _port(f + ".port", p.get("port"))
        tp = p.get("targetPort")
        if isinstance(tp, int):
            yield from _port(f + ".targetPort", tp)
        if p.get("protocol", "TCP") not in PROTOCOLS:
            allowed = ", ".join(f'"{t}"' for t in PROTOCOLS)
            yield cause(f + ".protocol", "FieldValueNotSupported",
                        f"Unsupported value: {_value(p.get('protocol'))}: supported values: {allowed}")
        np = p.get("nodePort")
        if np and typ not in ("NodePort", "LoadBalancer"):
            yield cause(f + ".nodePort", "FieldValueForbidden", "Forbidden: may not be used when `type` is 'ClusterIP'")
        if len(ports) > 1 and not p.get("name"):
            yield cause(f + ".name", "FieldValueRequired", "Required value")
        if p.get("name") in names:
            yield cause(f + ".name", "FieldValueDuplicate", f"Duplicate value: {_value(p.get('name'))}")
        names.add(p.get("name"))


def _go_map(labels: dict) -> str:
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"


def pod_spec_problems(spec: dict, prefix: str) -> Iterator[dict]:
    """Unique container names (as the API server checks them)."""
    seen: set[str] = set()
    for i, c in enumerate(spec.get("containers") or []):
        name = c.get("name")
        if name in seen:
            yield cause(f"{prefix}.containers[{i}].name", "FieldValueDuplicate", f"Duplicate value: {_value(name)}")
        seen.add(name)


def workload_problems(obj: dict) -> Iterator[dict]:
    """Deployments and ReplicaSets: a selector that selects the template's labels."""
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        yield cause("spec.selector", "FieldValueRequired", "Required value")
    elif not label_selector_matches(selector, labels):
        yield cause("spec.template.metadata.labels", "FieldValueInvalid",
                    f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`")
    yield from pod_spec_problems(template.get("spec") or {}, "spec.template.spec")


def name_problems(obj: dict, dns_label: bool) -> Iterator[dict]:
    """metadata.name: required and a DNS subdomain (a DNS-1035 label for Services and Namespaces)."""
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        yield cause("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")
        return
    if dns_label and not (is_dns_label(name) and name[0].isalpha()):
        yield cause("metadata.name", "FieldValueInvalid",
                    f"Invalid value: {_value(name)}: a DNS-1035 label must consist of lower case alphanumeric "
                    "characters or '-', start with an alphabetic character, and end with an alphanumeric character")
    elif not dns_label and not is_dns_subdomain(name):
        yield cause("metadata.name", "FieldValueInvalid",
                    f"Invalid value: {_value(name)}: a lowercase RFC 1123 subdomain must consist of lower case "
                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")


def drop_fields(obj: dict, locs: list[tuple]) -> None:
    """Remove the fields at these locations (unknown fields the client asked to ignore)."""
    for loc in sorted(locs, key=len, reverse=True):
        x: Any = obj
        for step in loc[:-1]:
            x = x[step]
        x.pop(loc[-1], None)


def path_text(loc: tuple) -> str:
    """spec.ports[0].port."""
    return _path(loc)


def problems(obj: dict) -> tuple[list[tuple], list[dict]]:
    """(unknown fields, causes) of an object about to be stored."""
    unknown, causes = schema_problems(obj)
    causes += list(name_problems(obj, obj.get("kind") in ("Service", "Namespace")))
    if obj.get("kind") == "Service":
        causes += list(service_problems(obj))
    elif obj.get("kind") in ("Deployment", "ReplicaSet"):
        causes += list(workload_problems(obj))
    elif obj.get("kind") == "Pod":
        causes += list(pod_spec_problems(obj.get("spec") or {}, "spec"))
    return unknown, causes
