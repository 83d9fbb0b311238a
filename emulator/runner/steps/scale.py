"""The `scale` step: set a Deployment's replicas."""
from __future__ import annotations

from emulator.errors import KubemuError
from emulator.runner.steps.registry import step


def scale_deployment(client, namespace: str, name: str, replicas: int) -> None:
    """Set a Deployment's `spec.replicas`; KubemuError when it does not exist."""
    dep = client.get("Deployment", namespace, name)
    if dep is None:
        raise KubemuError(f"no Deployment {namespace}/{name}")
    dep["spec"]["replicas"] = replicas
    client.update(dep)


@step("scale", lambda s: f"scale deployment/{s.scale.deployment} to {s.scale.replicas}")
def run_scale(s, ctx) -> dict:
    sc = s.scale
    scale_deployment(ctx.client, sc.namespace, sc.deployment, sc.replicas)
    return {"step": "scale", "deployment": sc.deployment, "replicas": sc.replicas}
