"""kube-proxy's iptables chain names, hashed exactly as pkg/proxy/iptables does.

A Service port `ns/name:port` (`:port` dropped when unnamed) with lowercase protocol
`tcp` owns KUBE-SVC/SVL/EXT/FW chains sharing one suffix: the first 16 characters of
base32(sha256("ns/name:port" + "tcp")). An endpoint chain KUBE-SEP hashes the same
string followed by the endpoint's `IP:port`. Every name fits iptables' 28 characters.
"""
from __future__ import annotations

import hashlib

SVC_PREFIX = "KUBE-SVC-"
SVL_PREFIX = "KUBE-SVL-"
EXT_PREFIX = "KUBE-EXT-"
FW_PREFIX = "KUBE-FW-"
SEP_PREFIX = "KUBE-SEP-"
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, FW_PREFIX, SEP_PREFIX)

# Fixed chains kube-proxy owns.
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
KUBE_FIREWALL = "KUBE-FIREWALL"          # kubelet's chain, also ensured by kube-proxy


def port_name_string(namespace: str, name: str, port_name: str = "") -> str:
    """`ns/name:port`, or `ns/name` for an unnamed port (proxy.ServicePortName.String)."""
    base = f"{namespace}/{name}"
    return f"{base}:{port_name}" if port_name else base


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """The 16-character suffix shared by a Service port's chains."""
    return _hash16(service_port_name + protocol.lower())


def svc_chain(service_port_name: str, protocol: str) -> str:
    """KUBE-SVC-*: dispatch to all usable endpoints (Cluster policy)."""
    return SVC_PREFIX + port_proto_hash(service_port_name, protocol)


def svl_chain(service_port_name: str, protocol: str) -> str:
    """KUBE-SVL-*: dispatch to this node's endpoints only (Local policy)."""
    return SVL_PREFIX + port_proto_hash(service_port_name, protocol)


def ext_chain(service_port_name: str, protocol: str) -> str:
    """KUBE-EXT-*: entry for NodePort, LoadBalancer and external IP traffic."""
    return EXT_PREFIX + port_proto_hash(service_port_name, protocol)


def fw_chain(service_port_name: str, protocol: str) -> str:
    """KUBE-FW-*: loadBalancerSourceRanges filter in front of KUBE-EXT-*."""
    return FW_PREFIX + port_proto_hash(service_port_name, protocol)


def sep_chain(service_port_name: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP-*: one endpoint (`IP:port`) of a Service port."""
    return SEP_PREFIX + _hash16(service_port_name + protocol.lower() + endpoint)


def is_service_chain(chain: str) -> bool:
    """True for per-Service chains kube-proxy creates and garbage-collects."""
    return chain.startswith(SERVICE_CHAIN_PREFIXES)


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"          # RFC 4648 standard alphabet
_B32_PAIRS = [a + b for a in _B32 for b in _B32]    # 10 bits -> 2 characters


def _hash16(text: str) -> str:
    """First 16 base32 characters of sha256(text), i.e. base32 of its first 10 bytes."""
    v = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    p = _B32_PAIRS
    return (p[v >> 70] + p[(v >> 60) & 1023] + p[(v >> 50) & 1023] + p[(v >> 40) & 1023]
            + p[(v >> 30) & 1023] + p[(v >> 20) & 1023] + p[(v >> 10) & 1023] + p[v & 1023])
