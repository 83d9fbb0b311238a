"""Semantic checks of manifests beyond their schemas, each error naming file, line and field.

Per object: what the API server would reject and kubemu relies on (Service types and
ports, unique container and port names, one probe handler, a Deployment selector that
matches its template). Across objects: namespaces that exist and no duplicate objects; a
Service whose selector selects nothing yet is valid (the API server accepts it) and only
gives a warning line.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable, Iterator

from emulator.config.manifests import ManifestObject
from emulator.config.size_checks import replicas_problem
from emulator.config.source import Loc
from emulator.config.templates import render_dummy
from emulator.config.types import is_dns_label
from emulator.gke import NODE_PORT_RANGE, NODE_PORT_RANGE_TEXT
from emulator.labels import label_selector_matches

BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
TRAFFIC_POLICIES = ("Cluster", "Local")
PROTOCOLS = ("TCP", "UDP", "SCTP")
PROBE_HANDLERS = ("httpGet", "tcpSocket", "exec", "grpc")
POLICY_TYPES = ("Ingress", "Egress")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
_IANA_SVC_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


def is_port_name(name: str) -> bool:
    """An IANA service name: <= 15 chars, lowercase alphanumerics and '-', a letter, no '--'."""
    return bool(_IANA_SVC_NAME_RE.match(name)) and "--" not in name and any(c.isalpha() for c in name)


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions) against labels; empty matches all."""
    return label_selector_matches(selector, labels)


def service_selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """A Service selector (all its labels must match) against pod labels."""
    return all(labels.get(k) == v for k, v in selector.items())


def pod_templates(objects: Iterable[ManifestObject]) -> Iterator[tuple[ManifestObject, dict[str, str]]]:
    """(object, pod labels) for every Pod and every Deployment's pod template."""
    for mo in objects:
        if mo.kind == "Pod":
            yield mo, mo.obj["metadata"].get("labels") or {}
        elif mo.kind == "Deployment":
            template = (mo.obj.get("spec") or {}).get("template") or {}
            yield mo, (template.get("metadata") or {}).get("labels") or {}


def check_object(mo: ManifestObject) -> None:
    """Per-object semantic checks; raise the first problem as a ConfigError."""
    checker = {"Service": _service_problems, "Pod": _pod_problems,
               "Deployment": _deployment_problems, "NetworkPolicy": _policy_problems}.get(mo.kind)
    for loc, message in checker(mo.obj) if checker else ():
        raise mo.error(loc, message)


def check_objects(objects: list[ManifestObject]) -> list[str]:
    """Cross-object checks: namespaces exist, no duplicates; warnings for Services selecting nothing."""
    namespaces = set(BUILTIN_NAMESPACES) | {mo.name for mo in objects if mo.kind == "Namespace"}
    seen: dict[tuple[str, str | None, str], ManifestObject] = {}
    for mo in objects:
        if mo.namespace is not None and mo.namespace not in namespaces:
            raise mo.error(("metadata", "namespace"),
                           f"namespace {mo.namespace!r} does not exist (add a Namespace object)")
        first = seen.get(mo.key)
        if first is not None:
            raise mo.error(("metadata", "name"), f"duplicate {mo.ref} (first defined at {first.where})")
        seen[mo.key] = mo
    return selector_warnings(objects)


def selector_warnings(objects: list[ManifestObject]) -> list[str]:
    """`FILE:LINE: spec.selector: warning: ...` for each Service no Pod or template matches yet."""
    templates = list(pod_templates(objects))
    warnings = []
    for mo in objects:
        if mo.kind != "Service":
            continue
        selector = (mo.obj.get("spec") or {}).get("selector") or {}
        if not selector:
            continue    # a Service without selector has manually managed endpoints
        if not any(t.namespace == mo.namespace and service_selects(selector, labels)
                   for t, labels in templates):
            shown = ", ".join(f"{k}={v}" for k, v in selector.items())
            warnings.append(str(mo.error(("spec", "selector"),
                                         f"warning: selector {shown} selects nothing yet: no Pod or "
                                         f"Deployment template in namespace {mo.namespace!r} has all "
                                         "these labels (valid: the Service has no endpoints until one does)")))
    return warnings


