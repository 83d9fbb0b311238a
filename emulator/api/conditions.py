"""Status conditions read by the API server and its clients."""
from __future__ import annotations

import time


def ready_status(obj: dict) -> str | None:
    """The Ready condition's status ("True", "False", "Unknown") or None."""
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == "Ready":
            return c.get("status")
    return None


def with_kubelet_ready(conditions: list[dict], now: float | None = None) -> list[dict]:
    """`conditions` with Ready replaced by the kubelet's Ready=True (reason KubeletReady)."""
    return [c for c in conditions if c.get("type") != "Ready"] + [
        {"type": "Ready", "status": "True", "reason": "KubeletReady",
         "lastTransitionTime": time.time() if now is None else now}]
