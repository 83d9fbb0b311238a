"""Validation of the compare and sweep steps: good forms load, bad ones give one clear line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emulator.config import load_scenario
from emulator.errors import KubemuError

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]

COMPARE = {"name": "hop", "from": "host/inet-1", "trials": 2, "requests": 50,
           "arms": {"cluster": {"url": "http://{lbip:app-cluster}/clientip"},
                    "local": {"url": "http://{lbip:app-local}/clientip"}}}


def write(tmp_path: Path, steps: list) -> Path:
    doc = {"name": "t", "topology": str(REPO / "topologies" / "regional-3x2.yaml"), "seed": 3,
           "manifests": [str(REPO / "scenarios" / "manifests" / "extra-hop.yaml")], "steps": steps}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def sweep(**over) -> dict:
    return {"sweep": {"name": "delay", "impair": "inter_node.delay", "values": ["0", "0.5ms", "1ms"],
                      "steps": [{"compare": COMPARE}], "slope": {"flow": "hop-cluster", "between": [2, 8]}, **over}}


def test_the_sweep_scenario_loads():
    sc = load_scenario(REPO / "scenarios" / "extra-hop-sweep.yaml")
    [sw] = [s for s in sc.steps if s.KIND == "sweep"]
    assert sw.sweep.values == [0.0, 0.0005, 0.001, 0.002] and sw.sweep.unit == "ms"
    assert sw.sweep.shown(0.0005) == 0.5
    assert "hopd-cluster-v4" in sw.sweep.flows() and "hopd-local-cal" in sw.sweep.flows()


def test_a_loss_sweep_reads_shares(tmp_path):
    sc = load_scenario(write(tmp_path, [sweep(impair="internet.loss", values=["0%", "1%", 0.05])]))
    assert sc.steps[0].sweep.values == [0.0, 0.01, 0.05] and sc.steps[0].sweep.shown(0.05) == 5.0


def test_compare_flows_can_be_asserted(tmp_path):
    sc = load_scenario(write(tmp_path, [{"compare": COMPARE},
                                        {"assert": {"flow": "hop-local", "extra_hop_penalty_ms_ci_low": ">= 0"}},
                                        sweep(), {"assert": {"flow": "hop-cluster-v3", "success_ratio": "== 1"}}]))
    c = sc.steps[0].compare
    assert (c.interleave, c.block, c.concurrency, c.flow_names()) == \
        ("request", 10, 1, {"cluster": "hop-cluster", "local": "hop-local"})


@pytest.mark.parametrize("steps, message", [
    ([{"compare": {**COMPARE, "arms": {"a": COMPARE["arms"]["local"]}}}], "give 2 to 9 arms"),
    ([{"compare": {**COMPARE, "arms": {**COMPARE["arms"], "x": {"url": "ftp://a/"}}}}], "must be http"),
    ([{"compare": {**COMPARE, "arms": {"a": {"url": "http://x/", "impair": {"inter_node": {"delay": "1ms"}}},
                                       "b": {"url": "http://x/"}}}}], "need `interleave: block`"),
    ([{"compare": {**COMPARE, "from": "host/nope"}}], "no client host 'nope'"),
    ([{"compare": {**COMPARE, "from": "inet-1"}}], "write pod/NAME"),
    ([{"compare": {**COMPARE, "arms": {**COMPARE["arms"], "x": {"url": "http://{lbip:gone}/"}}}}],
     "no Service default/gone"),
    ([{"compare": {**COMPARE, "trials": 0}}], "greater than or equal to 1"),
    ([{"compare": COMPARE}, {"compare": COMPARE}], "flow 'hop-cluster' exists already"),
    ([sweep(values=["1ms"])], "at least 2 items"),
    ([sweep(values=["1ms", "1ms"])], "each value once"),
    ([sweep(values=["1ms", "fast"])], "invalid duration"),
    ([sweep(values=["1ms", "5%"])], "invalid duration"),
    ([sweep(values=["1ms", "11s"])], "longer than 10s"),
    ([sweep(impair="internet.loss", values=["1%", "100%"])], "out of range"),
    ([sweep(impair="inter_node.rate")], "write CLASS.delay or CLASS.loss"),
    ([sweep(scale="deployment/app")], "exactly one parameter"),
    ([sweep(slope={"flow": "hop-clusterx"})], "no arm flow 'hop-clusterx'"),
    ([sweep(slope={"flow": "hop-cluster", "between": [8, 2]})], "low 8 is above high 2"),
    ([{"assert": {"flow": "x", "extra_hop_penalty_ms_ci_low": "about 3"}}], "comparison"),
])
def test_bad_study_steps_are_one_line_errors(tmp_path, steps, message):
    with pytest.raises(KubemuError) as e:
        load_scenario(write(tmp_path, steps))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_check_exits_2_with_the_file_and_field(tmp_path):
    p = write(tmp_path, [sweep(values=["1ms", "1ms"])])
    r = subprocess.run([sys.executable, "-m", "emulator.cli", "check", str(p)], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 2
    assert "s.yaml:" in r.stderr and "steps[0].sweep" in r.stderr and "Traceback" not in r.stderr


def test_json_schema_describes_the_new_steps():
    from emulator.config import json_schemas
    text = str(json_schemas()["scenario.schema.json"])
    assert "CompareSpec" in text and "SweepSpec" in text and "extra_hop_penalty_ms_ci_low" in text
