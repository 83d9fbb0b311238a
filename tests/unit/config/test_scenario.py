"""Scenarios: the quickstart, seed manifests, schemas, and no traceback for any malformed input."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from ruamel.yaml import YAML

from emulator.config import (AssertStep, Scenario, SleepStep, TrafficStep, WaitStep, check,
                             load_manifest_file, load_scenario, write_json_schemas)
from emulator.config.loader import _scenario_file
from emulator.config.source import YamlDoc
from emulator.errors import ConfigError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
SEED = REPO / "scenarios" / "manifests" / "seed"           # verbatim copies kept in the repo
SHARED_SEED = REPO.parent / "shared" / "manifests"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


def test_quickstart_loads_with_everything_the_runner_needs() -> None:
    """Topology resolved, objects kept with file and line, typed steps."""
    s = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    assert (s.name, s.timing, s.report) == ("quickstart", "fast", ["summary"])
    assert s.topology.name == "regional-3" and s.topology_file.endswith("topologies/regional-3.yaml")
    assert [(o.kind, o.namespace, o.name) for o in s.objects] == [
        ("Deployment", "default", "web"), ("Service", "default", "web"), ("Pod", "default", "client")]
    web = s.find("Deployment", "default", "web")
    assert web.file.endswith("scenarios/manifests/quickstart.yaml") and web.line == 2
    container = web.obj["spec"]["template"]["spec"]["containers"][0]
    assert (web.obj["spec"]["replicas"], container["image"]) == (6, AGNHOST)
    assert container["args"] == ["netexec", "--http-port=8080", "--udp-port=8081"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    svc = s.find("Service", "default", "web").obj["spec"]
    assert svc["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    assert s.find("Pod", "default", "client").obj["spec"]["containers"][0]["args"] == ["pause"]
    wait_web, wait_client, traffic, check_ = s.steps
    assert isinstance(wait_web, WaitStep) and str(wait_web.wait.ready) == "deployment/web"
    assert wait_client.wait.ready.api_kind == "Pod" and wait_client.wait.timeout == 60.0
    assert isinstance(traffic, TrafficStep) and traffic.traffic.protocol == "http"
    assert str(traffic.traffic.from_) == "pod/default/client"
    assert (traffic.traffic.load.requests, traffic.traffic.load.concurrency) == (1000, 8)
    assert traffic.traffic.load.url == "http://web.default.svc.cluster.local/hostname"
    assert isinstance(check_, AssertStep) and check_.assert_.flow == "client-to-web"
    assert {k: str(v) for k, v in check_.assert_.checks().items()} == {
        "success_ratio": ">= 1", "distinct_backends": ">= 5"}
    assert s.timings().kube_proxy_min_sync_period < s.timings().kube_proxy_sync_period


def test_field_lines_are_kept_for_later_errors() -> None:
    """A ManifestObject tells the line of any of its fields."""
    s = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    svc = s.find("Service", "default", "web")
    err = svc.error(("spec", "selector"), "boom")
    assert (err.line, err.field) == (32, "spec.selector")
    assert svc.line_of(("spec", "nope", 3)) == svc.line_of(("spec",))


def test_timing_overrides_apply() -> None:
    """gke profile with two overrides."""
    s = load_scenario(FIXTURES / "good" / "scenario-files.yaml")
    t = s.timings()
    assert (t.node_monitor_grace_period, t.kube_proxy_min_sync_period, t.node_lease_interval) == (40, 0.5, 10)
    assert isinstance(s.steps[2], SleepStep) and s.steps[2].sleep == 1.5
    assert s.steps[4].traffic.from_.kind == "node" and s.steps[5].traffic.from_.name == "vm-1"


def test_seed_copies_are_verbatim() -> None:
    """scenarios/manifests/seed/ holds the seed's files byte for byte."""
    if not SHARED_SEED.is_dir():
        pytest.skip(f"the shared seed manifests are not at {SHARED_SEED} on this checkout")
    for name in ("seed-ingress-v1beta1.yaml", "seed-lb-service-local.yaml"):
        assert (SEED / name).read_bytes() == (SHARED_SEED / name).read_bytes()


