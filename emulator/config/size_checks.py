"""Checks that catch late failures early: kernel names of pods, counts, and the machine's size.

Kubernetes names become kernel names (a pod's network namespace, see
`emulator.naming.RunNames.pod_netns`). The mapping is built to stay distinct and short
enough; these checks prove it for the scenario at hand, so a run never meets "File
exists" or "Invalid netns name". Counts (replicas, pods, objects) are held to
`emulator.config.limits`, and the whole run to a memory estimate of the machines.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from emulator.config import limits
from emulator.config.manifests import ManifestObject
from emulator.config.source import Loc
from emulator.naming import NETNS_NAME_MAX, RunNames

Problem = tuple[ManifestObject, Loc, str]
NetnsName = Callable[[str, str], str]
_PROBE_NAMES = RunNames("zzzz")                    # any run id: all have the same length
_GENERATED_SUFFIX = "-" + "x" * 10 + "-" + "x" * 5  # ReplicaSet hash and pod suffix of a Deployment's pods


def pod_names(objects: Iterable[ManifestObject]) -> Iterator[tuple[ManifestObject, str, str]]:
    """(object, namespace, longest pod name) of every Pod and every Deployment's pods."""
    for mo in objects:
        if mo.kind == "Pod":
            yield mo, mo.namespace or "default", mo.name
        elif mo.kind == "Deployment":
            yield mo, mo.namespace or "default", mo.name + _GENERATED_SUFFIX


def kernel_name_problems(objects: Iterable[ManifestObject],
                         netns_name: NetnsName = _PROBE_NAMES.pod_netns) -> list[Problem]:
    """Pods whose network namespace names collide or exceed the kernel's limit."""
    problems: list[Problem] = []
    seen: dict[str, ManifestObject] = {}
    for mo, namespace, pod in pod_names(objects):
        mapped = netns_name(namespace, pod)
        if len(mapped) > NETNS_NAME_MAX or "/" in mapped:
            what = "its pods map" if mo.kind == "Deployment" else "it maps"
            problems.append((mo, ("metadata", "name"),
                             f"{what} to network namespace {mapped!r} ({len(mapped)} characters), not a "
                             f"valid kernel name (at most {NETNS_NAME_MAX} characters, no '/')"))
            continue
        first = seen.get(mapped)
        if mo.kind == "Pod" and first is not None and first.key != mo.key:
            problems.append((mo, ("metadata", "name"),
                             f"pods {first.namespace}/{first.name} ({first.where}) and {namespace}/{pod} "
                             f"map to the same network namespace {mapped!r}"))
        if mo.kind == "Pod":
            seen.setdefault(mapped, mo)
    return problems


def replicas_problem(value: Any) -> str | None:
    """Why a Deployment's replicas is not usable, or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"replicas must be a whole number, not {value!r}"
    if not 0 <= value <= limits.MAX_REPLICAS:
        return f"replicas {value} is outside 0..{limits.MAX_REPLICAS} (MAX_REPLICAS)"
    return None


def pod_count(objects: Iterable[ManifestObject]) -> int:
    """Static Pods plus every Deployment's replicas (the latest definition of each object)."""
    latest = {mo.key: mo for mo in objects}
    total = 0
    for mo in latest.values():
        if mo.kind == "Pod":
            total += 1
        elif mo.kind == "Deployment":
            replicas = (mo.obj.get("spec") or {}).get("replicas", 1)
            total += replicas if isinstance(replicas, int) else 0
    return total


def size_problems(objects: list[ManifestObject], scaled: Iterable[int], nodes: int,
                  hosts: int) -> list[tuple[Loc, str]]:
    """Too many objects or pods for the limits, or a run too big for this machine's memory.

    `scaled` are the replicas of scale steps (each may add pods to one Deployment).
    """
    problems: list[tuple[Loc, str]] = []
    if len(objects) > limits.MAX_OBJECTS:
        problems.append((("manifests",), f"{len(objects)} Kubernetes objects, more than the limit of "
                                         f"{limits.MAX_OBJECTS} (MAX_OBJECTS)"))
    pods = pod_count(objects) + sum(scaled)
    if pods > limits.MAX_PODS:
        problems.append((("manifests",), f"up to {pods} pods (static Pods, replicas and scale steps), more "
                                         f"than the limit of {limits.MAX_PODS} (MAX_PODS)"))
    memory = limits.machine_memory_mib()
    need = limits.memory_estimate_mib(nodes, pods, hosts)
    if memory is not None and need > memory:
        problems.append((("topology",), f"{nodes} nodes, up to {pods} pods and {hosts} client hosts need "
                                        f"about {need} MiB (estimate: {limits.NODE_MEMORY_MIB} MiB a node, "
                                        f"{limits.POD_MEMORY_MIB} a pod, {limits.HOST_MEMORY_MIB} a host); "
                                        f"this machine has {memory} MiB"))
    return problems