def _service_problems(obj: dict[str, Any]) -> Iterator[tuple[Loc, str]]:
    """Service type, traffic policies, ports and source ranges."""
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    if kind not in SERVICE_TYPES:
        yield ("spec", "type"), f"unknown Service type {kind!r} (one of {', '.join(SERVICE_TYPES)})"
    for key in ("externalTrafficPolicy", "internalTrafficPolicy"):
        if key in spec and spec[key] not in TRAFFIC_POLICIES:
            yield ("spec", key), f"{spec[key]!r} is not one of {', '.join(TRAFFIC_POLICIES)}"
    if kind == "ExternalName" and not spec.get("externalName"):
        yield ("spec", "externalName"), "required for type ExternalName"
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        yield ("spec", "ports"), "a Service needs at least one port"
    names: set[str] = set()
    used: set[tuple[int, str]] = set()
    for i, port in enumerate(ports):
        loc: Loc = ("spec", "ports", i)
        name, proto = port.get("name"), port.get("protocol", "TCP")
        if len(ports) > 1 and not name:
            yield loc, "name is required when a Service has several ports"
        if name in names:
            yield loc + ("name",), f"duplicate port name {name!r}"
        names.add(name)
        if proto not in PROTOCOLS:
            yield loc + ("protocol",), f"{proto!r} is not one of {', '.join(PROTOCOLS)}"
        if not 1 <= port["port"] <= 65535:
            yield loc + ("port",), f"{port['port']} is not a port number (1-65535)"
        if (port["port"], proto) in used:
            yield loc + ("port",), f"duplicate port {port['port']}/{proto}"
        used.add((port["port"], proto))
        yield from _target_port_problems(port.get("targetPort"), loc + ("targetPort",))
        node_port = port.get("nodePort")
        if node_port is not None and not NODE_PORT_RANGE[0] <= node_port <= NODE_PORT_RANGE[1]:
            yield loc + ("nodePort",), f"{node_port} is outside the NodePort range {NODE_PORT_RANGE_TEXT}"
    for i, cidr in enumerate(spec.get("loadBalancerSourceRanges") or []):
        yield from _cidr_problems(cidr, ("spec", "loadBalancerSourceRanges", i))


