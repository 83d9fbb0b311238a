"""The `label` step: set or remove labels of a Pod or Namespace."""
from __future__ import annotations

from emulator.errors import KubemuError
from emulator.runner.steps.registry import step


@step("label", lambda s: f"label {s.label.object}")
def run_label(s, ctx) -> dict:
    """Set or remove labels of a Pod or Namespace (null removes), as `kubectl label --overwrite`."""
    kind, _, rest = s.label.object.partition("/")
    ns, _, name = rest.rpartition("/")
    api_kind = "Pod" if kind == "pod" else "Namespace"
    obj = ctx.client.get(api_kind, ns if kind == "pod" else "", name)
    if obj is None:
        if kind == "pod":
            raise KubemuError(f"no Pod {ns}/{name}")
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    labels = dict(obj["metadata"].get("labels") or {})
    for k, v in s.label.labels.items():
        if v is None:
            labels.pop(k, None)
        else:
            labels[k] = v
    obj["metadata"]["labels"] = labels
    ctx.client.apply(obj)
    return {"step": "label", "object": s.label.object, "labels": labels}
