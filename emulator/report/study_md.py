"""report.md sections of the study steps: interleaved comparisons and sweeps.

Pure: results.json, the flow records and the nodes in, markdown lines out. Every figure
is recomputed from the records with the seeds the steps used, so `kubemu report` gives
the same intervals as the run.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

from emulator.records.results import Results, TopologyNode
from emulator.report import study
from emulator.report.markdown import table

Records = Mapping[str, Sequence[Mapping[str, Any]]]


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ci(e: Mapping[str, Any]) -> str:
    return f"{_f(e['value'])} [{_f(e['ci_low'])}, {_f(e['ci_high'])}]"


def compares(results: Results) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any] | None]]:
    """(compare record, enclosing sweep point or None) of every compare of the run."""
    for s in results.steps:
        if s.step == "compare":
            yield s.fields, None
        elif s.step == "sweep":
            for p in s.fields.get("points") or []:
                for c in p.get("compares") or []:
                    yield c, p


def study_flow_names(results: Results) -> set[str]:
    """Names of the flows that compare steps (also inside sweeps) made."""
    return {a["flow"] for c, _ in compares(results) for a in (c.get("arms") or {}).values()}


def sweep_flow_names(results: Results) -> set[str]:
    """Names of the flows made inside sweeps."""
    return {a["flow"] for c, p in compares(results) if p is not None for a in (c.get("arms") or {}).values()}


def _seed(c: Mapping[str, Any]) -> Any:
    """The scenario seed a compare ran with (the report reuses it for its bootstrap)."""
    return (c.get("design") or {}).get("seed", 0)


def design_sentence(c: Mapping[str, Any]) -> str:
    """How a compare was run, in one sentence."""
    d = c.get("design") or {}
    unit = ("request by request" if d.get("interleave") == "request"
            else f"in blocks of {d.get('block')} requests")
    arms = ", ".join(f"*{a}* ({v.get('url')}" + (f", with {v['impair']}" if v.get("impair") else "") + ")"
                     for a, v in (c.get("arms") or {}).items())
    return (f"Arms {arms} from {c.get('from')}, interleaved {unit} in an order drawn at random for each trial "
            f"(scenario seed {d.get('seed')}; order seeds `{'`, `'.join(d.get('order_seeds') or [])}`): "
            f"{d.get('trials')} trials of {d.get('requests_per_arm')} requests per arm, concurrency "
            f"{d.get('concurrency')}, a new connection per request; link impairments in force: "
            f"{c.get('impairments', 'none')}.")


def compare_analysis(c: Mapping[str, Any], records: Records, nodes: Sequence[TopologyNode]) -> dict:
    """Per arm: p50 and extra-hop penalty with intervals; each later arm against the first."""
    seed = _seed(c)
    arms = {a: v["flow"] for a, v in (c.get("arms") or {}).items() if v["flow"] in records}
    out: dict[str, Any] = {"arms": {}, "diffs": []}
    for a, flow in arms.items():
        recs = records[flow]
        out["arms"][a] = {"flow": flow, "n": len(recs),
                          "success": sum(r.get("outcome") == "ok" for r in recs) / len(recs) if recs else None,
                          "p50": study.estimate(recs, nodes, "p50_ms", f"{seed}:{flow}:p50"),
                          "penalty": study.estimate(recs, nodes, "extra_hop_penalty_ms", f"{seed}:{flow}")}
    names = list(arms)
    for b in names[1:]:
        out["diffs"].append(study.arm_difference(records[arms[names[0]]], records[arms[b]],
                                                 f"{seed}:{c.get('name')}:{b}", names[0], b))
    return out


def compare_lines(c: Mapping[str, Any], records: Records, nodes: Sequence[TopologyNode]) -> list[str]:
    """A compare's design, its per-arm table and the differences between arms."""
    an = compare_analysis(c, records, nodes)
    out = [f"### Compare {c.get('name')}", "", design_sentence(c), ""]
    rows = []
    for a, v in an["arms"].items():
        pen = v["penalty"]
        rows.append((a, v["flow"], v["n"], "-" if v["success"] is None else f"{100 * v['success']:.1f}%",
                     " / ".join(_f(x) for x in v["p50"]["per_trial"]), _ci(v["p50"]),
                     " / ".join(_f(x) for x in pen["per_trial"]), _ci(pen)))
    out += table(["arm", "flow", "requests", "success", "p50 ms per trial", "p50 ms [95% CI]",
                   "extra-hop penalty ms per trial", "penalty ms [95% CI]"], rows, right=(2, 3))
    out.append("")
    for d in an["diffs"]:
        out += [f"*{d['b']}* − *{d['a']}*: median difference {_f(d['diff_ms'])} ms "
                f"[{_f(d['ci_low'])}, {_f(d['ci_high'])}] (per trial: "
                f"{' / '.join(_f(x) for x in d['per_trial'])}); Cliff's delta {_f(d['cliffs_delta'])} "
                f"({d['delta_words']}). {d['sentence']}", ""]
    return out


