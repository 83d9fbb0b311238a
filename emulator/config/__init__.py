"""Scenario and topology files, loaded and validated into typed objects before the kernel is touched.

Entry points: `load_scenario(path)`, `load_topology(path)`, `check(path)` (for
`kubemu check FILE`) and `write_json_schemas(dir)`. Every user mistake is raised as one
`emulator.errors.ConfigError` naming file, line and field path.
"""
import importlib
from typing import Any

# Names re-exported here, by submodule. Loaded on first use (PEP 562), so a process that needs
# only `emulator.config.timing` (every node agent) does not build the scenario models.
_EXPORTS = {
    "loader": ("check", "json_schemas", "load_manifest_file", "load_scenario", "load_topology",
               "write_json_schemas"),
    "manifest_checks": ("selector_matches", "service_selects"),
    "manifests": ("ManifestObject",),
    "refs": ("ObjectRef", "TrafficSource"),
    "scenario": ("AssertSpec", "AssertStep", "HttpLoad", "Scenario", "SleepStep", "Step",
                 "TrafficSpec", "TrafficStep", "WaitSpec", "WaitStep"),
    "timing": ("PROFILES", "Timing"),
    "topology": ("Client", "Cluster", "NodePool", "NodeSpec", "Topology", "Vpc"),
    "types": ("Comparison", "parse_cidr", "parse_duration"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import a re-exported name's submodule when the name is first asked for."""
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


__all__ = [
    "AssertSpec", "AssertStep", "Client", "Cluster", "Comparison", "HttpLoad", "ManifestObject",
    "NodePool", "NodeSpec", "ObjectRef", "PROFILES", "Scenario", "SleepStep", "Step", "Timing",
    "Topology", "TrafficSource", "TrafficSpec", "TrafficStep", "Vpc", "WaitSpec", "WaitStep",
    "check", "json_schemas", "load_manifest_file", "load_scenario", "load_topology",
    "parse_cidr", "parse_duration", "selector_matches", "service_selects", "write_json_schemas",
]
