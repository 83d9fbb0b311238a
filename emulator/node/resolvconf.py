"""A pod's /etc/resolv.conf and /etc/hosts as the kubelet writes them (pkg/kubelet/network/dns).

dnsPolicy:
- `ClusterFirst` (default): the cluster DNS Service IP, search `<ns>.svc.<zone>
  svc.<zone> <zone>`, `options ndots:5` (GKE adds the VM's search domains: kubemu's
  nodes have none). A hostNetwork pod with ClusterFirst gets `Default`, as in Kubernetes.
- `ClusterFirstWithHostNet`: ClusterFirst, also for hostNetwork pods.
- `Default`: the node's resolver. kubemu's nodes have no upstream DNS server, so this is
  a resolv.conf without nameserver (a lookup fails at once, as with an unreachable
  resolver) rather than the host machine's, which would leak the host's DNS into the run.
- `None`: only `dnsConfig`.
`dnsConfig` (any policy) appends nameservers and searches (duplicates dropped) and sets
options (a later value of the same option wins); at most 3 nameservers and 32 searches
are used, as the kubelet does.
"""
from __future__ import annotations

from typing import Any

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
CLUSTER_OPTIONS = [("ndots", "5")]


def effective_policy(spec: dict[str, Any]) -> str:
    """ClusterFirst | Default | None, after the hostNetwork rule."""
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirstWithHostNet":
        return "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        return "Default"
    return policy


def resolv_conf(spec: dict[str, Any], namespace: str, cluster_dns: str, domain: str = "cluster.local") -> str:
    """The text of the pod's resolv.conf."""
    policy = effective_policy(spec)
    servers: list[str] = []
    searches: list[str] = []
    options: list[tuple[str, str | None]] = []
    if policy == "ClusterFirst":
        servers = [cluster_dns]
        searches = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]
        options = list(CLUSTER_OPTIONS)
    config = spec.get("dnsConfig") or {}
    for s in config.get("nameservers") or []:
        if s not in servers:
            servers.append(s)
    for s in config.get("searches") or []:
        if s not in searches:
            searches.append(s)
    for o in config.get("options") or []:
        options = [x for x in options if x[0] != o["name"]] + [(o["name"], o.get("value"))]
    lines = [f"# dnsPolicy: {spec.get('dnsPolicy') or 'ClusterFirst'} (kubemu)"]
    if policy == "Default":
        lines.append("# Default: the node's resolver; kubemu's nodes have no upstream DNS server")
    if searches:
        lines.append("search " + " ".join(searches[:MAX_SEARCHES]))
    lines += [f"nameserver {s}" for s in servers[:MAX_NAMESERVERS]]
    if options:
        lines.append("options " + " ".join(n if v is None else f"{n}:{v}" for n, v in options))
    return "\n".join(lines) + "\n"


def hosts_file(spec: dict[str, Any], namespace: str, pod_name: str, ip: str, domain: str = "cluster.local") -> str:
    """The pod's /etc/hosts: localhost, then its IP with its FQDN when `hostname` and
    `subdomain` are set (`<hostname>.<subdomain>.<ns>.svc.<zone> <hostname>`)."""
    hostname = spec.get("hostname") or pod_name
    names = [hostname]
    if spec.get("subdomain"):
        names.insert(0, f"{hostname}.{spec['subdomain']}.{namespace}.svc.{domain}")
    return f"127.0.0.1 localhost\n{ip} {' '.join(names)}\n"