def _target_port_problems(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """targetPort: a port number or the name of a container port."""
    if isinstance(value, int) and not 1 <= value <= 65535:
        yield loc, f"{value} is not a port number (1-65535)"
    elif isinstance(value, str) and not value.isdigit() and not is_port_name(value):
        yield loc, f"{value!r} is not a valid port name"


def _cidr_problems(value: str, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """A CIDR written in a manifest. Host bits are accepted, as the API server accepts them
    (ParseCIDRSloppy) in ipBlock and loadBalancerSourceRanges: kubemu uses the masked network."""
    try:
        ipaddress.ip_network(render_dummy(value) if isinstance(value, str) else value, strict=False)
    except ValueError as exc:
        yield loc, f"invalid CIDR {value!r}: {exc}"


def _pod_problems(obj: dict[str, Any]) -> Iterator[tuple[Loc, str]]:
    """A Pod's spec."""
    yield from _pod_spec_problems(obj.get("spec") or {}, ("spec",))


def _pod_spec_problems(spec: dict[str, Any], at: Loc) -> Iterator[tuple[Loc, str]]:
    """Containers present, unique container and port names, one handler per probe."""
    containers = spec.get("containers") or []
    if not containers:
        yield at + ("containers",), "a pod needs at least one container"
    yield from _dns_problems(spec, at)
    names: set[str] = set()
    port_names: set[str] = set()
    for i, container in enumerate(containers):
        loc = at + ("containers", i)
        if container["name"] in names:
            yield loc + ("name",), f"duplicate container name {container['name']!r}"
        names.add(container["name"])
        own_ports: set[str] = set()
        for j, port in enumerate(container.get("ports") or []):
            pname = port.get("name")
            if pname is None:
                continue
            if not is_port_name(pname):
                yield loc + ("ports", j, "name"), (f"{pname!r} is not a valid port name (at most 15 "
                                                    "lowercase letters, digits and '-')")
            if pname in port_names:
                yield loc + ("ports", j, "name"), f"duplicate port name {pname!r} in the pod"
            port_names.add(pname)
            own_ports.add(pname)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if container.get(probe):
                yield from _probe_problems(container[probe], own_ports, loc + (probe,))
        sc = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
        if sc.get("runAsNonRoot") and sc.get("runAsUser") == 0:
            yield loc + ("securityContext",), "runAsNonRoot is true but runAsUser is 0"


def _dns_problems(spec: dict[str, Any], at: Loc) -> Iterator[tuple[Loc, str]]:
    """dnsPolicy, dnsConfig, hostname and subdomain as the API server validates them."""
    policy = spec.get("dnsPolicy", "ClusterFirst")
    if policy not in DNS_POLICIES:
        yield at + ("dnsPolicy",), f"{policy!r} is not one of {', '.join(DNS_POLICIES)}"
    config = spec.get("dnsConfig") or {}
    servers = config.get("nameservers") or []
    if policy == "None" and not servers:
        yield at + ("dnsConfig", "nameservers"), "at least one nameserver is required when dnsPolicy is None"
    if len(servers) > 3:
        yield at + ("dnsConfig", "nameservers"), "at most 3 nameservers"
    for i, server in enumerate(servers):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            yield at + ("dnsConfig", "nameservers", i), f"{server!r} is not an IP address"
    if len(config.get("searches") or []) > 32:
        yield at + ("dnsConfig", "searches"), "at most 32 search domains"
    for key in ("hostname", "subdomain"):
        if key in spec and not is_dns_label(str(spec[key])):
            yield at + (key,), f"{spec[key]!r} is not a DNS label (lowercase letters, digits and '-')"


def _probe_problems(probe: dict[str, Any], ports: set[str], loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Exactly one handler; a named port must be a port of the container."""
    handlers = [h for h in PROBE_HANDLERS if h in probe]
    if len(handlers) != 1:
        yield loc, f"a probe needs exactly one of {', '.join(PROBE_HANDLERS)}"
        return
    port = (probe[handlers[0]] or {}).get("port") if handlers[0] in ("httpGet", "tcpSocket") else None
    if isinstance(port, str) and not port.isdigit() and port not in ports:
        yield loc + (handlers[0], "port"), f"no container port named {port!r}"


def _deployment_problems(obj: dict[str, Any]) -> Iterator[tuple[Loc, str]]:
    """The selector is non-empty and matches the template's labels; the template is a valid pod."""
    spec = obj.get("spec") or {}
    selector = spec.get("selector") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if "replicas" in spec and (problem := replicas_problem(spec["replicas"])):
        yield ("spec", "replicas"), problem
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        yield ("spec", "selector"), "an empty selector is not allowed"
    elif not selector_matches(selector, labels):
        yield ("spec", "selector"), "selector does not match the template's labels " \
            f"({', '.join(f'{k}={v}' for k, v in labels.items()) or 'none'})"
    yield from _pod_spec_problems((spec.get("template") or {}).get("spec") or {},
                                  ("spec", "template", "spec"))


def _policy_problems(obj: dict[str, Any]) -> Iterator[tuple[Loc, str]]:
    """policyTypes values and ipBlock CIDRs."""
    spec = obj.get("spec") or {}
    for i, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in POLICY_TYPES:
            yield ("spec", "policyTypes", i), f"{kind!r} is not one of {', '.join(POLICY_TYPES)}"
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            for j, peer in enumerate(rule.get(peers_key) or []):
                block = peer.get("ipBlock")
                if not block:
                    continue
                loc: Loc = ("spec", direction, i, peers_key, j, "ipBlock")
                yield from _cidr_problems(block["cidr"], loc + ("cidr",))
                for k, cidr in enumerate(block.get("except") or []):
                    yield from _cidr_problems(cidr, loc + ("except", k))
                    yield from _except_problems(block["cidr"], cidr, loc + ("except", k))
            for j, port in enumerate(rule.get("ports") or []):
                if port.get("protocol", "TCP") not in PROTOCOLS:
                    yield ("spec", direction, i, "ports", j, "protocol"), \
                        f"{port['protocol']!r} is not one of {', '.join(PROTOCOLS)}"
                yield from _policy_port_problems(port, ("spec", direction, i, "ports", j))


def _except_problems(cidr: str, exc: str, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """An ipBlock except lies inside its cidr (as the API server requires)."""
    try:
        inside = ipaddress.ip_network(render_dummy(exc), strict=False).subnet_of(
            ipaddress.ip_network(render_dummy(cidr), strict=False))
    except (ValueError, TypeError):
        return          # reported by _cidr_problems
    if not inside:
        yield loc, f"{exc} is not inside the ipBlock's cidr {cidr}"


def _policy_port_problems(port: dict[str, Any], loc: Loc) -> Iterator[tuple[Loc, str]]:
    """A NetworkPolicy port: a number or a port name; endPort only after a number, not below it."""
    value = port.get("port")
    if value is not None:
        yield from _target_port_problems(value, loc + ("port",))
    if "endPort" in port:
        if not isinstance(value, int):
            yield loc + ("endPort",), "endPort needs a numeric port"
        elif port["endPort"] < value:
            yield loc + ("endPort",), f"endPort {port['endPort']} is below port {value}"
