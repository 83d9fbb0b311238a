"""Field paths, wait-until / object assertions, save + {var:...}, from deployment, manifest placeholders."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from emulator.config import load_scenario
from emulator.config.fieldpath import FieldPathError, is_empty, parse, select
from emulator.config.object_steps import ObjectCondition, ObjectTarget
from emulator.config.scenario import TrafficSpec, WaitSpec
from emulator.config.templates import Placeholder, render_values
from emulator.errors import ConfigError
from emulator.runner.steps.objects import holds, merged_slices

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]

SLICE = {"endpoints": [{"addresses": ["10.4.1.2"], "hostname": "db-1", "conditions": {"ready": False}},
                       {"addresses": ["10.4.0.9"], "conditions": {"ready": True, "serving": True}}],
         "metadata": {"labels": {"kubernetes.io/service-name": "db"}}}


def test_field_paths_keys_indexes_all_filters_and_quoted_keys() -> None:
    assert select(SLICE, "endpoints[1].conditions.ready") == (True, True)
    assert select(SLICE, "endpoints[-1].addresses[0]") == (True, "10.4.0.9")
    assert select(SLICE, "endpoints[*].conditions.ready") == (True, [False, True])
    assert select(SLICE, "endpoints[hostname=db-1].addresses[0]") == (True, ["10.4.1.2"])
    assert select(SLICE, "endpoints[conditions.ready=true].addresses[0]") == (True, ["10.4.0.9"])
    assert select(SLICE, 'metadata.labels["kubernetes.io/service-name"]') == (True, "db")
    assert select(SLICE, "endpoints[5].addresses") == (False, None)
    assert select(SLICE, "endpoints[hostname=nope].addresses") == (True, [])
    assert is_empty(*select(SLICE, "endpoints[hostname=nope]")) and not is_empty(*select(SLICE, "endpoints"))


@pytest.mark.parametrize("bad", ["", ".a", "a.", "a..b", "a[", "a[0]b", "a b", "a[x"])
def test_bad_field_paths(bad: str) -> None:
    with pytest.raises(FieldPathError):
        parse(bad)


def test_object_targets_and_conditions() -> None:
    assert ObjectTarget.parse("endpointslices?service=web") == ObjectTarget("EndpointSlice", "", None, "web")
    assert ObjectTarget.parse("pod/team/p1") == ObjectTarget("Pod", "p1", "team")
    assert ObjectTarget.parse("node/n1").kind == "Node"
    with pytest.raises(ValueError, match="invalid object"):
        ObjectTarget.parse("pods/web")
    c = ObjectCondition.model_validate({"object": "node/n1", "field": "metadata.name", "namespace": "x", "equals": "n1"})
    assert c.namespace_of is None and c.condition() == "equals"
    for bad, msg in [({"object": "pod/p"}, "exactly one"), ({"object": "pod/p", "gone": False}, "must be true"),
                     ({"object": "pod/p", "equals": 1}, "field is required"),
                     ({"object": "pod/p", "field": "a..b", "empty": True}, "cannot read"),
                     ({"object": "pod/p", "field": "a", "equals": 1, "absent": True}, "exactly one")]:
        with pytest.raises(ValidationError, match=msg):
            ObjectCondition.model_validate(bad)


def cond(**kw) -> ObjectCondition:
    return ObjectCondition.model_validate({"object": "endpointslices?service=db", **kw})


def test_holds_equals_empty_absent_gone() -> None:
    obj = merged_slices([{**SLICE, "metadata": {"name": "db-b"}},
                         {"metadata": {"name": "db-a"}, "endpoints": [{"addresses": ["10.4.0.3"], "conditions": {}}]}])
    assert select(obj, "endpoints[*].addresses[0]")[1] == ["10.4.0.3", "10.4.0.9", "10.4.1.2"]
    assert holds(cond(field="endpoints[hostname=db-1].conditions.ready", equals=[False]), obj, [False])[0]
    assert not holds(cond(field="endpoints[0].conditions.ready", equals=True), obj, True)[0]   # absent
    assert holds(cond(field="endpoints[0].conditions.ready", absent=True), obj)[0]
    assert holds(cond(field="endpoints[0].conditions", empty=True), obj)[0]
    assert holds(cond(field="endpoints[1].addresses[0]", equals="10.4.0.9"), obj, "10.4.0.9")[0]
    assert holds(cond(gone=True), None) == (True, "gone") and not holds(cond(gone=True), obj)[0]
    assert not holds(cond(field="x", empty=True), None)[0]          # no object: only `gone` holds
    assert holds(cond(field="endpoints[1].conditions.ready", equals="True"), obj, "True")[0] is False
    port = ObjectCondition.model_validate({"object": "service/web", "field": "spec.ports[0].port", "equals": "{var:p}"})
    assert holds(port, {"spec": {"ports": [{"port": 80}]}}, "80")[0]          # a rendered var vs a number
    assert merged_slices([]) is None


def test_wait_needs_ready_or_until_and_traffic_from_deployment() -> None:
    with pytest.raises(ValidationError, match="exactly one of ready and until"):
        WaitSpec.model_validate({})
    w = WaitSpec.model_validate({"until": {"object": "pod/p", "gone": True}, "timeout": "5s"})
    assert w.until.describe() == "pod/p gone"
    t = TrafficSpec.model_validate({"name": "t", "from": "deployment/web", "pod": 1, "tcp": {"target": "x:80"}})
    assert (t.from_.kind, t.from_.namespace, t.pod) == ("deployment", "default", 1)
    with pytest.raises(ValidationError, match="deployment/NAME only"):
        TrafficSpec.model_validate({"name": "t", "from": "pod/c", "pods": "all", "tcp": {"target": "x:80"}})


def test_render_values_renders_every_string_of_an_object() -> None:
    obj = {"spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "{pod:client}/32"}}]}], "n": 3, "b": True}}
    out = render_values(obj, lambda p: {"client": "10.4.0.7"}[p.name])
    assert out["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] == "10.4.0.7/32"
    assert out["spec"]["n"] == 3 and obj["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] == "{pod:client}/32"
    assert Placeholder.parse("var", "web-ip").name == "web-ip"


def scenario(tmp_path: Path, steps: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: s
        topology: {REPO}/topologies/regional-3.yaml
        manifests:
          - {REPO}/scenarios/manifests/quickstart.yaml
        steps:
        """) + textwrap.indent(textwrap.dedent(steps), "  "))
    return p


