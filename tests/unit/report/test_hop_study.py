"""Extra-hop study figures from synthetic records: shares, expectations, penalty growth."""
from types import SimpleNamespace

import pytest

from emulator.records.results import TopologyClient, TopologyNode
from emulator.report import hop_study, render
from emulator.report.hops import entered_without_pod_ratio, extra_hop_penalty_ms
from tests.run_results import results_from

pytestmark = pytest.mark.unit

NODES = [{"name": f"n{i}", "zone": f"z{i % 3}", "ip": f"10.128.0.{i + 2}", "pod_cidr": f"10.4.{i}.0/24"}
         for i in range(6)]
CLIENTS = [{"name": "inet", "kind": "internet", "ip": "198.51.100.2"}]
PLAN = SimpleNamespace(nodes=[TopologyNode(**n) for n in NODES])


def cluster_records(extra_ms: float, direct_ms: float = 2.0) -> list[dict]:
    """Each of 6 nodes entered 12 times; pods on n0 and n1; served alternately by them."""
    out = []
    for i in range(72):
        entry, served = NODES[i % 6], NODES[(i // 6) % 2]
        ms = direct_ms if entry is served else extra_ms
        out.append({"outcome": "ok", "total_ms": ms + 0.01 * (i % 5), "node": served["name"],
                    "pod": f"app-{served['name']}", "client_ip_seen": entry["ip"],
                    "remote_ip": "203.0.113.1", "remote_port": 80})
    return out


def local_records() -> list[dict]:
    return [{"outcome": "ok", "total_ms": 2.0, "node": NODES[i % 2]["name"], "pod": f"app-n{i % 2}",
             "client_ip_seen": "198.51.100.2", "remote_ip": "203.0.113.2", "remote_port": 80}
            for i in range(40)]


def test_entered_without_pod_and_penalty_metrics():
    recs = cluster_records(extra_ms=3.0)
    assert entered_without_pod_ratio(recs, PLAN) == pytest.approx(4 / 6)
    assert extra_hop_penalty_ms(recs, PLAN) == pytest.approx(1.0, abs=0.05)
    assert entered_without_pod_ratio(local_records(), PLAN) == 0
    assert extra_hop_penalty_ms(local_records(), PLAN) != extra_hop_penalty_ms(local_records(), PLAN)  # nan


def results_with(flows: list[str], impair_before: str):
    steps = []
    for name in flows:
        if name == impair_before:
            steps.append({"step": "impair", "mechanism": "nfqueue", "classes": {"inter_node": {
                "config": "delay 1ms", "enforced_by": "nfqueue delay", "hosts": 6}}})
        steps.append({"step": "traffic", "flow": name, "from": "host/inet"})
    return results_from({"steps": steps, "impairments": {"mechanism": None, "classes": {}},
                         "topology": {"nodes": NODES, "clients": CLIENTS}, "flows": {}})


def test_study_rows_expectations_and_growth():
    records = {"c": cluster_records(3.0), "l": local_records(), "cd": cluster_records(7.0)}
    results = results_with(["c", "l", "cd"], impair_before="cd")
    flows = [render.flow_report(n, r, results) for n, r in records.items()]
    rows = {r["flow"]: r for r in hop_study.study_rows(flows, records, PLAN.nodes,
                                                              [TopologyClient(**c) for c in CLIENTS])}
    c = rows["c"]
    assert c["no_pod"] == pytest.approx(4 / 6) and c["expected_no_pod"] == pytest.approx(4 / 6)
    # entered a pod node (2/6) and served by the other pod half the time: 4/6 + 1/6
    assert c["extra"] == pytest.approx(5 / 6) and c["expected_extra"] == pytest.approx(5 / 6)
    assert not c["client_ip_kept"]
    loc = rows["l"]
    assert loc["client_ip_kept"] and loc["extra"] == 0 and loc["expected_extra"] == 0
    when = hop_study.impairment_timeline(results)
    assert when == {"c": "none", "l": "none", "cd": "inter_node delay 1ms"}
    [g] = hop_study.penalty_growth(list(rows.values()), when)
    assert (g["without"], g["with"]) == ("c", "cd") and g["growth"] == pytest.approx(4.0, abs=0.05)
    assert g["compare"]["significant"] and g["compare"]["median_diff_ms"] == pytest.approx(4.0, abs=0.05)
    text = "\n".join(hop_study.impairment_lines(results) + hop_study.study_lines(results, flows, records))
    assert "| step 3 | inter_node | delay 1ms | nfqueue delay | 6 |" in text
    assert "it grew by 4.00 ms" in text and "66.7% (66.7%)" in text and "83.3% (83.3%)" in text


def test_no_sections_without_outside_flows_or_impairments():
    results = results_from({"steps": [], "topology": {"nodes": NODES}})
    assert hop_study.impairment_lines(results) == [] and hop_study.study_lines(results, [], {}) == []
