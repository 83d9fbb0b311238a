"""The scheduler's pure core: pick a node for a pod, spreading across zones and nodes."""
from __future__ import annotations

from emulator.control import placement_rules as rules
from emulator.control.objects import condition, labels

ZONE_LABEL = "topology.kubernetes.io/zone"


def schedulable(node: dict) -> bool:
    """Ready, not cordoned, not tainted NoSchedule/NoExecute."""
    if not condition(node, "Ready") or node.get("spec", {}).get("unschedulable"):
        return False
    return not any(t.get("effect") in ("NoSchedule", "NoExecute")
                   for t in node.get("spec", {}).get("taints", []) or [])


def choose_node(pod: dict, nodes: list[dict], pods: list[dict]) -> str | None:
    """Node name for `pod`, or None when no node fits.

    Honours nodeSelector, required podAntiAffinity and DoNotSchedule
    topologySpreadConstraints (placement_rules.py); prefers the fewest broken preferred
    anti-affinity weights and ScheduleAnyway spread counts, then the zone, then the node,
    with the fewest pods of the same owner (spreading replicas), then the fewest pods
    overall, then the name.
    """
    want = pod.get("spec", {}).get("nodeSelector") or {}
    fits = [n for n in nodes if schedulable(n)
            and all(labels(n).get(k) == v for k, v in want.items())]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    placed = rules.placed_pods([p for p in pods if p is not pod], by_name)
    fits = rules.spread_filter(pod, [n for n in fits if rules.anti_affinity_allows(pod, n, placed)], placed)
    if not fits:
        return None
    owner = _owner_uid(pod)
    zone_of = {n["metadata"]["name"]: labels(n).get(ZONE_LABEL, "") for n in nodes}
    same_zone: dict[str, int] = {}
    same_node: dict[str, int] = {}
    total: dict[str, int] = {}
    for p in pods:
        node = p.get("spec", {}).get("nodeName")
        if not node:
            continue
        total[node] = total.get(node, 0) + 1
        if owner and _owner_uid(p) == owner:
            same_node[node] = same_node.get(node, 0) + 1
            z = zone_of.get(node, "")
            same_zone[z] = same_zone.get(z, 0) + 1

    def score(n: dict) -> tuple:
        nm = n["metadata"]["name"]
        return (rules.anti_affinity_penalty(pod, n, placed) + rules.spread_penalty(pod, n, fits, placed),
                same_zone.get(zone_of[nm], 0), same_node.get(nm, 0), total.get(nm, 0), nm)
    return min(fits, key=score)["metadata"]["name"]


def _owner_uid(pod: dict) -> str | None:
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return refs[0].get("uid") if refs else None
