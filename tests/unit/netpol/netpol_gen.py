"""Random NetworkPolicy worlds and a deliberately naive evaluator over the raw API objects.

The naive evaluator re-reads the Kubernetes rules straight from the object dicts
(no shared code with emulator.netpol or emulator.labels), so generated cases compare
two independent readings of the specification.
"""
from __future__ import annotations

import ipaddress
import random

KEYS = ["app", "tier", "team"]
VALUES = ["a", "b", "c"]
NAMESPACES = ["n1", "n2", "n3"]
NODES = ["node-1", "node-2"]
PORTS = [(80, "TCP"), (81, "TCP"), (82, "TCP"), (80, "UDP"), (53, "UDP"), (80, "SCTP")]
EXTERNAL = ["192.168.1.1", "10.0.1.77"]
BLOCKS = [("10.0.0.0/16", ["10.0.1.0/24"]), ("10.0.0.0/24", []), ("0.0.0.0/0", ["10.0.0.2/32"]),
          ("192.168.0.0/16", []), ("10.0.1.0/24", ["10.0.1.0/28"])]


def _labels(rng: random.Random) -> dict[str, str]:
    return {k: rng.choice(VALUES) for k in KEYS if rng.random() < 0.5}


def _selector(rng: random.Random) -> dict:
    kind = rng.random()
    if kind < 0.25:
        return {}
    sel: dict = {}
    if kind < 0.7:
        sel["matchLabels"] = {rng.choice(KEYS): rng.choice(VALUES)}
    if kind >= 0.5:
        op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
        expr = {"key": rng.choice(KEYS), "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = rng.sample(VALUES, rng.randint(1, 2))
        sel["matchExpressions"] = [expr]
    return sel


def _peer(rng: random.Random) -> dict:
    kind = rng.randrange(4)
    if kind == 0:
        cidr, exc = rng.choice(BLOCKS)
        return {"ipBlock": {"cidr": cidr, **({"except": exc} if exc else {})}}
    if kind == 1:
        return {"podSelector": _selector(rng)}
    if kind == 2:
        return {"namespaceSelector": _selector(rng)}
    return {"namespaceSelector": _selector(rng), "podSelector": _selector(rng)}


def _port(rng: random.Random) -> dict:
    kind = rng.randrange(6)
    if kind == 0:
        return {"port": rng.choice([80, 81, 53])}
    if kind == 1:
        return {"protocol": "UDP", "port": rng.choice(["dns", "http"])}
    if kind == 2:
        return {"port": rng.choice(["http", "alt", "dns"])}
    if kind == 3:
        return {"protocol": rng.choice(["UDP", "TCP", "SCTP"])}
    if kind == 4:
        return {"port": 80, "endPort": rng.choice([81, 82])}
    return {"protocol": "UDP", "port": 53}


def _rules(rng: random.Random, side: str) -> list[dict]:
    out = []
    for _ in range(rng.randint(0, 2)):
        r: dict = {}
        if rng.random() < 0.8:
            r[side] = [_peer(rng) for _ in range(rng.randint(0, 2))]
        if rng.random() < 0.6:
            r["ports"] = [_port(rng) for _ in range(rng.randint(1, 2))]
        out.append(r)
    return out


def world(seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """(pods, namespaces, policies) as API objects."""
    rng = random.Random(seed)
    namespaces = [{"kind": "Namespace", "metadata": {"name": n, "labels": _labels(rng)}} for n in NAMESPACES]
    pods = []
    for i in range(6):
        node = i % 2
        ports = []
        if rng.random() < 0.7:
            ports.append({"name": "http", "containerPort": rng.choice([80, 81]), "protocol": "TCP"})
        if rng.random() < 0.5:
            ports.append({"name": "dns", "containerPort": 53, "protocol": "UDP"})
        if rng.random() < 0.3:
            ports.append({"name": "alt", "containerPort": 82})
        pods.append({"kind": "Pod", "metadata": {"name": f"p{i}", "namespace": rng.choice(NAMESPACES),
                                                 "labels": _labels(rng)},
                     "spec": {"nodeName": NODES[node], "containers": [{"name": "c", "ports": ports}]},
                     "status": {"podIP": f"10.0.{node}.{10 + i}"}})
    policies = []
    for j in range(rng.randint(0, 4)):
        spec: dict = {"podSelector": _selector(rng)}
        types = rng.choice([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        if types:
            spec["policyTypes"] = types
        if types is None or "Ingress" in types or rng.random() < 0.2:
            if rng.random() < 0.8:
                spec["ingress"] = _rules(rng, "from")
        if (types and "Egress" in types) or rng.random() < 0.3:
            if rng.random() < 0.8:
                spec["egress"] = _rules(rng, "to")
        policies.append({"kind": "NetworkPolicy",
                         "metadata": {"name": f"np{j}", "namespace": rng.choice(NAMESPACES)}, "spec": spec})
    return pods, namespaces, policies


# --- the naive evaluator ---
def _sel(sel: dict, labels: dict) -> bool:
    for k, v in (sel.get("matchLabels") or {}).items():
        if k not in labels or labels[k] != v:
            return False
    for e in sel.get("matchExpressions") or []:
        has = e["key"] in labels
        val = labels.get(e["key"])
        if e["operator"] == "In" and not (has and val in e["values"]):
            return False
        if e["operator"] == "NotIn" and has and val in e["values"]:
            return False
        if e["operator"] == "Exists" and not has:
            return False
        if e["operator"] == "DoesNotExist" and has:
            return False
    return True


def _types(pol: dict) -> list[str]:
    spec = pol["spec"]
    if spec.get("policyTypes"):
        return spec["policyTypes"]
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


def _ip(x) -> str:
    return x["status"]["podIP"] if isinstance(x, dict) else x


def naive_allowed(src, dst, port: int, proto: str, pods, namespaces, policies) -> bool:
    """Straight from the Kubernetes documentation, one clause at a time."""
    ns_labels = {n["metadata"]["name"]: {**n["metadata"].get("labels", {}),
                                         "kubernetes.io/metadata.name": n["metadata"]["name"]} for n in namespaces}

    def peer_ok(peer: dict, pol_ns: str, other) -> bool:
        if "ipBlock" in peer:
            a = ipaddress.ip_address(_ip(other))
            if a not in ipaddress.ip_network(peer["ipBlock"]["cidr"]):
                return False
            return all(a not in ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", []))
        if not isinstance(other, dict):
            return False
        ons = other["metadata"]["namespace"]
        if "namespaceSelector" in peer:
            if not _sel(peer["namespaceSelector"], ns_labels.get(ons, {"kubernetes.io/metadata.name": ons})):
                return False
        elif ons != pol_ns:
            return False
        return "podSelector" not in peer or _sel(peer["podSelector"], other["metadata"]["labels"])

    def port_ok(pp: dict) -> bool:
        if pp.get("protocol", "TCP") != proto:
            return False
        if "port" not in pp:
            return True
        if isinstance(pp["port"], int):
            return pp["port"] == port or ("endPort" in pp and pp["port"] <= port <= pp["endPort"])
        if not isinstance(dst, dict):
            return False
        return any(cp.get("name") == pp["port"] and cp.get("protocol", "TCP") == proto and cp["containerPort"] == port
                   for c in dst["spec"]["containers"] for cp in c.get("ports", []))

    def side_ok(pod: dict, other, direction: str) -> bool:
        typ, key, side = ("Ingress", "ingress", "from") if direction == "in" else ("Egress", "egress", "to")
        mine = [p for p in policies if p["metadata"]["namespace"] == pod["metadata"]["namespace"]
                and typ in _types(p) and _sel(p["spec"]["podSelector"], pod["metadata"]["labels"])]
        if not mine:
            return True
        for p in mine:
            for rule in p["spec"].get(key) or []:
                peers = rule.get(side) or []
                if peers and not any(peer_ok(pe, p["metadata"]["namespace"], other) for pe in peers):
                    continue
                if rule.get("ports") and not any(port_ok(pp) for pp in rule["ports"]):
                    continue
                return True
        return False

    if isinstance(src, dict) and isinstance(dst, dict) and src["metadata"] == dst["metadata"]:
        return True
    if isinstance(src, dict) and not side_ok(src, dst, "out"):
        return False
    if isinstance(dst, dict) and not side_ok(dst, src, "in"):
        return False
    return True
