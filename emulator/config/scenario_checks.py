"""Cross-reference checks of a loaded scenario: what its steps name must exist.

Run by the loader once the manifests are loaded (`scenario_problems`): flows, pods,
nodes, hosts, waited and deleted objects, Services named in URLs and placeholders,
timing keys. Each problem is a (field path, message) pair the loader turns into
`file:line: field: message`.
"""
from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from emulator.config.chaos import AvailabilityStep, FaultStep, availability_problems, fault_problems
from emulator.config.loads import split_target, target_text
from emulator.config.object_steps import ObjectCondition, SaveStep
from emulator.config.reachability import LabelStep, ReachabilityStep, reachability_problems
from emulator.config.scenario import (AssertStep, AwaitStep, DeleteStep, ScaleStep, Scenario, TrafficSpec,
                                      TrafficStep, WaitStep)
from emulator.config.source import Loc
from emulator.config.study import CompareStep, SweepStep
from emulator.config.templates import placeholders, render_dummy
from emulator.config.timing import Timing

_SVC_HOST_RE = re.compile(r"^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?\.?$")


def scenario_problems(scenario: Scenario) -> list[tuple[Loc, str]]:
    """Cross-reference errors as (field path, message), in step order."""
    problems: list[tuple[Loc, str]] = []
    for key in scenario.timing_overrides:
        if key not in Timing.model_fields:
            problems.append((("timing_overrides", key),
                             f"unknown timing {key!r} (known: {', '.join(Timing.model_fields)})"))
    flows: set[str] = set()
    saved: set[str] = set()
    faults: set[str] = set()
    background: set[str] = set()
    for i, step in enumerate(scenario.steps):
        problems += [(("steps", i) + loc, m) for loc, m in var_problems(step, saved)]
        if isinstance(step, SaveStep):
            src = step.save.from_
            if src.flow is not None and src.flow not in flows:
                problems.append((("steps", i, "save", "from", "flow"), f"no earlier traffic step named {src.flow!r}"))
            saved.add(step.save.name)
        if isinstance(step, WaitStep) and step.wait.ready is not None:
            ref, ns = step.wait.ready, step.wait.namespace
            if scenario.find(ref.api_kind, ns, ref.name) is None:
                problems.append((("steps", i, "wait", "ready"),
                                 f"no {ref.api_kind} {ns}/{ref.name} in the manifests"))
        elif isinstance(step, TrafficStep):
            spec = step.traffic
            if spec.name in flows:
                problems.append((("steps", i, "traffic", "name"), f"duplicate flow name {spec.name!r}"))
            flows.add(spec.name)
            if spec.background:
                background.add(spec.name)
            problems += [(("steps", i, "traffic") + loc, msg) for loc, msg in _traffic_problems(scenario, spec)]
        elif isinstance(step, (ReachabilityStep, LabelStep)):
            problems += [(("steps", i, step.KIND) + loc, msg) for loc, msg in reachability_problems(scenario, step)]
        elif isinstance(step, AwaitStep) and step.await_ != "all":
            problems += [(("steps", i, "await", j), msg)
                         for j, msg in await_problems(step.await_, flows, background)]
        elif isinstance(step, AssertStep) and isinstance(step.assert_, ObjectCondition):
            pass
        elif isinstance(step, AssertStep):
            for field in ("flow", "minus"):
                name = getattr(step.assert_, field)
                if name is not None and name not in flows:
                    known = ", ".join(sorted(flows)) or "none yet"
                    problems.append((("steps", i, "assert", field),
                                     f"no earlier traffic step named {name!r} (flows: {known})"))
            for j, ip in enumerate(step.assert_.client_ips_seen or []):
                problems += [(("steps", i, "assert", "client_ips_seen", j), m)
                             for m in _placeholder_problems(scenario, ip)]
            for field in ("nodes_served", "entered_nodes"):
                for j, node in enumerate(getattr(step.assert_, field) or []):
                    if scenario.topology.node(node) is None:
                        problems.append((("steps", i, "assert", field, j), f"no node {node!r} in the topology"))
        elif isinstance(step, DeleteStep):
            ref, ns = step.delete.object, step.delete.namespace
            if scenario.find(ref.api_kind, ns, ref.name) is None:
                problems.append((("steps", i, "delete", "object"), f"no {ref.api_kind} {ns}/{ref.name} in the manifests"))
        elif isinstance(step, FaultStep):
            problems += [(("steps", i, "fault") + loc, m) for loc, m in
                         fault_problems(step.fault, scenario.topology, flows, faults, scenario.find,
                                        scenario.machines.count)]
            faults.add(step.fault.label(i))
        elif isinstance(step, AvailabilityStep):
            problems += [(("steps", i, "availability") + loc, m) for loc, m in
                         availability_problems(step.availability, flows, faults)]
        elif isinstance(step, (CompareStep, SweepStep)):
            problems += [(("steps", i) + loc, m) for loc, m in study_problems(step, scenario, flows)]
        elif isinstance(step, ScaleStep):
            sc = step.scale
            if scenario.find("Deployment", sc.namespace, sc.deployment) is None:
                problems.append((("steps", i, "scale", "deployment"),
                                 f"no Deployment {sc.namespace}/{sc.deployment} in the manifests"))
    return problems


