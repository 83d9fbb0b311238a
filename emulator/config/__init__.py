"""Scenario and topology files, loaded and validated into typed objects before the kernel is touched.

Entry points: `load_scenario(path)`, `load_topology(path)`, `check(path)` (for
`kubemu check FILE`) and `write_json_schemas(dir)`. Every user mistake is raised as one
`emulator.errors.ConfigError` naming file, line and field path.
"""
from emulator.config.loader import (check, json_schemas, load_manifest_file, load_scenario,
                                    load_topology, write_json_schemas)
from emulator.config.manifest_checks import selector_matches, service_selects
from emulator.config.manifests import ManifestObject
from emulator.config.scenario import (AssertSpec, AssertStep, HttpLoad, ObjectRef, Scenario, SleepStep,
                                      Step, TrafficSource, TrafficSpec, TrafficStep, WaitSpec, WaitStep)
from emulator.config.timing import PROFILES, Timing
from emulator.config.topology import Client, Cluster, NodePool, NodeSpec, Topology, Vpc
from emulator.config.types import Comparison, parse_cidr, parse_duration

__all__ = [
    "AssertSpec", "AssertStep", "Client", "Cluster", "Comparison", "HttpLoad", "ManifestObject",
    "NodePool", "NodeSpec", "ObjectRef", "PROFILES", "Scenario", "SleepStep", "Step", "Timing",
    "Topology", "TrafficSource", "TrafficSpec", "TrafficStep", "Vpc", "WaitSpec", "WaitStep",
    "check", "json_schemas", "load_manifest_file", "load_scenario", "load_topology",
    "parse_cidr", "parse_duration", "selector_matches", "service_selects", "write_json_schemas",
]
