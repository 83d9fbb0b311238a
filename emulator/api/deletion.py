"""Graceful deletion of Pods, as the API server's pod strategy does it (pure).

A delete of a Pod bound to a node that has not finished sets `deletionTimestamp`
(now + grace) and `deletionGracePeriodSeconds` and keeps the object: the kubelet
terminates the pod and then deletes it with grace 0. The grace period comes from the
delete options, else the pod's `terminationGracePeriodSeconds`, else 30. Grace 0, an
unscheduled pod or a finished one is removed at once. A second delete may only
shorten the grace period, as upstream's `BeforeDelete` allows.
"""
from __future__ import annotations

import copy

DEFAULT_GRACE_SECONDS = 30


def requested_grace(pod: dict, grace_period_seconds: int | None) -> int:
    """The grace period a delete asks for: the option, else the pod's own, else 30."""
    if grace_period_seconds is not None:
        return max(0, int(grace_period_seconds))
    own = pod.get("spec", {}).get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_SECONDS if own is None else max(0, int(own))


def graceful_delete(pod: dict, grace_period_seconds: int | None, now: float) -> dict | None:
    """The pod as it is stored after a delete, or None when it must be removed now.

    Returns the pod unchanged (a copy) when it is already terminating with a shorter
    or equal grace period.
    """
    grace = requested_grace(pod, grace_period_seconds)
    if (grace == 0 or not pod.get("spec", {}).get("nodeName")
            or pod.get("status", {}).get("phase") in ("Failed", "Succeeded")):
        return None
    out = copy.deepcopy(pod)
    meta = out.setdefault("metadata", {})
    old_grace = meta.get("deletionGracePeriodSeconds")
    if meta.get("deletionTimestamp") is not None and old_grace is not None and grace >= old_grace:
        return out
    deadline = now + grace
    old_deadline = meta.get("deletionTimestamp")
    if isinstance(old_deadline, (int, float)):
        deadline = min(deadline, float(old_deadline))
    meta["deletionTimestamp"] = deadline
    meta["deletionGracePeriodSeconds"] = grace
    return out


def kubectl_grace(grace_period: int | None, force: bool) -> int | None:
    """kubectl delete's `--grace-period`/`--force` as delete options: force without a
    grace period is 0; grace 0 without force becomes 1 (kubectl's rule)."""
    if force:
        return 0 if grace_period is None else grace_period
    if grace_period == 0:
        return 1
    return grace_period
