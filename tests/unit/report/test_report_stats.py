"""Flow summaries and comparisons on synthetic records."""
import json

import numpy as np
import pytest
from rich.console import Console

from emulator.report.stats import compare, latency, read_records, summarize
from emulator.report.summary import render_summary_table, to_json

pytestmark = pytest.mark.unit


def rec(i, outcome="ok", total=1.0, connect=0.2, pod="p1", node="n1", client="10.0.0.9", t0=1000.0, gap=0.01):
    return {"seq": i, "t_start": t0 + i * gap, "connect_ms": connect if outcome == "ok" else None,
            "ttfb_ms": total * 0.9, "total_ms": total, "outcome": outcome, "status": 200 if outcome == "ok" else None,
            "pod": pod if outcome == "ok" else None, "node": node if outcome == "ok" else None,
            "client_ip_seen": client if outcome == "ok" else None}


def flow():
    recs = [rec(i, total=float(i + 1), pod=f"p{i % 3}", node="n1" if i % 3 else "n2") for i in range(97)]
    recs += [rec(97, "timeout", total=5000.0), rec(98, "refused", total=0.1), rec(99, "refused", total=0.1)]
    return recs


def test_summarize_counts_ratios_and_shares():
    s = summarize(flow())
    assert (s.count, s.ok) == (100, 97) and s.success_ratio == pytest.approx(0.97)
    assert s.outcomes["ok"] == 97 and s.outcomes["timeout"] == 1 and s.outcomes["refused"] == 2
    assert s.outcomes["reset"] == 0
    assert s.per_pod == {"p0": 33, "p1": 32, "p2": 32} and s.distinct_backends == 3
    assert s.per_node == {"n1": 64, "n2": 33}
    assert s.client_ips == {"10.0.0.9": 97}


def test_latency_percentiles_over_ok_only():
    s = summarize(flow())
    values = np.arange(1, 98, dtype=float)
    assert s.total_ms.n == 97 and s.total_ms.max == 97.0
    assert s.total_ms.p50 == pytest.approx(np.percentile(values, 50))
    assert s.total_ms.p99 == pytest.approx(np.percentile(values, 99))
    assert s.connect_ms.p90 == pytest.approx(0.2)


def test_throughput_over_wall_time():
    # 97 ok, starts 10 ms apart from t=1000; the timeout (seq 97) ends last at 1000.97 + 5 s
    s = summarize(flow())
    assert s.wall_s == pytest.approx(0.97 + 5.0)
    assert s.throughput_rps == pytest.approx(97 / 5.97)


def test_empty_and_all_failed():
    s = summarize([])
    assert s.count == 0 and s.success_ratio is None and s.total_ms is None and s.throughput_rps is None
    s = summarize([rec(0, "refused"), rec(1, "refused")])
    assert s.success_ratio == 0.0 and s.total_ms is None and s.distinct_backends == 0
    assert latency([None, None]) is None


def test_to_json_and_read_records(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in flow()) + "\n\n")
    s = summarize(read_records(path))
    d = to_json(s)
    json.dumps(d, allow_nan=False)
    assert d["count"] == 100 and d["total_ms"]["max"] == 97.0 and d["per_pod"]["p0"] == 33
    assert to_json(summarize([]))["total_ms"] is None


def test_render_table():
    table = render_summary_table({"via-cluster": summarize(flow()), "empty": summarize([])})
    console = Console(record=True, width=200)
    console.print(table)
    text = console.export_text()
    assert "via-cluster" in text and "97.0%" in text and "refused 2, timeout 1" in text and "n1 66%" in text


def test_compare_detects_a_shift_and_says_so():
    rng = np.random.default_rng(1)
    a = rng.normal(1.0, 0.05, 500)
    b = a + 0.4
    c = compare(a, b, "direct", "extra-hop")
    assert c["significant"] and c["p_value"] < 0.001 and c["prob_superiority"] > 0.99
    assert c["median_diff_ms"] == pytest.approx(0.4, abs=0.02) and c["effect"] == "large"
    assert c["sentence"].startswith("extra-hop is slower than direct by 0.40 ms at the median (p < 0.001, strong evidence")
    c = compare(b, a, "extra-hop", "direct")
    assert "direct is faster than extra-hop by 0.40 ms" in c["sentence"] and c["prob_superiority"] < 0.01


def test_compare_no_difference_and_too_few():
    rng = np.random.default_rng(2)
    c = compare(rng.normal(1, 0.1, 300), rng.normal(1, 0.1, 300))
    assert not c["significant"] and c["sentence"].startswith("No clear difference between B and A")
    assert 0.4 < c["prob_superiority"] < 0.6
    c = compare([1.0], [2.0, 3.0])
    assert c["p_value"] is None and "Too few" in c["sentence"]
    c = compare([1.0] * 5, [1.0] * 5)
    assert c["p_value"] == 1.0 and c["prob_superiority"] == 0.5
