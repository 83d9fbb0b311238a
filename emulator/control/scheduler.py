"""The scheduler's pure core: pick a node for a pod, spreading across zones and nodes."""
from __future__ import annotations

from collections import Counter

from emulator.control import placement_rules as rules
from emulator.control.objects import condition, labels

ZONE_LABEL = "topology.kubernetes.io/zone"


def schedulable(node: dict) -> bool:
    """Ready, not cordoned, not tainted NoSchedule/NoExecute."""
    if not condition(node, "Ready") or node.get("spec", {}).get("unschedulable"):
        return False
    return not any(t.get("effect") in ("NoSchedule", "NoExecute")
                   for t in node.get("spec", {}).get("taints", []) or [])


class Placement:
    """What a scheduling pass knows: the nodes and the bound pods, with the counts the
    scores use, kept up to date as the pass binds pods (so a pass over P pending pods on N
    nodes costs about P x N, not P x N x bound pods)."""

    def __init__(self, nodes: list[dict], pods: list[dict]) -> None:
        self.by_name = {n["metadata"]["name"]: n for n in nodes}
        self.zone_of = {nm: labels(n).get(ZONE_LABEL, "") for nm, n in self.by_name.items()}
        self.ready = [n for n in nodes if schedulable(n)]
        self.placed: list[tuple[dict, dict]] = []
        self.placed_anti: list[tuple[dict, dict]] = []   # the placed pods with required anti-affinity
        self.total: Counter[str] = Counter()
        self.owner_node: Counter[tuple[str, str]] = Counter()
        self.owner_zone: Counter[tuple[str, str]] = Counter()
        for p in pods:
            node = p.get("spec", {}).get("nodeName")
            if node:
                self.bind(p, node)

    def bind(self, pod: dict, node: str) -> None:
        """Count `pod`, bound to `node` (already, or by this pass)."""
        self.total[node] += 1
        owner = _owner_uid(pod)
        if owner:
            self.owner_node[owner, node] += 1
            self.owner_zone[owner, self.zone_of.get(node, "")] += 1
        if node in self.by_name:
            self.placed.append((pod, self.by_name[node]))
            if rules.required_anti(pod):
                self.placed_anti.append((pod, self.by_name[node]))

    def choose(self, pod: dict) -> str | None:
        """Node name for `pod` (not yet counted), or None when no node fits."""
        want = pod.get("spec", {}).get("nodeSelector") or {}
        fits = [n for n in self.ready if all(labels(n).get(k) == v for k, v in want.items())]
        fits = rules.spread_filter(pod, rules.anti_affinity_filter(pod, fits, self.placed, self.placed_anti),
                                   self.placed)
        if not fits:
            return None
        owner = _owner_uid(pod)
        anti = rules.anti_affinity_penalties(pod, fits, self.placed)
        spread = rules.spread_penalties(pod, fits, self.placed)

        def score(n: dict) -> tuple:
            nm = n["metadata"]["name"]
            return (anti[nm] + spread[nm], self.owner_zone[owner, self.zone_of[nm]] if owner else 0,
                    self.owner_node[owner, nm] if owner else 0, self.total[nm], nm)
        return min(fits, key=score)["metadata"]["name"]


def choose_node(pod: dict, nodes: list[dict], pods: list[dict]) -> str | None:
    """Node name for `pod`, or None when no node fits.

    Honours nodeSelector, required podAntiAffinity and DoNotSchedule
    topologySpreadConstraints (placement_rules.py); prefers the fewest broken preferred
    anti-affinity weights and ScheduleAnyway spread counts, then the zone, then the node,
    with the fewest pods of the same owner (spreading replicas), then the fewest pods
    overall, then the name.
    """
    return Placement(nodes, [p for p in pods if p is not pod]).choose(pod)


def _owner_uid(pod: dict) -> str | None:
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return refs[0].get("uid") if refs else None
