"""The state NetworkPolicy enforcement depends on, as plain immutable values.

Pods, namespaces and policies come from API objects (`pod_from`, `namespace_from`,
`policy_from`); both the evaluator and the renderer take a `PolicyState`.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

NAME_LABEL = "kubernetes.io/metadata.name"
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class PodInfo:
    """A pod as policy sees it: identity, labels, IP and named container ports."""

    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ip: str | None = None
    node: str | None = None
    named_ports: dict[tuple[str, str], int] = field(default_factory=dict, hash=False)  # (name, proto) -> port

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PolicyPort:
    """One entry of a rule's `ports`: protocol and a number, a name or a range (None: any port)."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True)
class Peer:
    """One entry of `from`/`to`: selectors (None: absent) or an ipBlock."""

    pod_selector: dict | None = None
    namespace_selector: dict | None = None
    cidr: str | None = None
    except_: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """An ingress or egress rule: empty peers match every address, empty ports every port."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A NetworkPolicy: which pods it selects, for which directions, with which rules."""

    namespace: str
    name: str
    pod_selector: dict = field(default_factory=dict, hash=False)
    ingress: tuple[Rule, ...] | None = None        # None: Ingress not in policyTypes
    egress: tuple[Rule, ...] | None = None

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PolicyState:
    """Everything enforcement depends on: pods, namespace labels, policies."""

    pods: tuple[PodInfo, ...] = ()
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict, hash=False)
    policies: tuple[Policy, ...] = ()

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """A namespace's labels, always with `kubernetes.io/metadata.name`."""
        return {**self.namespaces.get(namespace, {}), NAME_LABEL: namespace}


def pod_from(obj: dict[str, Any]) -> PodInfo:
    """A PodInfo from a Pod object (named ports from every container)."""
    meta, spec = obj["metadata"], obj.get("spec", {})
    ports: dict[tuple[str, str], int] = {}
    for c in spec.get("containers", []) or []:
        for p in c.get("ports", []) or []:
            if p.get("name"):
                ports[(p["name"], p.get("protocol", "TCP"))] = p["containerPort"]
    return PodInfo(meta.get("namespace", "default"), meta["name"], dict(meta.get("labels") or {}),
                   (obj.get("status") or {}).get("podIP"), spec.get("nodeName"), ports)


def namespace_from(obj: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(name, labels) of a Namespace object."""
    return obj["metadata"]["name"], dict(obj["metadata"].get("labels") or {})


def _rules(raw: list[dict] | None, side: str) -> tuple[Rule, ...]:
    """Rules of one direction; `side` is `from` (ingress) or `to` (egress)."""
    out = []
    for r in raw or []:
        peers = []
        for p in r.get(side) or []:
            block = p.get("ipBlock")
            if block:
                peers.append(Peer(cidr=str(ipaddress.ip_network(block["cidr"], strict=False)),
                                  except_=tuple(str(ipaddress.ip_network(e, strict=False))
                                                for e in block.get("except") or [])))
            else:
                peers.append(Peer(p.get("podSelector"), p.get("namespaceSelector")))
        ports = tuple(PolicyPort(q.get("protocol", "TCP"), q.get("port"), q.get("endPort"))
                      for q in r.get("ports") or [])
        out.append(Rule(tuple(peers), ports))
    return tuple(out)


def policy_from(obj: dict[str, Any]) -> Policy:
    """A Policy from a NetworkPolicy object, with Kubernetes' policyTypes defaulting."""
    meta, spec = obj["metadata"], obj.get("spec", {})
    types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))
    return Policy(meta.get("namespace", "default"), meta["name"], spec.get("podSelector") or {},
                  _rules(spec.get("ingress"), "from") if "Ingress" in types else None,
                  _rules(spec.get("egress"), "to") if "Egress" in types else None)


def state_from(pods: list[dict], namespaces: list[dict], policies: list[dict]) -> PolicyState:
    """A PolicyState from API objects; host-network and finished pods are no policy's business."""
    live = [p for p in pods if not (p.get("spec") or {}).get("hostNetwork")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    return PolicyState(tuple(sorted((pod_from(p) for p in live), key=lambda p: p.key)),
                       dict(namespace_from(n) for n in namespaces),
                       tuple(sorted((policy_from(p) for p in policies), key=lambda p: p.key)))
