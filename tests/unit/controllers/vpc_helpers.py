"""A small VPC for load balancer and firewall tests: three nodes, a VM, an internet host, a prober."""
from __future__ import annotations

import copy
from typing import Any

from tests.fakes.flow_sim import SimSwitch
from controllers.vpc_core import ETH_TYPE_IP, VpcState, compute, endpoint_ids

ROUTER = "42:01:0a:80:00:01"
NODE_TAG = "gke-demo-node"
VPC_RANGES = ["10.128.0.0/20", "10.4.0.0/14"]
WEB_IP, INT_IP, DNS_IP = "198.51.100.10", "10.128.0.100", "198.51.100.11"

# name -> (ip, mac, ofport, pod range, kind)
HOSTS = {
    "node-a": ("10.128.0.2", "02:00:0a:80:00:02", 1, "10.4.0.0/24", "node"),
    "node-b": ("10.128.0.3", "02:00:0a:80:00:03", 2, "10.4.1.0/24", "node"),
    "node-c": ("10.128.0.4", "02:00:0a:80:00:04", 3, "10.4.2.0/24", "node"),
    "vm-1": ("10.128.0.10", "02:00:0a:80:00:0a", 4, None, "vm"),
    "inet-1": ("203.0.113.10", "02:00:cb:00:71:0a", 5, None, "internet"),
    "prober": ("35.191.0.8", "02:00:23:bf:00:08", 6, None, "prober"),
}
PORT = {name: h[2] for name, h in HOSTS.items()}
MAC = {name: h[1] for name, h in HOSTS.items()}
IP = {name: h[0] for name, h in HOSTS.items()}
NAME_OF_PORT = {h[2]: name for name, h in HOSTS.items()}


def rule(name: str, direction: str = "ingress", action: str = "allow", priority: int = 1000,
         protocols: list[dict] | None = None, **ranges: Any) -> dict:
    """A firewall rule dict (ranges: source_ranges, destination_ranges, target_tags)."""
    return {"name": name, "direction": direction, "action": action, "priority": priority,
            "protocols": protocols or [{"protocol": "all"}], **ranges}


def base_firewall() -> list[dict]:
    """What the cloud controller adds: VPC-internal traffic, the LB openings, health checks."""
    return [
        rule("allow-vpc", source_ranges=VPC_RANGES),
        rule("k8s-fw-web", source_ranges=["0.0.0.0/0"], destination_ranges=[WEB_IP],
             target_tags=[NODE_TAG], protocols=[{"protocol": "tcp", "ports": ["80"]}]),
        rule("k8s-fw-dns", destination_ranges=[DNS_IP], target_tags=[NODE_TAG],
             protocols=[{"protocol": "udp", "ports": ["53"]}]),
        rule("allow-health-checks", source_ranges=["35.191.0.0/16"], target_tags=[NODE_TAG],
             protocols=[{"protocol": "tcp", "ports": ["10256"]}]),
    ]


def state_dict(firewall: list[dict] | None = None, lbs: list[dict] | None = None) -> dict:
    """The whole state; `firewall` None means the base rules (pass [] for none but implied)."""
    eps = []
    for name, (ip, mac, port, pods, kind) in HOSTS.items():
        eps.append({"name": name, "ip": ip, "mac": mac, "port_name": f"p-{name}", "ofport": port,
                    "routes": [pods] if pods else [], "kind": kind,
                    "tags": [NODE_TAG] if kind == "node" else []})
    return {
        "router_mac": ROUTER, "gateways": ["10.128.0.1", "203.0.113.1", "35.191.0.1"],
        "endpoints": eps, "vpc_ranges": list(VPC_RANGES),
        "load_balancers": lbs if lbs is not None else [
            {"name": "default/web", "ip": WEB_IP, "protocol": "TCP", "ports": [80],
             "scheme": "external", "backends": ["node-a", "node-b"]},
            {"name": "default/int", "ip": INT_IP, "protocol": "TCP", "ports": [80],
             "scheme": "internal", "backends": ["node-a", "node-b"]},
            {"name": "default/dns", "ip": DNS_IP, "protocol": "UDP", "ports": [53],
             "scheme": "external", "backends": ["node-a"]},
        ],
        "firewall": base_firewall() if firewall is None else firewall,
    }


def modified(data: dict, **changes: Any) -> dict:
    """A deep copy of a state dict with top-level keys replaced."""
    out = copy.deepcopy(data)
    out.update(changes)
    return out


def switch(data: dict) -> SimSwitch:
    """A simulated bridge carrying the program for the state (everything on dpid 1)."""
    return SimSwitch.of(compute(VpcState.from_dict(data), 1))


def ids(data: dict) -> dict[str, int]:
    return endpoint_ids(VpcState.from_dict(data).endpoints)


def packet(src: str, dst: str, proto: str = "tcp", sport: int = 40000, dport: int = 80,
           src_ip: str | None = None, ttl: int = 64) -> dict:
    """An IPv4 packet sent by host `src` (its port and MAC) to address `dst`."""
    pkt: dict[str, Any] = {"in_port": PORT[src], "eth_src": MAC[src], "eth_dst": ROUTER,
                           "eth_type": ETH_TYPE_IP, "ipv4_src": src_ip or IP[src], "ipv4_dst": dst,
                           "ip_ttl": ttl}
    if proto == "icmp":
        pkt["ip_proto"] = 1
    else:
        pkt.update({"ip_proto": {"tcp": 6, "udp": 17}[proto], f"{proto}_src": sport, f"{proto}_dst": dport})
    return pkt


def reply(host: str, pkt: dict) -> dict:
    """The answer host `host` sends to `pkt` (addresses and ports swapped)."""
    proto = {6: "tcp", 17: "udp", 1: "icmp"}[pkt["ip_proto"]]
    back = packet(host, pkt["ipv4_src"], proto, src_ip=pkt["ipv4_dst"],
                  sport=pkt.get(f"{proto}_dst", 0), dport=pkt.get(f"{proto}_src", 0))
    return back


def receivers(trace) -> list[str]:
    """Names of the hosts a trace's packet left towards."""
    return [NAME_OF_PORT.get(port, str(port)) for port, _ in trace.outputs]
