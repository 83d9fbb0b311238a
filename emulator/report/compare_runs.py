"""`kubemu compare RUN_A RUN_B`: two runs' flows side by side, matched by flow name.

Pure over the two loaded runs (`render.load_run`): per flow present in both, the request
counts, success, p50/p90/p99 of each run, the median difference B - A with a Mann-Whitney
p-value and Cliff's delta over the successful requests' total times.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from emulator.report import design, stats


def _ok_ms(records: Sequence[Mapping[str, Any]]) -> list[float]:
    return [r["total_ms"] for r in records if r.get("outcome") == "ok" and r.get("total_ms") is not None]


def compare_runs(a: Mapping[str, Sequence[Mapping[str, Any]]], b: Mapping[str, Sequence[Mapping[str, Any]]]
                 ) -> dict[str, Any]:
    """{rows: one dict per flow in both runs, only_a, only_b} from the two runs' records by flow."""
    rows = []
    for name in [n for n in a if n in b]:
        sa, sb = stats.summarize(a[name]), stats.summarize(b[name])
        ma, mb = _ok_ms(a[name]), _ok_ms(b[name])
        cmp = stats.compare(ma, mb, "A", "B")
        rows.append({"flow": name, "n_a": sa.count, "n_b": sb.count,
                     "success_a": sa.success_ratio, "success_b": sb.success_ratio,
                     **{f"{q}_{side}": getattr(s.total_ms, q) if s.total_ms else None
                        for q in ("p50", "p90", "p99") for side, s in (("a", sa), ("b", sb))},
                     "diff_ms": cmp["median_diff_ms"], "p_value": cmp["p_value"],
                     "cliffs_delta": design.cliffs_delta(ma, mb) if ma and mb else None})
    return {"rows": rows, "only_a": [n for n in a if n not in b], "only_b": [n for n in b if n not in a]}


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None or x != x else format(x, fmt)


def table_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """Text cells of each row: flow, n, success, p50/p90/p99 A → B, B − A, p, delta."""
    out = []
    for r in result["rows"]:
        pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        out.append([r["flow"], f"{r['n_a']} / {r['n_b']}", f"{pct(r['success_a'])} / {pct(r['success_b'])}",
                    *(f"{_f(r[q + '_a'])} → {_f(r[q + '_b'])}" for q in ("p50", "p90", "p99")),
                    _f(r["diff_ms"], "+.2f"),
                    "-" if r["p_value"] is None else ("< 0.001" if r["p_value"] < 0.001 else f"{r['p_value']:.3f}"),
                    _f(r["cliffs_delta"], "+.2f") + ("" if r["cliffs_delta"] is None
                                                    else f" ({design.delta_words(r['cliffs_delta'])})")])
    return out


HEADER = ["flow", "requests A / B", "success A / B", "p50 ms A → B", "p90 ms A → B", "p99 ms A → B",
          "median B − A ms", "Mann-Whitney p", "Cliff's delta"]
