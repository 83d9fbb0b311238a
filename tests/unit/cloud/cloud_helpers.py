"""Objects shared by the cloud unit tests: a small cluster's plan facts, Nodes, Services."""
from __future__ import annotations

from emulator.config.timing import timing_for
from emulator.records.cloud import CloudFacts, CloudHost

TIMING = timing_for("gke")   # interval 8 s (Cluster), 3 s (Local), timeout 1 s
SUBNET, POD_RANGE, EXTERNAL = "10.128.0.0/20", "10.4.0.0/14", "203.0.113.0/24"
NODES = [("pool-a-1", "10.128.0.2", "10.4.0.0/24"), ("pool-b-1", "10.128.0.3", "10.4.1.0/24"),
         ("pool-c-1", "10.128.0.4", "10.4.2.0/24")]


def hosts() -> list[CloudHost]:
    out = []
    for i, (name, ip, cidr) in enumerate(NODES):
        out.append({"name": name, "role": "node", "ip": ip, "pod_cidr": cidr, "gateway": "10.128.0.1",
                    "tags": ["web"], "fabric_port": f"kubemuabcdp{i}", "mac": f"02:00:00:00:00:0{i + 1}"})
    out.append({"name": "vm-1", "role": "host", "kind": "vm", "ip": "10.128.0.5", "gateway": "10.128.0.1",
                "fabric_port": "kubemuabcdp3", "mac": "02:00:00:00:00:04"})
    out.append({"name": "inet-1", "role": "host", "kind": "internet", "ip": "198.51.100.2",
                "gateway": "198.51.100.1", "fabric_port": "kubemuabcdp4", "mac": "02:00:00:00:00:05"})
    out.append({"name": "prober", "role": "host", "kind": "prober", "ip": "35.191.0.1",
                "gateway": "198.51.100.1", "fabric_port": "kubemuabcdp5", "mac": "02:00:00:00:00:06"})
    return [CloudHost(**h) for h in out]


def facts() -> CloudFacts:
    return CloudFacts(cluster_name="demo", subnet=SUBNET, pod_range=POD_RANGE, external_range=EXTERNAL,
                      gateways=["10.128.0.1", "198.51.100.1"], hosts=hosts())


def node(name: str, ip: str, **labels) -> dict:
    return {"kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def nodes() -> list[dict]:
    return [node(n, ip) for n, ip, _ in NODES]


def service(name: str, typ: str = "LoadBalancer", policy: str = "Cluster", ports=((80, "TCP"),),
            ns: str = "default", uid: str | None = None, annotations: dict | None = None,
            lb_ip: str | None = None, hc_port: int | None = None, source_ranges=None,
            status_ip: str | None = None, created: float = 0) -> dict:
    spec = {"type": typ, "ports": [{"port": p, "protocol": proto, "nodePort": 30000 + p % 1000}
                                   for p, proto in ports],
            "selector": {"app": name}, "clusterIP": "10.8.0.20"}
    if typ in ("LoadBalancer", "NodePort"):
        spec["externalTrafficPolicy"] = policy
    if policy == "Local" and typ == "LoadBalancer":
        spec["healthCheckNodePort"] = hc_port or 31999
    if lb_ip:
        spec["loadBalancerIP"] = lb_ip
    if source_ranges is not None:
        spec["loadBalancerSourceRanges"] = list(source_ranges)
    meta = {"name": name, "namespace": ns, "uid": uid or f"uid-{ns}-{name}", "creationTimestamp": created,
            "annotations": annotations or {}}
    svc = {"kind": "Service", "metadata": meta, "spec": spec, "status": {}}
    if status_ip:
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": status_ip}]}}
    return svc


INTERNAL = {"networking.gke.io/load-balancer-type": "Internal"}
