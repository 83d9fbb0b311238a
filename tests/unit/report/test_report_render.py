"""report.md and plots from a synthetic run directory (results.json + flows/*.jsonl)."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from emulator.errors import KubemuError
from emulator.report import plots, render

pytestmark = pytest.mark.unit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NODES = [{"name": "n-a", "zone": "z-a", "ip": "10.128.0.2", "pod_cidr": "10.4.0.0/24"},
         {"name": "n-b", "zone": "z-b", "ip": "10.128.0.3", "pod_cidr": "10.4.1.0/24"},
         {"name": "n-c", "zone": "z-c", "ip": "10.128.0.4", "pod_cidr": "10.4.2.0/24"}]
T0 = 1_800_000_000.0


def rec(i, outcome="ok", total=1.0, node="n-a", pod="p-a", client="10.128.0.2", t=None):
    ok = outcome == "ok"
    return {"seq": i, "t_start": T0 + 10 + i * 0.01 if t is None else t, "dns_ms": None,
            "connect_ms": 0.3 if ok else None, "ttfb_ms": total * 0.9 if ok else None, "total_ms": total,
            "outcome": outcome, "status": 200 if ok else None, "pod": pod if ok else None,
            "node": node if ok else None, "client_ip_seen": client if ok else None, "remote_ip": "203.0.113.2"}


def lb_records():
    """100 requests through a Cluster-policy load balancer: 95 ok, 5 timeouts.

    Request i entered node i % 3 (the pod saw that node's IP, or its cbr0 gateway for
    every 7th) and was served by node i % 2.
    """
    out = []
    for i in range(95):
        into, served = NODES[i % 3], NODES[i % 2]
        client = into["ip"] if i % 7 else into["pod_cidr"].replace("0/24", "1")
        out.append(rec(i, total=1.0 + 0.1 * i, node=served["name"], pod=f"p-{served['name'][-1]}", client=client))
    out += [rec(95 + k, "timeout", total=500.0) for k in range(5)]
    return out


def expected_extra():
    return sum(1 for i in range(95) if i % 3 != i % 2)


def local_records():
    """Client IP preserved (externalTrafficPolicy Local): entered where served."""
    return [rec(i, total=2.0, node=NODES[i % 2]["name"], pod="p", client="198.51.100.2",
                t=T0 + 12 + i * 0.01) for i in range(40)]


def pod_records():
    """From a pod on n-c: the client IP seen is the pod's own address."""
    return [rec(i, total=3.0, node="n-a", client="10.4.2.7", t=T0 + 13 + i * 0.01) for i in range(20)]


