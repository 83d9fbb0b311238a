"""Status conditions read by the API server and its clients."""
from __future__ import annotations


def ready_status(obj: dict) -> str | None:
    """The Ready condition's status ("True", "False", "Unknown") or None."""
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == "Ready":
            return c.get("status")
    return None