def manifest_placeholder_problems(scenario: Scenario) -> list[tuple[Any, str]]:
    """(object, message) for placeholders in manifests naming nothing; `{var:...}` only in apply steps."""
    out = []
    for mo in scenario.objects:
        text = json.dumps(mo.obj)
        out += [(mo, m) for m in _placeholder_problems(scenario, text)]
        out += [(mo, f"{{var:{p.name}}}: manifests are applied before any save step (use an apply step)")
                for p in placeholders(text) if p.kind == "var"]
    for i in sorted(scenario._step_objects):
        out += [(mo, m) for mo in scenario._step_objects[i] for m in _placeholder_problems(scenario, json.dumps(mo.obj))]
    return out


def var_problems(step, saved: set[str]) -> list[tuple[Loc, str]]:
    """`{var:NAME}` placeholders of a step that no earlier `save` step stored."""
    text = step.model_dump_json(by_alias=True, warnings=False, fallback=str)
    return [((step.KIND,), f"{{var:{p.name}}}: no earlier save step stores {p.name!r}")
            for p in placeholders(text) if p.kind == "var" and p.name not in saved]


def await_problems(names: list[str], flows: set[str], background: set[str]) -> list[tuple[int, str]]:
    """(index, message) for awaited names that are no earlier flow or a flow that is not background."""
    out = []
    for j, name in enumerate(names):
        if name not in flows:
            known = ", ".join(sorted(background)) or "none yet"
            out.append((j, f"no earlier traffic step named {name!r} (background flows: {known})"))
        elif name not in background:
            out.append((j, f"flow {name!r} is not a background flow (add `background: true` to it)"))
    return out


def _placeholder_problems(scenario: Scenario, text: str) -> list[str]:
    """Placeholders that name nothing: unknown nodes, hosts, pods or Services."""
    out = []
    for p in placeholders(text):
        if p.kind == "node" and scenario.topology.node(p.name) is None:
            out.append(f"{{node:{p.name}}}: no such node in the topology")
        elif p.kind == "host" and scenario.topology.client(p.name) is None:
            out.append(f"{{host:{p.name}}}: no such client host in the topology")
        elif p.kind in ("pod", "poddns") and scenario.find("Pod", p.namespace, p.name) is None:
            out.append(f"{{{p.kind}:{p.name}}}: no Pod {p.namespace}/{p.name} in the manifests")
        elif p.kind in ("clusterip", "nodeport", "lbip", "hcport") and \
                scenario.find("Service", p.namespace, p.name) is None:
            out.append(f"{{{p.kind}:{p.name}}}: no Service {p.namespace}/{p.name} in the manifests")
        elif p.kind == "ingressip" and scenario.find("Ingress", p.namespace, p.name) is None:
            out.append(f"{{ingressip:{p.name}}}: no Ingress {p.namespace}/{p.name} in the manifests")
    return out