def test_scenario_checks_vars_sources_and_manifest_placeholders(tmp_path: Path) -> None:
    ok = scenario(tmp_path, """\
        - save: {name: ip, from: {object: service/web, field: spec.clusterIP}}
        - traffic: {name: t, from: deployment/web, pods: all, http: {url: "http://{var:ip}/"}}
        - assert: {flow: t, contains: {nodes_served: [default-pool-a-1]}}
        - save: {name: p50, from: {flow: t, field: total_ms.p50}}
        - wait: {until: {object: deployment/web, field: status.readyReplicas, equals: "{var:p50}"}}
        """)
    assert len(load_scenario(ok).steps) == 5
    for steps, msg in [
        ('- traffic: {name: t, from: pod/client, http: {url: "http://{var:ip}/"}}\n', "no earlier save step stores 'ip'"),
        ("- save: {name: x, from: {flow: nope, field: a}}\n", "no earlier traffic step named 'nope'"),
        ('- traffic: {name: t, from: deployment/nope, http: {url: "http://web/"}}\n', "no Deployment default/nope"),
        ("- save: {name: Bad, from: {object: service/web, field: a}}\n", "lowercase letters"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            load_scenario(scenario(tmp_path, steps))
    bad_manifest = tmp_path / "m.yaml"
    bad_manifest.write_text(
        f"name: m\ntopology: {REPO}/topologies/regional-3.yaml\nmanifests:\n"
        f"  - {REPO}/scenarios/manifests/quickstart.yaml\n"
        "  - {apiVersion: v1, kind: Service, metadata: {name: x}, spec: {type: LoadBalancer, selector: {app: web},\n"
        "     ports: [{port: 80}], loadBalancerSourceRanges: ['{host:nope}/32']}}\n")
    with pytest.raises(ConfigError, match="no such client host"):
        load_scenario(bad_manifest)
    bad_manifest.write_text(bad_manifest.read_text().replace("{host:nope}", "{host:vm-1}"))
    assert load_scenario(bad_manifest).objects[-1].obj["spec"]["loadBalancerSourceRanges"] == ["{host:vm-1}/32"]
