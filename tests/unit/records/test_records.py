"""The typed records: results.json read and written through `Results` unchanged, the committed
JSON Schemas equal to the models', and the records Ray ships to actors survive pickling."""
from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
from ray import cloudpickle

from emulator.config import json_schemas, load_topology
from emulator.config.timing import timing_for
from emulator.errors import KubemuError
from emulator.naming import RunNames
from emulator.records.cloud import CloudFacts, CloudHost
from emulator.records.results import Results
from emulator.report.render import load_run
from emulator.runner.plan import make_plan

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
# results.json of real runs (a passed one, one failed at a wait, one with pod deletions and checks)
RUNS = sorted(FIXTURES.glob("*-results.json"))


def test_the_committed_schemas_are_the_models_schemas():
    for name, schema in json_schemas().items():
        committed = (ROOT / "docs" / "schemas" / name).read_text(encoding="utf-8")
        assert committed == json.dumps(schema, indent=2, sort_keys=True) + "\n", \
            f"docs/schemas/{name} is stale: python -c 'from emulator.config import write_json_schemas; " \
            "write_json_schemas(\"docs/schemas\")'"


@pytest.mark.parametrize("path", RUNS, ids=[p.stem for p in RUNS])
def test_a_real_results_json_validates_and_is_written_back_unchanged(path, tmp_path):
    raw = json.loads(path.read_text())
    jsonschema.validate(raw, json.loads((ROOT / "docs" / "schemas" / "results.schema.json").read_text()))
    res = Results.model_validate(raw)
    res.write(str(tmp_path / "results.json"))   # same keys, values and key order: the same bytes
    assert (tmp_path / "results.json").read_text() == path.read_text()
    assert [s.step for s in res.steps] == [s["step"] for s in raw["steps"]]
    assert res.ok == raw["ok"]
    if "error" not in raw:
        assert res.ok == all(s.ok for s in res.steps)


def test_a_run_without_topology_and_a_bad_results_json(tmp_path):
    raw = json.loads((FIXTURES / "bad-command-results.json").read_text())
    res = Results.model_validate(raw)
    assert res.error and res.timeline is None and "timeline" not in res.to_json()
    (tmp_path / "results.json").write_text(json.dumps({**raw, "steps": [{"no_kind": 1}]}))
    with pytest.raises(KubemuError, match=r"results.json: steps\.0\.step: Field required"):
        load_run(tmp_path)


def test_a_step_record_completed_after_it_was_recorded_is_written_complete(tmp_path):
    res = Results(scenario="s", run_id="ab12", run_dir=str(tmp_path), started=1.0, steps=[], flows={})
    rec = {"step": "traffic", "flow": "f", "background": True}
    res.record_step(rec)
    rec.update(ended=2.0, requests=10)   # a background flow finishes later (runner/flows.finish)
    res.seal_steps()
    res.write(str(tmp_path / "results.json"))
    assert json.loads((tmp_path / "results.json").read_text())["steps"] == [rec]


def test_plan_facts_and_timing_survive_pickling_for_ray():
    plan = make_plan(load_topology(os.path.join(ROOT, "topologies", "regional-3.yaml")), RunNames("ab12"))
    facts = CloudFacts(cluster_name=plan.cluster_name, subnet=plan.subnet, pod_range=plan.cluster_cidr,
                       external_range=plan.external_range, gateways=[plan.gateway],
                       hosts=[CloudHost(**h.model_dump(), mac="02:00:00:00:00:01") for h in plan.hosts])
    for obj in (plan, facts, timing_for("fast"), plan.nodes[0]):
        assert cloudpickle.loads(cloudpickle.dumps(obj)) == obj
    node = plan.nodes[0]
    assert node.role == "node" and node.pod_cidr and node.fabric_port == RunNames("ab12").fabric_port(0)
    assert {h.kind for h in plan.clients} <= {"vm", "internet"} and plan.probers[0].kind == "prober"
