"""Placeholders in traffic URLs and expected values, resolved when the step runs.

Addresses and ports are allocated at run time (node IPs, ClusterIPs, node ports, load
balancer IPs), so a scenario names them symbolically:

    {node:NAME}        a node's IP              {host:NAME}       a client host's IP
    {pod:[NS/]NAME}    a pod's IP               {clusterip:[NS/]SVC}
    {nodeport:[NS/]SVC[:PORT]}  a node port (PORT: the Service port's name or number)
    {lbip:[NS/]SVC}    the load balancer IP     {hcport:[NS/]SVC}  the healthCheckNodePort
    {ingressip:[NS/]ING}  an Ingress's external IP (its HTTP(S) load balancer)
    {poddns:[NS/]NAME} a pod's DNS name, `a-b-c-d.<ns>.pod.cluster.local`
    {var:NAME}         a value an earlier `save` step stored
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

KINDS = ("node", "host", "pod", "clusterip", "nodeport", "lbip", "hcport", "ingressip", "poddns", "var")
PLACEHOLDER = re.compile(r"\{(" + "|".join(KINDS) + r"):([a-z0-9_.\-/:]+)\}")
_DUMMY = {"node": "192.0.2.1", "host": "192.0.2.2", "pod": "192.0.2.3", "clusterip": "192.0.2.4",
          "nodeport": "30000", "lbip": "192.0.2.5", "hcport": "30001",
          "ingressip": "192.0.2.6", "poddns": "192-0-2-3.default.pod.cluster.local",
          "var": "192.0.2.7"}


@dataclass(frozen=True)
class Placeholder:
    """One `{kind:ref}`: ref is split into namespace, name and (node ports) port."""

    kind: str
    namespace: str
    name: str
    port: str | None = None

    @classmethod
    def parse(cls, kind: str, ref: str) -> "Placeholder":
        port = None
        if kind == "nodeport" and ":" in ref:
            ref, port = ref.split(":", 1)
        ns, _, name = ref.rpartition("/")
        return cls(kind, ns or "default", name, port)


def placeholders(text: str) -> list[Placeholder]:
    """Every placeholder in `text`, in order."""
    return [Placeholder.parse(m.group(1), m.group(2)) for m in PLACEHOLDER.finditer(text)]


def render(text: str, resolve: Callable[[Placeholder], str]) -> str:
    """`text` with each placeholder replaced by `resolve(placeholder)`."""
    return PLACEHOLDER.sub(lambda m: str(resolve(Placeholder.parse(m.group(1), m.group(2)))), text)


def render_dummy(text: str) -> str:
    """`text` with documentation addresses in place of placeholders (for validation)."""
    return PLACEHOLDER.sub(lambda m: _DUMMY[m.group(1)], text)


def render_values(value: Any, resolve: Callable[[Placeholder], str]) -> Any:
    """A copy of a manifest object (or any JSON value) with placeholders rendered in every
    string: `{pod:client}/32` in an ipBlock, `{host:vm-1}/32` in loadBalancerSourceRanges."""
    if isinstance(value, str):
        return render(value, resolve) if "{" in value else value
    if isinstance(value, dict):
        return {k: render_values(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [render_values(v, resolve) for v in value]
    return value