def _traffic_problems(scenario: Scenario, spec: TrafficSpec) -> list[tuple[Loc, str]]:
    """The source exists; a Service DNS name in an HTTP URL names a Service of the manifests."""
    problems: list[tuple[Loc, str]] = []
    src = spec.from_
    if src.kind == "pod" and scenario.find("Pod", src.namespace, src.name) is None:
        problems.append((("from",), f"no Pod {src.namespace}/{src.name} in the manifests "
                                    "(pods of a Deployment cannot be named; add a Pod)"))
    elif src.kind == "node" and scenario.topology.node(src.name) is None:
        names = ", ".join(n.name for n in scenario.topology.nodes())
        problems.append((("from",), f"no node {src.name!r} in the topology (nodes: {names})"))
    elif src.kind == "deployment" and scenario.find("Deployment", src.namespace, src.name) is None:
        problems.append((("from",), f"no Deployment {src.namespace}/{src.name} in the manifests"))
    elif src.kind == "host" and scenario.topology.client(src.name) is None:
        names = ", ".join(c.name for c in scenario.topology.clients) or "none"
        problems.append((("from",), f"no client host {src.name!r} in the topology (clients: {names})"))
    if spec.http is not None:
        problems += [(("http", "url"), m) for m in _placeholder_problems(scenario, spec.http.url)]
        m = _SVC_HOST_RE.match(urlsplit(render_dummy(spec.http.url)).hostname or "")
        if m and scenario.find("Service", m.group(2), m.group(1)) is None:
            problems.append((("http", "url"), f"no Service {m.group(2)}/{m.group(1)} in the manifests"))
    elif spec.dns is not None:
        problems += [(("dns", "name"), m) for m in _placeholder_problems(scenario, spec.dns.name)]
        for j, e in enumerate(spec.dns.expect or []):
            problems += [(("dns", "expect", j), m) for m in _placeholder_problems(scenario, e)]
    elif spec.protocol != "http":
        field = "host" if spec.protocol == "ping" else "target"
        text = target_text(spec.load)
        problems += [((spec.protocol, field), m) for m in _placeholder_problems(scenario, text)]
        host = split_target(render_dummy(text), 1)[0] if field == "target" else render_dummy(text)
        m = _SVC_HOST_RE.match(host)
        if m and scenario.find("Service", m.group(2), m.group(1)) is None:
            problems.append(((spec.protocol, field), f"no Service {m.group(2)}/{m.group(1)} in the manifests"))
    return problems


def study_problems(step: CompareStep | SweepStep, scenario, flows: set[str]) -> list[tuple[tuple, str]]:
    """Cross-references of a study step (source, placeholders, slope flow); adds its flows to `flows`."""
    out: list[tuple[tuple, str]] = []
    compares = [(("compare",), step.compare)] if isinstance(step, CompareStep) else \
        [(("sweep", "steps", j, "compare"), s.compare) for j, s in enumerate(step.sweep.steps)]
    for loc, spec in compares:
        seen: set = set()
        for arm, a in spec.arms.items():
            fake = SimpleNamespace(from_=spec.source, http=SimpleNamespace(url=a.url), protocol="http")
            for l, m in _traffic_problems(scenario, fake):
                where = loc + (("from",) if l == ("from",) else ("arms", arm, "url"))
                if (where, m) not in seen:
                    seen.add((where, m))
                    out.append((where, m))
        names = spec.flow_names()
        if isinstance(step, CompareStep):
            for n in names.values():
                if n in flows:
                    out.append((loc + ("name",), f"flow {n!r} exists already"))
                flows.add(n)
    if isinstance(step, SweepStep):
        sw = step.sweep
        made = sw.flows()
        for n in made:
            if n in flows:
                out.append((("sweep", "name"), f"flow {n!r} exists already"))
        flows.update(made)
        if sw.slope is not None and sw.slope.flow not in set(made.values()):
            out.append((("sweep", "slope", "flow"), f"no arm flow {sw.slope.flow!r} in the sweep "
                                                   f"(arm flows: {', '.join(sorted(set(made.values())))})"))
        if sw.scale is not None:
            name = sw.scale.partition("/")[2]
            if scenario.find("Deployment", "default", name) is None:
                out.append((("sweep", "scale"), f"no Deployment default/{name} in the manifests"))
    return out
