"""Pure NetworkPolicy evaluation: is one connection allowed, as Kubernetes defines it.

No policy selecting a pod for a direction: allowed. Selected: allowed only if some rule
of some selecting policy matches (policies add up). A connection needs both the
source's egress and the destination's ingress. A pod always reaches itself.
"""
from __future__ import annotations

import ipaddress

from emulator.labels import label_selector_matches
from emulator.netpol.model import Peer, PodInfo, Policy, PolicyPort, PolicyState, Rule

Endpoint = PodInfo | str          # a pod, or a bare IP address outside the cluster's pods


def selects(policy: Policy, pod: PodInfo) -> bool:
    """True when the policy's podSelector picks this pod (same namespace only)."""
    return policy.namespace == pod.namespace and label_selector_matches(policy.pod_selector, pod.labels)


def in_block(ip: str | None, peer: Peer) -> bool:
    """True when `ip` is inside the ipBlock's cidr and outside every except."""
    if ip is None or peer.cidr is None:
        return False
    addr = ipaddress.ip_address(ip)
    return addr in ipaddress.ip_network(peer.cidr) and \
        not any(addr in ipaddress.ip_network(e) for e in peer.except_)


def peer_matches(peer: Peer, policy_ns: str, other: Endpoint, state: PolicyState) -> bool:
    """True when the other end of the connection is one of the peer's addresses."""
    if peer.cidr is not None:
        return in_block(other.ip if isinstance(other, PodInfo) else other, peer)
    if not isinstance(other, PodInfo):
        return False
    if peer.namespace_selector is None:
        ns_ok = other.namespace == policy_ns
    else:
        ns_ok = label_selector_matches(peer.namespace_selector, state.namespace_labels(other.namespace))
    return ns_ok and (peer.pod_selector is None or label_selector_matches(peer.pod_selector, other.labels))


def port_number(entry: PolicyPort, dst: Endpoint) -> tuple[int, int] | None:
    """The (first, last) ports an entry stands for at this destination; None: no port."""
    if entry.port is None:
        return (1, 65535)
    if isinstance(entry.port, int):
        return (entry.port, entry.end_port or entry.port)
    if isinstance(dst, PodInfo) and (entry.port, entry.protocol) in dst.named_ports:
        n = dst.named_ports[(entry.port, entry.protocol)]
        return (n, n)
    return None


def port_matches(entry: PolicyPort, dst: Endpoint, port: int, proto: str) -> bool:
    """True when the entry covers `port`/`proto` at the destination."""
    span = port_number(entry, dst) if entry.protocol == proto else None
    return span is not None and span[0] <= port <= span[1]


def rule_matches(rule: Rule, policy_ns: str, other: Endpoint, dst: Endpoint, port: int, proto: str,
                 state: PolicyState) -> bool:
    """A rule allows when some peer matches (or none are given) and some port does (or none)."""
    peer_ok = not rule.peers or any(peer_matches(p, policy_ns, other, state) for p in rule.peers)
    port_ok = not rule.ports or any(port_matches(q, dst, port, proto) for q in rule.ports)
    return peer_ok and port_ok


def direction_allows(pod: PodInfo, other: Endpoint, dst: Endpoint, port: int, proto: str,
                     state: PolicyState, direction: str) -> bool:
    """`direction` is `ingress` (pod receives from other) or `egress` (pod sends to other)."""
    selecting = [p for p in state.policies if getattr(p, direction) is not None and selects(p, pod)]
    if not selecting:
        return True
    return any(rule_matches(r, p.namespace, other, dst, port, proto, state)
               for p in selecting for r in getattr(p, direction))


def allowed(src: Endpoint, dst: Endpoint, port: int, proto: str, state: PolicyState) -> bool:
    """True when a new connection from `src` to `dst` on `port`/`proto` is allowed."""
    if isinstance(src, PodInfo) and isinstance(dst, PodInfo) and src.key == dst.key:
        return True
    if isinstance(src, PodInfo) and not direction_allows(src, dst, dst, port, proto, state, "egress"):
        return False
    if isinstance(dst, PodInfo) and not direction_allows(dst, src, dst, port, proto, state, "ingress"):
        return False
    return True
