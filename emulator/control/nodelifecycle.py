"""The node lifecycle controller's pure core: leases -> node health -> taints -> evictions.

As kube-controller-manager's node lifecycle controller does: a node whose Lease was not
renewed for `node_monitor_grace_period` gets Ready=Unknown, its pods Ready=False (so
their endpoints leave the EndpointSlices) and the `node.kubernetes.io/unreachable`
NoExecute taint; pods that do not tolerate the taint longer are evicted (graceful
deletion) after their tolerationSeconds (`pod_eviction_timeout`, as the
DefaultTolerationSeconds admission plugin gives every pod). When the kubelet posts
Ready=True again the taint goes. `now` is injected; no I/O.

As the real controller does, the grace period runs from when the controller last *saw*
a node's lease change (its probeTimestamp, `LeaseClock`), not from the renewTime the
kubelet wrote: a controller that falls behind (its watch late, its passes slow on a
busy machine) does not take the renewals it has not seen yet for silence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulator.api.conditions import ready_status  # noqa: F401 (its callers import it from here)
from emulator.control.objects import is_terminating, name
from emulator.control.workloads import Action

LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"


@dataclass
class LifecycleResult:
    """API writes to send and what happened (for the phase timeline)."""

    actions: list[Action] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def renew_times(leases: list[dict]) -> dict[str, float]:
    """Node name -> last lease renewal (epoch seconds) from the kube-node-lease Leases."""
    out = {}
    for lease in leases:
        if lease["metadata"].get("namespace") != LEASE_NAMESPACE:
            continue
        t = lease.get("spec", {}).get("renewTime")
        if isinstance(t, (int, float)):
            out[name(lease)] = float(t)
    return out


class LeaseClock:
    """When the controller last saw each node's lease renewed: its probeTimestamp per node."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, float]] = {}   # node -> (renewTime, when first seen)

    def observe(self, leases: list[dict], now: float) -> dict[str, float]:
        """Note the renewals in `leases` seen at `now`; node -> when its newest renewal was seen."""
        for node, renew in renew_times(leases).items():
            prev = self.seen.get(node)
            if prev is None or renew > prev[0]:
                self.seen[node] = (renew, now)
        return {node: seen for node, (_, seen) in self.seen.items()}


def unreachable_taint(node: dict) -> dict | None:
    """The node's unreachable NoExecute taint, if it has one."""
    for t in node.get("spec", {}).get("taints", []) or []:
        if t.get("key") == UNREACHABLE and t.get("effect") == "NoExecute":
            return t
    return None


def toleration_seconds(pod: dict, default: float) -> float | None:
    """How long the pod tolerates an unreachable node; None = forever."""
    for t in pod.get("spec", {}).get("tolerations", []) or []:
        key_ok = t.get("key") == UNREACHABLE or (t.get("operator") == "Exists" and not t.get("key"))
        if key_ok and t.get("effect") in (None, "", "NoExecute"):
            secs = t.get("tolerationSeconds")
            return None if secs is None else float(secs)
    return default


def _with_condition(obj: dict, status: str, reason: str, now: float, message: str = "") -> list[dict]:
    """The object's conditions with Ready replaced (other conditions kept)."""
    conds = [c for c in obj.get("status", {}).get("conditions", []) or [] if c.get("type") != "Ready"]
    return conds + [{"type": "Ready", "status": status, "reason": reason, "message": message,
                     "lastTransitionTime": now}]


def evaluate(nodes: list[dict], leases: list[dict], pods: list[dict], grace: float,
             eviction_timeout: float, now: float, observed: dict[str, float] | None = None) -> LifecycleResult:
    """One pass over every node: the writes that bring health, taints and pods in line.

    `observed`: node -> when the controller saw its lease renewed (`LeaseClock`); without
    it, the leases' renewTimes."""
    out = LifecycleResult()
    renewed = renew_times(leases)
    seen = renewed if observed is None else observed
    by_node: dict[str, list[dict]] = {}
    for p in pods:
        by_node.setdefault(p.get("spec", {}).get("nodeName") or "", []).append(p)
    for node in nodes:
        nm = name(node)
        last, seen_at = renewed.get(nm), seen.get(nm)
        status = ready_status(node)
        taint = unreachable_taint(node)
        silent = last is not None and seen_at is not None and now - seen_at > grace
        cur = node
        if silent and status != "Unknown":
            cur = {**cur, "status": {**cur.get("status", {}), "conditions": _with_condition(
                cur, "Unknown", "NodeStatusUnknown", now, "Kubelet stopped posting node status.")}}
            out.events.append({"t": now, "node": nm, "event": "node_not_ready", "silent_s": round(now - last, 3)})
            status = "Unknown"
        taints = list(cur.get("spec", {}).get("taints", []) or [])
        if status == "Unknown" and taint is None:
            taint = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now}
            cur = {**cur, "spec": {**cur.get("spec", {}), "taints": taints + [taint]}}
            out.events.append({"t": now, "node": nm, "event": "node_tainted"})
        elif status == "True" and taint is not None:
            cur = {**cur, "spec": {**cur.get("spec", {}), "taints": [t for t in taints if t is not taint]}}
            out.events.append({"t": now, "node": nm, "event": "node_untainted"})
            taint = None
        if cur is not node:
            out.actions.append(Action("update", cur))
        if status != "Unknown":
            continue
        marked = []
        for pod in by_node.get(nm, []):
            if ready_status(pod) == "True":
                out.actions.append(Action("status", {**pod, "status": {
                    **pod.get("status", {}), "conditions": _with_condition(pod, "False", "NodeLost", now)}}))
                marked.append(name(pod))
        if marked:
            out.events.append({"t": now, "node": nm, "event": "pods_not_ready", "pods": sorted(marked)})
        evicted = []
        for pod in by_node.get(nm, []):
            wait = toleration_seconds(pod, eviction_timeout)
            if taint is None or wait is None or is_terminating(pod):
                continue
            if now - float(taint.get("timeAdded", now)) >= wait:
                out.actions.append(Action("terminate", pod))
                evicted.append(name(pod))
        if evicted:
            out.events.append({"t": now, "node": nm, "event": "pods_evicted", "pods": sorted(evicted)})
    return out