def sweep_analysis(s: Mapping[str, Any], records: Records, nodes: Sequence[TopologyNode]) -> dict[str, Any]:
    """Per point the slope flow's metric with interval, the fit, and the calibration figures."""
    sl = s.get("slope") or {}
    flow, metric = sl.get("flow"), sl.get("metric", "extra_hop_penalty_ms")
    pts, cal = [], None
    seed = next((c.get("design", {}).get("seed", 0) for p in s.get("points") or [] for c in p.get("compares")), 0)
    for p in s.get("points") or []:
        name = f"{flow}{p['suffix']}"
        if flow is None or name not in records:
            continue
        e = study.estimate(records[name], nodes, metric, f"{seed}:{s.get('name')}:{p['suffix']}")
        row = {"label": p["label"], "x": p["shown"], "flow": name, "in_force": p.get("in_force"), "est": e}
        if p["suffix"] == "-cal":
            cal = row
        else:
            pts.append(row)
    fit = study.slope_fit([r["x"] for r in pts], [r["est"] for r in pts], sl.get("expected")) if pts else None
    zero = next((r for r in pts if r["x"] == 0), None)
    delayed = [r for r in pts if r["x"] > 0]
    fit2 = study.slope_fit([r["x"] for r in delayed], [r["est"] for r in delayed], sl.get("expected")) \
        if zero is not None and len(delayed) >= 2 else None
    return {"flow": flow, "metric": metric, "points": pts, "calibration": cal, "zero": zero, "fit": fit,
            "fit_delayed": fit2,
            "unit": s.get("unit"), "parameter": s.get("parameter")}


def sweep_lines(s: Mapping[str, Any], records: Records, nodes: Sequence[TopologyNode]) -> list[str]:
    """A sweep's points, the delay path's own latency, the fitted slope and its checks."""
    an = sweep_analysis(s, records, nodes)
    unit = an["unit"]
    out = [f"### Sweep {s.get('name')}: {an['parameter']}", ""]
    if an["flow"] is None:
        return out + ["No slope asked for: see the flows of each point above.", ""]
    out += [f"{an['metric']} of {an['flow']} at each value (flows `{an['flow']}-v<i>`), with its interval "
            f"({study.INTERVAL_TEXT}).", ""]
    rows = [(r["label"], r["in_force"], r["flow"], " / ".join(_f(x) for x in r["est"]["per_trial"]),
             _ci(r["est"]), f"{r['est']['n_a']} / {r['est']['n_b']}")
            for r in ([an["calibration"]] if an["calibration"] else []) + an["points"]]
    out += table(["value", "in force", "flow", "per trial", "estimate [95% CI]", "n direct / extra"], rows,
                  right=(3, 4, 5)) + [""]
    cal, zero = an["calibration"], an["zero"]
    if cal and zero:
        d = cal["est"]["value"] - zero["est"]["value"]
        out += [f"**Delay mechanism's own latency.** The same path with a 1 µs one-way delay ({cal['in_force']}, "
                f"the delay queue in the path but no delay to speak of) against no impairment: the penalty is "
                f"{_f(cal['est']['value'])} ms against {_f(zero['est']['value'])} ms, {_f(d)} ms more, over the "
                f"4 crossings of an extra-hop request: about {_f(d / 4, 3)} ms per crossing. Every point with a "
                f"delay carries it; nothing is subtracted from the figures here.", ""]
    fit = an["fit"]
    if fit:
        exp = fit.get("expected")
        verdict = "" if exp is None else (
            f" The expected slope {exp:g} is {'inside' if fit['ci_contains_expected'] else 'outside'} the interval.")
        out += [f"**Fitted slope**: {_f(fit['slope'])} ms per {unit} [95% CI {_f(fit['ci_low'])}, "
                f"{_f(fit['ci_high'])}], intercept {_f(fit['intercept'])} ms (least squares over the "
                f"{len(an['points'])} values; interval from the points' bootstrap draws).{verdict}", ""]
    out += [f"Plot: plots/sweep-{s.get('name')}.png; values: plots/sweep-{s.get('name')}.csv.", ""]
    f2, zero = an["fit_delayed"], an["zero"]
    if f2 and zero:
        off = f2["intercept"] - zero["est"]["value"]
        out += [f"Over the {len(an['points']) - 1} values with a delay alone (one mechanism for all): slope "
                f"{_f(f2['slope'])} [{_f(f2['ci_low'])}, {_f(f2['ci_high'])}], intercept {_f(f2['intercept'])} ms: "
                f"{_f(off)} ms above the undelayed penalty: about {_f(off / 4)} ms per crossing that the delay "
                f"path adds once it holds packets for a real delay, on top of the model's 4D"
                + (" (the 1 µs calibration above holds them too briefly to show it)." if an["calibration"] else ".")
                + " Nothing is subtracted.", ""]
    for c in s.get("checks") or []:
        act = c["actual"] if isinstance(c["actual"], list) else [_f(c["actual"])]
        out.append(f"- {c['metric']} {c['expected']}: {', '.join(map(str, act))}: "
                   f"{'PASS' if c['ok'] else '**FAIL**'}")
    return out + [""]


def section(results: Results, records: Records, plots: Mapping[str, str] | None = None) -> list[str]:
    """'## Study': each top-level compare, then each sweep."""
    nodes = results.nodes
    if not any(s.step in ("compare", "sweep") for s in results.steps):
        return []
    out = ["## Study", "",
           "Arms of a comparison are sent in alternation from the same source so that drift of the machine "
           "hits them alike. *p50*: median total time of successful requests; *extra-hop penalty*: median "
           "of the extra-hop requests − median of the direct ones, within the arm. Intervals: "
           f"{study.INTERVAL_TEXT}. Cliff's delta: P(B slower) − P(B faster) over all request pairs.", ""]
    for s in results.steps:
        if s.step == "compare":
            out += compare_lines(s.fields, records, nodes)
        elif s.step == "sweep":
            out += sweep_lines(s.fields, records, nodes)
    return out
