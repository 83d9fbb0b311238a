"""Analysis of study flows: per-trial estimates with bootstrap intervals, arm differences, slopes.

Pure: per-request records (with their `trial` field, 1 when absent) and the run's nodes
in, plain dicts out. Used by the `compare`/`sweep` steps (for assertions) and by the
report (which recomputes everything from the stored records).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

from emulator.report import design, stats
from emulator.report.hops import took_extra_hop

Records = Sequence[Mapping[str, Any]]
INTERVAL_TEXT = ("95% percentile bootstrap in two stages: trials drawn with replacement, then the "
                 f"requests of each drawn trial; {design.BOOTSTRAP_SAMPLES} resamples, seeded")


def by_trial(records: Records) -> dict[int, list[Mapping[str, Any]]]:
    """Records grouped by their `trial` field, in trial order."""
    out: dict[int, list] = {}
    for r in records:
        out.setdefault(int(r.get("trial") or 1), []).append(r)
    return dict(sorted(out.items()))


def _ok_ms(records: Records) -> list[float]:
    return [r["total_ms"] for r in records if r.get("outcome") == "ok" and r.get("total_ms") is not None]


def groups(records: Records, nodes: Sequence[Mapping[str, Any]], metric: str) -> list[tuple[list, list]]:
    """Per trial, the (a, b) value groups whose median difference is `metric`:
    (direct, extra-hop) latencies for the penalty, ([0], latencies) for p50."""
    plan = SimpleNamespace(nodes=list(nodes))
    out = []
    for recs in by_trial(records).values():
        ok = [r for r in recs if r.get("outcome") == "ok" and r.get("total_ms") is not None]
        if metric == "p50_ms":
            out.append(([0.0], [r["total_ms"] for r in ok]))
            continue
        flags = [took_extra_hop(dict(r), plan) for r in ok]
        out.append(([r["total_ms"] for r, f in zip(ok, flags) if f is False],
                    [r["total_ms"] for r, f in zip(ok, flags) if f is True]))
    return out


def estimate(records: Records, nodes: Sequence[Mapping[str, Any]], metric: str, seed: str) -> dict[str, Any]:
    """The metric over all trials with its interval, and per trial."""
    g = groups(records, nodes, metric)
    draws = design.bootstrap(g, seed)
    lo, hi = design.interval(draws)
    return {"metric": metric, "value": design.median_diff(g), "ci_low": lo, "ci_high": hi,
            "per_trial": [design.median_diff([t]) for t in g], "trials": len(g),
            "n_a": sum(len(a) for a, _ in g), "n_b": sum(len(b) for _, b in g), "draws": draws}


def arm_difference(a: Records, b: Records, seed: str, a_name: str = "A", b_name: str = "B") -> dict[str, Any]:
    """B against A: median difference with interval (paired by trial), Mann-Whitney, Cliff's delta."""
    ta, tb = by_trial(a), by_trial(b)
    g = [(_ok_ms(ta[k]), _ok_ms(tb[k])) for k in ta if k in tb]
    lo, hi = design.interval(design.bootstrap(g, seed))
    pa, pb = _ok_ms(a), _ok_ms(b)
    cmp = stats.compare(pa, pb, a_name, b_name)
    d = design.cliffs_delta(pa, pb)
    return {"a": a_name, "b": b_name, "diff_ms": design.median_diff(g), "ci_low": lo, "ci_high": hi,
            "per_trial": [design.median_diff([t]) for t in g], "p_value": cmp["p_value"],
            "cliffs_delta": d, "delta_words": design.delta_words(d) if not np.isnan(d) else "-",
            "sentence": cmp["sentence"]}


def slope_fit(x: Sequence[float], estimates: Sequence[Mapping[str, Any]], expected: float | None = None
              ) -> dict[str, Any]:
    """Least-squares slope of the point estimates against x; its interval from the points' bootstrap draws."""
    y = [e["value"] for e in estimates]
    s, c = design.slope(x, y)
    draws = np.vstack([e["draws"] for e in estimates]).T if estimates else np.zeros((0, 0))
    lo, hi = design.interval(design.slopes(x, draws)) if draws.size else (float("nan"), float("nan"))
    return {"slope": s, "intercept": c, "ci_low": lo, "ci_high": hi, "expected": expected,
            "ci_contains_expected": None if expected is None or np.isnan(lo) else bool(lo <= expected <= hi)}


def public(d: Mapping[str, Any]) -> dict[str, Any]:
    """A result dict without its bootstrap draws (for results.json)."""
    return {k: v for k, v in d.items() if k != "draws"}
