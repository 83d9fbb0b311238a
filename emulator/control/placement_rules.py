"""Inter-pod placement rules of the scheduler's pure core: podAntiAffinity and topologySpreadConstraints.

As kube-scheduler's InterPodAffinity and PodTopologySpread plugins, for what kubemu
emulates:
- podAntiAffinity `requiredDuringSchedulingIgnoredDuringExecution`: a node is out when a
  pod matching a term's labelSelector (in the term's `namespaces`, default the pod's own)
  runs in the same topology domain (`topologyKey`: kubernetes.io/hostname,
  topology.kubernetes.io/zone or any node label); also when a running pod's own required
  anti-affinity term matches the new pod (the rule is symmetric).
  `preferredDuringScheduling...`: the weights of the terms a node would break are a
  penalty (lower is better).
- topologySpreadConstraints: per constraint, the pods matching `labelSelector` (same
  namespace) are counted per domain of `topologyKey` over the nodes that fit; placing the
  pod in domain d gives skew = count[d] + 1 - min(count). `DoNotSchedule` drops a node
  whose skew would pass `maxSkew` (and nodes without the label); `ScheduleAnyway` adds
  the domain's count to the node's penalty.
A null labelSelector matches no pod, an empty one every pod (metav1.LabelSelector).
"""
from __future__ import annotations

from typing import Any

from emulator.control.objects import labels
from emulator.labels import label_selector_matches

HOSTNAME_LABEL = "kubernetes.io/hostname"


def domain(node: dict, key: str) -> str | None:
    """The node's value of topology key `key` (its name for kubernetes.io/hostname)."""
    value = labels(node).get(key)
    if value is None and key == HOSTNAME_LABEL:
        return node["metadata"]["name"]
    return value


def _selects(selector: dict | None, pod: dict) -> bool:
    return selector is not None and label_selector_matches(selector, labels(pod))


def _ns(pod: dict) -> str:
    return pod["metadata"].get("namespace", "default")


def _term_matches(term: dict, owner: dict, other: dict) -> bool:
    """A (weighted or not) affinity term of `owner` selects pod `other`."""
    namespaces = term.get("namespaces") or ([] if term.get("namespaceSelector") == {} else [_ns(owner)])
    return (not namespaces or _ns(other) in namespaces) and _selects(term.get("labelSelector"), other)


def _anti(pod: dict) -> dict[str, Any]:
    return ((pod.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity") or {}


def required_anti(pod: dict) -> list[dict]:
    """The pod's required anti-affinity terms."""
    return _anti(pod).get("requiredDuringSchedulingIgnoredDuringExecution") or []


def _domains_selected(term: dict, owner: dict, placed: list[tuple[dict, dict]]) -> set[str]:
    """The domains of the term's topologyKey where a pod the term selects runs."""
    key = term.get("topologyKey", "")
    found = {domain(n, key) for p, n in placed if _term_matches(term, owner, p)}
    found.discard(None)
    return found


def _outside(node: dict, rules: list[tuple[str, set[str]]]) -> bool:
    return not any((d := domain(node, key)) is not None and d in doms for key, doms in rules)


def anti_affinity_filter(pod: dict, nodes: list[dict], placed: list[tuple[dict, dict]],
                         placed_anti: list[tuple[dict, dict]]) -> list[dict]:
    """The nodes no required anti-affinity term forbids: the pod's own terms (over `placed`)
    and those of the running pods that have any (`placed_anti`, a part of `placed`)."""
    blocked = [(t["topologyKey"], _domains_selected(t, pod, placed)) for t in required_anti(pod)]
    for p, n in placed_anti:
        for term in required_anti(p):
            here = domain(n, term["topologyKey"])
            if here is not None and _term_matches(term, p, pod):
                blocked.append((term["topologyKey"], {here}))
    return [n for n in nodes if _outside(n, blocked)] if blocked else list(nodes)


def anti_affinity_penalties(pod: dict, nodes: list[dict], placed: list[tuple[dict, dict]]) -> dict[str, int]:
    """Per node name: the sum of the weights of preferred anti-affinity terms it would break."""
    total = {n["metadata"]["name"]: 0 for n in nodes}
    for weighted in _anti(pod).get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        term = weighted.get("podAffinityTerm") or {}
        rule = [(term.get("topologyKey", ""), _domains_selected(term, pod, placed))]
        for n in nodes:
            if not _outside(n, rule):
                total[n["metadata"]["name"]] += int(weighted.get("weight", 1))
    return total


def _spread_counts(pod: dict, c: dict, fits: list[dict], placed: list[tuple[dict, dict]]) -> dict[str, int]:
    """Matching pods per domain of the constraint's key, over the domains of the fitting nodes."""
    counts = {d: 0 for d in (domain(n, c["topologyKey"]) for n in fits) if d is not None}
    for p, n in placed:
        d = domain(n, c["topologyKey"])
        if d in counts and _ns(p) == _ns(pod) and _selects(c.get("labelSelector"), p):
            counts[d] += 1
    return counts


def _constraints(pod: dict, when: str) -> list[dict]:
    return [c for c in (pod.get("spec") or {}).get("topologySpreadConstraints") or []
            if c.get("whenUnsatisfiable", "DoNotSchedule") == when]


def spread_filter(pod: dict, fits: list[dict], placed: list[tuple[dict, dict]]) -> list[dict]:
    """The nodes of `fits` that keep every DoNotSchedule constraint within maxSkew."""
    out = fits
    for c in _constraints(pod, "DoNotSchedule"):
        counts = _spread_counts(pod, c, fits, placed)
        if not counts:
            return []
        low = min(counts.values())
        out = [n for n in out if domain(n, c["topologyKey"]) in counts
               and counts[domain(n, c["topologyKey"])] + 1 - low <= int(c.get("maxSkew", 1))]
    return out


def spread_penalties(pod: dict, fits: list[dict], placed: list[tuple[dict, dict]]) -> dict[str, int]:
    """Per node name, for ScheduleAnyway constraints: the matching pods already in its domains."""
    total = {n["metadata"]["name"]: 0 for n in fits}
    for c in _constraints(pod, "ScheduleAnyway"):
        counts = _spread_counts(pod, c, fits, placed)
        for n in fits:
            total[n["metadata"]["name"]] += counts.get(domain(n, c["topologyKey"]), 0)
    return total
