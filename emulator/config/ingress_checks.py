"""Checks of Ingress manifests against the other objects of a scenario, as GKE's controller does.

Every backend names a Service of the scenario with that port; without container-native
load balancing (`cloud.google.com/neg: '{"ingress": true}'`) the Service must be NodePort
or LoadBalancer; a `cloud.google.com/backend-config` annotation names an existing
BackendConfig; `tls` names a `kubernetes.io/tls` Secret. The same rules, and a
BackendConfig's `securityPolicy` naming a SecurityPolicy (a GCP resource on GKE, so it may
be added later by a step), are applied at run time: errors in the Ingress's status.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from emulator.gke import BACKEND_CONFIG_ANNOTATION, NEG_ANNOTATION, is_neg
from emulator.config.manifests import ManifestObject
from emulator.config.source import Loc


def check_ingresses(objects: list[ManifestObject]) -> None:
    """Raise the first problem of an Ingress (or a BackendConfig it uses) as a ConfigError."""
    index = {(mo.kind, mo.namespace, mo.name): mo for mo in objects}
    for mo in objects:
        if mo.kind != "Ingress":
            continue
        for loc, message in _ingress_problems(mo, index):
            raise mo.error(loc, message)


def _backends(spec: dict[str, Any]) -> Iterator[tuple[Loc, str, Any]]:
    """(location, service name, port) of every backend, v1 and v1beta1."""
    for key in ("defaultBackend", "backend"):
        b = spec.get(key)
        if b:
            yield from _one(b, ("spec", key))
    for i, rule in enumerate(spec.get("rules") or []):
        for j, path in enumerate((rule.get("http") or {}).get("paths") or []):
            yield from _one(path.get("backend") or {}, ("spec", "rules", i, "http", "paths", j, "backend"))


def _one(b: dict[str, Any], loc: Loc) -> Iterator[tuple[Loc, str, Any]]:
    if "service" in b:
        port = b["service"].get("port") or {}
        yield loc + ("service", "name"), b["service"]["name"], port.get("number") or port.get("name")
    elif "serviceName" in b:
        yield loc + ("serviceName",), b["serviceName"], b.get("servicePort")


def _ingress_problems(mo: ManifestObject, index: dict) -> Iterator[tuple[Loc, str]]:
    ns = mo.namespace
    spec = mo.obj.get("spec") or {}
    for loc, name, port in _backends(spec):
        svc = index.get(("Service", ns, name))
        if svc is None:
            yield loc, f"backend Service {ns}/{name} is not in the manifests"
            continue
        sspec = svc.obj.get("spec") or {}
        ports = sspec.get("ports") or []
        if not any(port in (p.get("port"), p.get("name")) or str(port) == str(p.get("port")) for p in ports):
            yield loc, f"Service {ns}/{name} has no port {port}"
        typ = sspec.get("type", "ClusterIP")
        if typ not in ("NodePort", "LoadBalancer") and not is_neg(svc.obj):
            yield loc, (f"Service {ns}/{name} is of type {typ}: an Ingress backend must be NodePort or "
                        f"LoadBalancer, or annotate it {NEG_ANNOTATION}: '{{\"ingress\": true}}'")
        raw = ((svc.obj.get("metadata") or {}).get("annotations") or {}).get(BACKEND_CONFIG_ANNOTATION)
        if raw:
            yield from _backend_config_problems(loc, ns, name, raw, index)
    for i, t in enumerate(spec.get("tls") or []):
        sec = t.get("secretName")
        if sec and index.get(("Secret", ns, sec)) is None:
            yield ("spec", "tls", i, "secretName"), f"TLS Secret {ns}/{sec} is not in the manifests"
        elif sec and index[("Secret", ns, sec)].obj.get("type") != "kubernetes.io/tls":
            yield ("spec", "tls", i, "secretName"), f"Secret {ns}/{sec} is not of type kubernetes.io/tls"


def _backend_config_problems(loc: Loc, ns: str, svc: str, raw: str, index: dict) -> Iterator[tuple[Loc, str]]:
    try:
        data = json.loads(raw)
        names = ([data["default"]] if "default" in data else []) + list((data.get("ports") or {}).values())
    except (ValueError, AttributeError, TypeError):
        yield loc, f"Service {ns}/{svc}: {BACKEND_CONFIG_ANNOTATION} is not JSON like {{\"default\": \"NAME\"}}"
        return
    for bc in names:
        if index.get(("BackendConfig", ns, bc)) is None:
            yield loc, f"Service {ns}/{svc} names BackendConfig {ns}/{bc}, which is not in the manifests"
