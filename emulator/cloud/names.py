"""GKE's names for what it creates in Google Cloud for a cluster and its LoadBalancer Services.

Sources: kubernetes/cloud-provider-gcp `providers/gce/gce_loadbalancer_naming.go` (the GCE
cloud provider GKE runs for target-pool external and instance-group internal passthrough
load balancers) and GKE's "Automatically created firewall rules" page.

- Node tag: `gke-<cluster>-<hash>-node` on every node VM; LB firewall rules target it.
- Load balancer name: `cloudprovider.DefaultLoadBalancerName`: "a" + the Service UID
  without dashes, cut to 32 characters. Forwarding rule, target pool, health check and
  firewall rules are named after it.
- Firewall rules: `k8s-fw-<lb>` (traffic), and for health checks
  external: `k8s-<cluster-id>-node-http-hc` (Cluster policy, shared, tcp:10256) or
  `k8s-<lb>-http-hc` (Local policy, tcp:healthCheckNodePort);
  internal: `k8s-<cluster-id>-node-hc` (Cluster, shared) or `<lb>-hc` (Local).
The real cluster hash and cluster id come from the cluster's UID; here they are stable
hashes of the cluster name, so a restarted controller computes the same names.
"""
from __future__ import annotations

import hashlib

_CLUSTER_NAME_MAX = 40  # keeps gke-<name>-<8 hex>-<suffix> within GCE's 63 characters


def _hex(text: str, n: int) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def cluster_hash(cluster_name: str) -> str:
    """The 8 hex characters GKE puts in `gke-<cluster>-<hash>-...` names."""
    return _hex(f"gke-cluster:{cluster_name}", 8)


def cluster_id(cluster_name: str) -> str:
    """The 16 hex character cluster id of `k8s-<cluster-id>-node...` names."""
    return _hex(f"gke-cluster-id:{cluster_name}", 16)


def gke_prefix(cluster_name: str) -> str:
    """`gke-<cluster>-<hash>`, the prefix of the cluster's own firewall rules and node tag."""
    return f"gke-{cluster_name[:_CLUSTER_NAME_MAX]}-{cluster_hash(cluster_name)}"


def node_tag(cluster_name: str) -> str:
    """The network tag GKE gives every node VM of the cluster."""
    return f"{gke_prefix(cluster_name)}-node"


def service_key(svc: dict) -> str:
    """`namespace/name` of a Service (the load balancer entry's name)."""
    meta = svc.get("metadata", {})
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def lb_name(svc: dict) -> str:
    """cloudprovider.DefaultLoadBalancerName: "a" + UID without dashes, at most 32 characters.

    A Service without a UID (tests) gets a hash of its key instead.
    """
    uid = svc.get("metadata", {}).get("uid")
    if not uid:
        uid = _hex(f"service:{service_key(svc)}", 32)
    return ("a" + str(uid)).replace("-", "")[:32]


def lb_firewall_name(lb: str) -> str:
    """`k8s-fw-<lb>`: lets clients reach the load balancer's ports on the nodes."""
    return f"k8s-fw-{lb}"


def hc_firewall_name(cluster_name: str, lb: str, scheme: str, shared: bool) -> str:
    """Name of the firewall rule that lets the health checkers reach the nodes."""
    cid = cluster_id(cluster_name)
    if scheme == "internal":
        return f"k8s-{cid}-node-hc" if shared else f"{lb}-hc"
    return f"k8s-{cid}-node-http-hc" if shared else f"k8s-{lb}-http-hc"