def test_seed_manifests_load_unchanged(tmp_path: Path) -> None:
    """The seed's v1beta1 Ingress and LoadBalancer Service load as written."""
    ingress = load_manifest_file(SEED / "seed-ingress-v1beta1.yaml")
    service = load_manifest_file(SEED / "seed-lb-service-local.yaml")
    assert (ingress[0].api_version, ingress[0].kind, ingress[0].namespace) == (
        "networking.k8s.io/v1beta1", "Ingress", "default")
    assert service[0].obj["spec"]["externalTrafficPolicy"] == "Local"
    pods = tmp_path / "pods.yaml"
    pods.write_text("\n---\n".join(
        f"{{apiVersion: v1, kind: Pod, metadata: {{name: {c}, labels: {{app: demo, component: {c}}}}}, "
        f"spec: {{containers: [{{name: c, image: {AGNHOST}}}]}}}}" for c in ("frontend", "users"))
        + "".join(f"\n---\n{{apiVersion: v1, kind: Service, metadata: {{name: {c}}}, spec: {{type: NodePort, "
                  f"selector: {{app: demo, component: {c}}}, ports: [{{port: {p}, targetPort: 8080}}]}}}}"
                  for c, p in (("frontend", 80), ("users", 8080))))  # the Ingress's backends
    scenario = tmp_path / "seed.yaml"
    scenario.write_text(
        f"name: seed\ntopology: {REPO / 'topologies' / 'regional-3.yaml'}\nmanifests:\n"
        f"  - pods.yaml\n  - {SEED / 'seed-lb-service-local.yaml'}\n  - {SEED / 'seed-ingress-v1beta1.yaml'}\n")
    assert [o.kind for o in load_scenario(scenario).objects] == ["Pod", "Pod", "Service", "Service", "Service", "Ingress"]


def test_json_schemas_are_written(tmp_path: Path) -> None:
    """Scenario.model_json_schema() works; write_json_schemas writes the three files."""
    schema = Scenario.model_json_schema()
    assert {"topology", "steps", "manifests"} <= set(schema["properties"])
    paths = write_json_schemas(tmp_path / "schemas")
    assert sorted(p.name for p in paths) == ["results.schema.json", "scenario.schema.json", "topology.schema.json"]
    assert json.loads(paths[0].read_text())["title"] == "Scenario"


def test_check_summarises_a_scenario() -> None:
    """One line naming what was checked."""
    assert check(REPO / "scenarios" / "quickstart.yaml") == (
        "scenario quickstart: ok: topology regional-3 (3 nodes, 2 clients), "
        "1 Deployment, 1 Service, 1 Pod, 4 steps")


def test_missing_file_is_a_config_error() -> None:
    """No traceback for a path that does not exist."""
    with pytest.raises(ConfigError, match="file not found"):
        check(FIXTURES / "nope.yaml")


def _paths(node: Any, loc: tuple = ()) -> Iterator[tuple]:
    """Every key and item path of a YAML tree."""
    if loc:
        yield loc
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, loc + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, loc + (i,))


def test_any_malformed_value_is_a_config_error() -> None:
    """Replacing any value of a rich scenario by a wrong type gives a ConfigError, never a crash."""
    source = FIXTURES / "good" / "scenario-inline.yaml"
    root = YAML(typ="rt").load(source.read_text())
    crashes = []
    for loc in _paths(root):
        for value in (None, ["x"], "x", -1):
            doc = copy.deepcopy(root)
            parent = doc
            for part in loc[:-1]:
                parent = parent[part]
            parent[loc[-1]] = value
            try:
                _scenario_file(YamlDoc(str(source), doc))
            except ConfigError:
                pass
            except Exception as exc:   # noqa: BLE001 - the point of the test
                crashes.append(f"{loc} = {value!r}: {type(exc).__name__}: {exc}")
    assert not crashes, "\n".join(crashes[:10])
