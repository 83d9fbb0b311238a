"""Load scenario and topology files into validated models; `check` for `kubemu check FILE`.

Order of checks: YAML syntax, the shape of each file (pydantic), each manifest object
(schema, then semantics), cross-object checks, then scenario cross-references. The first
problem found is raised as one ConfigError naming file, line and field.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pydantic

from emulator.config.manifest_checks import check_object, check_objects
from emulator.config.ingress_checks import check_ingresses
from emulator.config.manifests import ManifestObject, validate_object
from emulator.config.reading import reading_budget
from emulator.config.scenario import Scenario
from emulator.config.scenario_checks import manifest_placeholder_problems, scenario_problems
from emulator.config.size_checks import kernel_name_problems, size_problems
from emulator.config.source import (Loc, YamlDoc, format_path, read_yaml, read_yaml_all,
                                    validation_error)
from emulator.config.topology import Topology, topology_problems
from emulator.errors import ConfigError
from emulator.records.results import Results

SCENARIO_ONLY_KEYS = {"steps", "manifests", "topology", "timing", "timing_overrides", "report"}


def _mapping_root(doc: YamlDoc, what: str) -> dict[str, Any]:
    """The document as a plain mapping, or a ConfigError."""
    if not isinstance(doc.root, dict):
        raise ConfigError(f"a {what} file must be a YAML mapping", doc.file, doc.line or 1)
    return doc.plain()


def _topology_from(doc: YamlDoc, prefix: Loc = ()) -> Topology:
    """Validate a topology document (or an inline topology mapping) and its cross-field rules."""
    try:
        topo = Topology.model_validate(doc.plain())
    except pydantic.ValidationError as exc:
        raise validation_error(exc, doc, prefix, Topology) from None
    for loc, message in topology_problems(topo):
        raise ConfigError(message, doc.file, doc.line_of(loc), format_path(prefix + loc))
    return topo


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """Read and validate a topology file."""
    with reading_budget():
        return _topology_file(read_yaml(str(path)))


def _topology_file(doc: YamlDoc) -> Topology:
    """Validate a parsed topology file."""
    _mapping_root(doc, "topology")
    return _topology_from(doc)


def load_manifest_file(path: str | os.PathLike[str]) -> list[ManifestObject]:
    """Every object of a multi-document manifest file, each validated on its own."""
    objects = []
    for doc in read_yaml_all(str(path)):
        mo = validate_object(doc)
        check_object(mo)
        objects.append(mo)
    return objects


def _resolve(base: str, ref: str) -> str:
    """A path written in `base`'s file, relative to that file's folder."""
    if os.path.isabs(ref):
        return ref
    return os.path.normpath(os.path.join(os.path.dirname(base), ref))


def _load_objects(doc: YamlDoc, entries: list[Any], field: tuple = ("manifests",),
                  check_all: bool = True, warnings: list[str] | None = None) -> list[ManifestObject]:
    """Objects of manifests entries (or an apply step's): files (relative paths) or inline objects."""
    objects: list[ManifestObject] = []
    for i, entry in enumerate(entries):
        loc = (*field, i)
        if isinstance(entry, str):
            file = _resolve(doc.file, entry)
            if not os.path.exists(file):
                raise doc.error(loc, f"manifest file {file} not found")
            objects += load_manifest_file(file)
        else:
            mo = validate_object(doc.sub(loc), loc)
            check_object(mo)
            objects.append(mo)
    if check_all:
        found = check_objects(objects)
        if warnings is not None:
            warnings += found
        check_ingresses(objects)
    return objects


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario with its topology and manifests (one reading budget)."""
    with reading_budget():
        return _scenario_file(read_yaml(str(path)))


def _scenario_file(doc: YamlDoc) -> Scenario:
    """Validate a parsed scenario file, loading the files it names."""
    raw = _mapping_root(doc, "scenario")
    topology_file = None
    ref = raw.get("topology")
    if isinstance(ref, str):
        topology_file = _resolve(doc.file, ref)
        if not os.path.exists(topology_file):
            raise doc.error(("topology",), f"topology file {topology_file} not found")
        raw["topology"] = load_topology(topology_file)
    elif isinstance(ref, dict):
        raw["topology"] = _topology_from(doc.sub(("topology",)), ("topology",))
    try:
        scenario = Scenario.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise validation_error(exc, doc, (), Scenario) from None
    scenario._file = doc.file
    scenario._topology_file = topology_file
    scenario._objects = _load_objects(doc, raw.get("manifests") or [], warnings=scenario._warnings)
    for i, step in enumerate(scenario.steps):
        if step.KIND == "apply":
            # Applied objects replace or add to the manifests: checked one by one.
            scenario._step_objects[i] = _load_objects(doc, raw["steps"][i]["apply"], ("steps", i, "apply"),
                                                      check_all=False)
    _check_sizes(doc, scenario)
    for loc, message in scenario_problems(scenario):
        raise doc.error(loc, message)
    for mo, message in manifest_placeholder_problems(scenario):
        raise mo.error(("metadata", "name"), message)
    return scenario


def _check_sizes(doc: YamlDoc, scenario: Scenario) -> None:
    """Pods' kernel names, object and pod counts, and the machine's memory (late failures, early)."""
    objects = scenario.objects + [mo for i in sorted(scenario._step_objects) for mo in scenario._step_objects[i]]
    for mo, loc, message in kernel_name_problems(objects):
        raise mo.error(loc, message)
    scaled = [step.scale.replicas for step in scenario.steps if step.KIND == "scale"]
    topo = scenario.topology
    for loc, message in size_problems(objects, scaled, len(topo.nodes()), len(topo.clients)):
        raise doc.error(loc, message)


def is_scenario(doc: YamlDoc) -> bool:
    """True when a document looks like a scenario (has steps, manifests or a topology key)."""
    return isinstance(doc.root, dict) and bool(SCENARIO_ONLY_KEYS & set(doc.root))


def check(path: str | os.PathLike[str]) -> str:
    """Validate a scenario or topology file; a one-line summary (then warning lines), or a ConfigError."""
    with reading_budget():
        doc = read_yaml(str(path))
        if is_scenario(doc):
            scenario = _scenario_file(doc)
            return "\n".join([_scenario_summary(scenario), *scenario._warnings])
        t = _topology_file(doc)
    return (f"topology {t.name}: ok: {_count(len(t.nodes()), 'node')} in {len(t.zones())} zones, "
            f"{_count(len(t.clients), 'client')}, pod range {t.cluster.pod_range}, "
            f"service range {t.cluster.service_range}")


def _scenario_summary(s: Scenario) -> str:
    """The one-line summary of a valid scenario."""
    kinds: dict[str, int] = {}
    for mo in s.objects:
        kinds[mo.kind] = kinds.get(mo.kind, 0) + 1
    objs = ", ".join(f"{n} {k}" for k, n in kinds.items()) or "no objects"
    return (f"scenario {s.name}: ok: topology {s.topology.name} "
            f"({_count(len(s.topology.nodes()), 'node')}, {_count(len(s.topology.clients), 'client')}), "
            f"{objs}, {len(s.steps)} steps")


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of the scenario and topology files (for editors) and of a run's results.json, by file name."""
    return {"scenario.schema.json": Scenario.model_json_schema(),
            "topology.schema.json": Topology.model_json_schema(),
            "results.schema.json": Results.model_json_schema()}


def write_json_schemas(directory: str | os.PathLike[str]) -> list[Path]:
    """Write the JSON Schemas into `directory`; return the written paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        target = out / name
        target.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(target)
    return written


def _count(n: int, noun: str) -> str:
    """`1 client`, `2 clients`."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