def write_run(tmp_path, flows=None, results_extra=None):
    flows = flows if flows is not None else {"lb-cluster": lb_records(), "lb-local": local_records(),
                                             "in-cluster": pod_records()}
    sources = {"lb-cluster": "host/inet-1", "lb-local": "host/inet-1", "in-cluster": "pod/default/client"}
    run = tmp_path / "20260101-000000-synthetic-ab12"
    (run / "flows").mkdir(parents=True)
    steps = []
    for name, recs in flows.items():
        steps.append({"step": "traffic", "flow": name, "from": sources.get(name, "host/inet-1"),
                      "seconds": 1.0, "requests": len(recs)})
        (run / "flows" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    steps.append({"step": "assert", "flow": "lb-cluster", "ok": False, "checks": [
        {"metric": "success_ratio", "expected": ">= 0.99", "actual": 0.95, "ok": False},
        {"metric": "entered_nodes", "expected": ["n-a", "n-b", "n-c"], "actual": ["n-a", "n-b", "n-c"], "ok": True}]})
    results = {"schema_version": 1, "scenario": "synthetic", "scenario_file": "scenarios/synthetic.yaml",
               "run_id": "ab12", "run_dir": str(run), "started": T0, "steps": steps,
               "flows": {n: {} for n in flows}, "ok": False,
               "topology": {"nodes": NODES, "clients": [{"name": "inet-1", "kind": "internet", "ip": "198.51.100.2"}],
                            "fabric": {}},
               "timeline": {"ray": 3.5, "fabric": 6.25, "nodes": 8.0, "first_ready": 9.125},
               "iptables_backend": "legacy", "seconds": 21.5}
    results.update(results_extra or {})
    (run / "results.json").write_text(json.dumps(results, indent=2))
    return run


def table_row(md, flow):
    return next(line for line in md.splitlines() if line.startswith(f"| {flow} |"))


def test_report_numbers_come_from_the_records(tmp_path):
    run = write_run(tmp_path)
    paths = render.write_report(run)
    md = (run / "report.md").read_text()
    assert paths.markdown == str(run / "report.md")
    ok_totals = [r["total_ms"] for r in lb_records() if r["outcome"] == "ok"]
    p50, p90, p99 = np.percentile(ok_totals, [50, 90, 99])
    row = table_row(md, "lb-cluster")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == ["lb-cluster", "host/inet-1", "100", "95.0%", "timeout 5"]
    assert cells[5:9] == [f"{p50:.2f}", f"{p90:.2f}", f"{p99:.2f}", f"{max(ok_totals):.2f}"]
    extra = expected_extra()
    assert cells[10] == f"{100 * extra / 95:.1f}% ({extra}/95)"
    assert f"| extra hop (entered ≠ serving node) | {extra} of 95 ({100 * extra / 95:.1f}%) |" in md
    # every node entered a third of the time (node IPs and cbr0 gateways alike)
    assert "| entered node | n-a 32 (33.7%), n-b 32 (33.7%), n-c 31 (32.6%) |" in md
    assert "| served by node | n-a 48 (50.5%), n-b 47 (49.5%) |" in md
    assert "10.4.0.1" in md and "10.128.0.2" in md       # client IPs seen
    assert "Extra-hop against direct requests" in md


def test_local_policy_and_in_cluster_traffic(tmp_path):
    md = render.render_markdown(render.load_run(write_run(tmp_path)))
    local = [c.strip() for c in table_row(md, "lb-local").strip("|").split("|")]
    assert local[3] == "100.0%" and local[5] == "2.00" and local[10] == "0.0% (0/40)"
    assert "| client IPs seen by the pod | 198.51.100.2 40 (100.0%) |" in md
    inside = [c.strip() for c in table_row(md, "in-cluster").strip("|").split("|")]
    assert inside[1] == "pod/default/client" and inside[10] == "n/a"
    assert "n/a: the traffic starts inside the cluster" in md


def test_report_has_topology_assertions_and_timeline(tmp_path):
    md = render.render_markdown(render.load_run(write_run(tmp_path)))
    assert "# kubemu run ab12: scenario synthetic" in md and "| Result | FAILED |" in md
    assert "| n-b | z-b | 10.128.0.3 | 10.4.1.0/24 |" in md
    assert "| inet-1 | internet | 198.51.100.2 |" in md
    assert "| lb-cluster | success_ratio | >= 0.99 | 0.95 | **FAIL** |" in md
    assert "| lb-cluster | entered_nodes | = n-a, n-b, n-c | n-a, n-b, n-c | PASS |" in md
    assert "1 of 2 checks passed." in md
    assert "| fabric | 6.250 | 2.750 |" in md and "| first_ready | 9.125 | 1.125 |" in md


def test_plots_are_valid_pngs_and_results_json_is_untouched(tmp_path):
    run = write_run(tmp_path)
    before = (run / "results.json").read_bytes()
    paths = render.write_report(run)
    assert set(paths.plots) == {"Latency CDF per flow", "Traffic share per serving node", "Timeline"}
    for path in paths.plots.values():
        data = Path(path).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1024, path
    assert (run / "results.json").read_bytes() == before
    md = (run / "report.md").read_text()
    assert "![Timeline](plots/timeline.png)" in md


def test_binned_rate_and_success():
    recs = [rec(i, t=T0 + 1.0 + 0.02 * i) for i in range(10)] + [rec(10, "refused", t=T0 + 1.25)]
    edges, started, oks = plots.binned(recs, T0, 0.1)
    assert list(started) == [5, 5, 1] and list(oks) == [5, 5, 0]
    assert edges[0] == pytest.approx(1.0) and edges[-1] == pytest.approx(1.3)


def test_a_run_without_records_or_successes_still_reports(tmp_path):
    run = write_run(tmp_path, flows={"denied": [rec(i, "timeout", total=500.0) for i in range(3)]})
    paths = render.write_report(run)
    md = (run / "report.md").read_text()
    assert "| denied | host/inet-1 | 3 | 0.0% | timeout 3 | - | - | - | - |" in md
    assert all(Path(p).read_bytes()[:8] == PNG_MAGIC for p in paths.plots.values())


def test_not_a_run_directory(tmp_path):
    with pytest.raises(KubemuError, match="no results.json"):
        render.load_run(tmp_path)


def test_report_after_run_never_raises(tmp_path, monkeypatch):
    run = write_run(tmp_path)

    def broken(*_a, **_k):
        raise RuntimeError("no fonts today")
    monkeypatch.setattr(plots, "figures", broken)
    said = []
    assert render.report_after_run(str(run), said.append) is None
    assert "report not written: no fonts today" in said[0] and "kubemu report" in said[0]
    assert "RuntimeError" in (run / "report-error.txt").read_text()


def test_report_after_run_prints_the_path(tmp_path):
    run = write_run(tmp_path)
    said = []
    assert render.report_after_run(str(run), said.append) is not None
    assert said == [f"report: {run / 'report.md'} (plots in {run / 'plots'})"]


def test_cli_report_command(tmp_path):
    from emulator.cli import main
    run = write_run(tmp_path)
    res = CliRunner().invoke(main, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert f"report: {run / 'report.md'}" in res.output and (run / "plots" / "latency-cdf.png").exists()
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code != 0


def test_the_node_share_plot_of_a_large_cluster_keeps_room_for_its_legend(tmp_path):
    """70 serving nodes under two flows: the legend gets its own height, so matplotlib lays the
    figure out without warning that the axes collapsed (a warning a user saw at 99 nodes)."""
    import warnings
    recs = {f: [{"outcome": "ok", "node": f"n{i % 70}"} for i in range(800)] for f in ("a", "b")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.save(plots.node_shares(recs, [f"n{i}" for i in range(99)], None, "t"), str(tmp_path / "ns.png"))
    assert (tmp_path / "ns.png").read_bytes()[:8] == PNG_MAGIC
