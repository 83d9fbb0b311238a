"""Driver side of link impairments: render each host's classes, apply them through the agents.

Used at bring-up (the scenario's impairments) and by the `impair:` step; returns the
record results.json keeps: the configuration per class and what enforced it.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import ray

from emulator.config.impairments import Impairments
from emulator.impair.render import host_classes


def apply_impairments(cluster, impairments: Impairments, progress: Callable[[str], None] = print) -> dict:
    """Impair every host's egress as `impairments` say; hosts impaired before are updated too."""
    done: set[str] = getattr(cluster, "impaired_hosts", set())
    calls = {}
    for h in cluster.plan.hosts:
        classes = host_classes(impairments, h, cluster.plan.hosts)
        if classes or h.name in done:
            calls[h.name] = cluster.agents[h.name].impair.remote([asdict(c) for c in classes])
    infos = dict(zip(calls, ray.get(list(calls.values()))))
    cluster.impaired_hosts = done | {n for n, i in infos.items() if i["classes"]}
    cluster.link_impairments = impairments
    record = summarize(impairments, infos)
    for name, c in record["classes"].items():
        progress(f"link impairment {name}: {c['config']} on {c['hosts']} hosts, enforced by {c['enforced_by']}")
    if not record["classes"] and done:
        progress("link impairments removed")
    return record


def summarize(impairments: Impairments, infos: dict[str, dict]) -> dict:
    """{mechanism, classes: {class: {config, enforced_by, hosts}}} from the agents' answers."""
    classes: dict[str, dict] = {}
    for name, imp in impairments.active().items():
        used = {i["classes"][name]["enforced_by"] for i in infos.values() if name in i["classes"]}
        hosts = sum(name in i["classes"] for i in infos.values())
        classes[name] = {"config": imp.describe(), **imp.model_dump(mode="json"),
                         "enforced_by": " | ".join(sorted(used)) or "-", "hosts": hosts}
    mechanisms = sorted({i["mechanism"] for i in infos.values() if i["classes"]})
    return {"mechanism": " | ".join(mechanisms) or None, "classes": classes}

