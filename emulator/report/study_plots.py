"""Plots and CSV of the study steps: a sweep's metric against its parameter, a compare's trials.

Figures are pure over the loaded run (matplotlib object API, Agg canvas as plots.py);
`write_csvs` is the one writer.
"""
from __future__ import annotations

import csv
import math
import os
from typing import Any, Iterator, Mapping

import numpy as np
from matplotlib.figure import Figure

from emulator.report import study_md
from emulator.report import palette
from emulator.report.palette import DPI



def sweep_figure(s: Mapping[str, Any], an: Mapping[str, Any], records: Mapping[str, Any]) -> Figure:
    """The metric at each value with its 95% interval, per-trial values, the fit and the expected line."""
    fig = Figure(figsize=(9, 5.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    pts, fit, cal = an["points"], an["fit"], an["calibration"]
    x = np.asarray([p["x"] for p in pts], dtype=float)
    y = np.asarray([p["est"]["value"] for p in pts], dtype=float)
    lo = np.asarray([p["est"]["ci_low"] for p in pts], dtype=float)
    hi = np.asarray([p["est"]["ci_high"] for p in pts], dtype=float)
    span = (x.max() - x.min()) if x.size else 1.0
    for p in pts:
        trials = p["est"]["per_trial"]
        jitter = np.linspace(-0.012, 0.012, len(trials)) * span if len(trials) > 1 else [0.0]
        ax.plot(p["x"] + np.asarray(jitter), trials, "o", color="#9ecae1", ms=4, zorder=2,
                label="per trial" if p is pts[0] else None)
    ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o", color="#08519c", ms=7, capsize=5, lw=1.6, zorder=3,
                label="all trials, 95% bootstrap CI")
    xs = np.linspace(x.min(), x.max(), 50) if x.size else np.zeros(0)
    if fit and not math.isnan(fit["slope"]):
        ax.plot(xs, fit["intercept"] + fit["slope"] * xs, color="#08519c", lw=1.2,
                label=f"fit: {fit['slope']:.2f} [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}] ms per {an['unit']}")
        if fit.get("expected") is not None:
            y0 = y[np.argmin(x)]
            ax.plot(xs, y0 + fit["expected"] * (xs - x.min()), color="#e6550d", lw=1.4, ls="--",
                    label=f"expected: {fit['expected']:g} ms per {an['unit']} from the first point")
    delayed = [p for p in pts if p["x"] > 0]
    if len(delayed) >= 2 and len(delayed) < len(pts):
        f2 = an["fit_delayed"]
        xd = np.linspace(min(p["x"] for p in delayed), x.max(), 20)
        ax.plot(xd, f2["intercept"] + f2["slope"] * xd, color="#3182bd", lw=1.0, ls=":",
                label=f"fit over the delayed points: {f2['slope']:.2f} [{f2['ci_low']:.2f}, {f2['ci_high']:.2f}]")
    if cal:
        e = cal["est"]
        ax.errorbar([-0.04 * span], [e["value"]], yerr=[[e["value"] - e["ci_low"]], [e["ci_high"] - e["value"]]],
                    fmt="D", color="#756bb1", ms=6, capsize=4, zorder=3,
                    label=f"delay path with ~0 delay (calibration): {e['value']:.2f} ms")
    ax.set_xlabel(f"{an['parameter']} ({an['unit']})")
    ax.set_ylabel(f"{an['metric']} of {an['flow']}")
    ax.set_title(f"Sweep {s.get('name')}: {an['metric']} against {an['parameter']}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return fig


def _trials_and_all(ax, e: Mapping[str, Any], color, label: str, k: int = 0) -> None:
    """Per-trial values joined by a line, and the all-trials estimate with its interval at the right
    (series `k` shifted a little so that intervals do not hide each other)."""
    t = np.arange(1, len(e["per_trial"]) + 1)
    ax.plot(t, e["per_trial"], "o-", color=color, lw=1.2, ms=5,
            label=f"{label}: {e['value']:.2f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}] ms")
    if not math.isnan(e["ci_low"]):
        ax.errorbar([t[-1] + 1 + 0.12 * k], [e["value"]], yerr=[[e["value"] - e["ci_low"]], [e["ci_high"] - e["value"]]],
                    fmt="s", color=color, ms=6, capsize=5)
    ax.set_xticks(list(t) + [t[-1] + 1], [str(k) for k in t] + ["all\n(95% CI)"])


def compare_figure(c: Mapping[str, Any], an: Mapping[str, Any]) -> Figure:
    """Left: each arm's median per trial (drift moves the arms together); right: the extra-hop
    penalty of the arms that have one and each arm's difference to the first, per trial and overall."""
    fig = Figure(figsize=(11, 4.8), dpi=DPI, layout="constrained")
    ax_p50, ax_diff = fig.subplots(1, 2)
    arms = an["arms"]
    colors = palette.colors(len(arms) + len(an["diffs"]) + 1)
    right = 0
    for i, ((a, v), color) in enumerate(zip(arms.items(), colors)):
        _trials_and_all(ax_p50, v["p50"], color, a, i)
        if not math.isnan(v["penalty"]["value"]):
            _trials_and_all(ax_diff, v["penalty"], color, f"{a}: extra-hop penalty", right)
            right += 1
    for d, color in zip(an["diffs"], colors[len(arms):]):
        e = {"value": d["diff_ms"], "ci_low": d["ci_low"], "ci_high": d["ci_high"], "per_trial": d["per_trial"]}
        _trials_and_all(ax_diff, e, color, f"{d['b']} − {d['a']} (median)", right)
        right += 1
    ax_diff.axhline(0, color="grey", lw=0.8)
    for ax, what in ((ax_p50, "median latency per arm (ms)"), (ax_diff, "difference (ms)")):
        ax.set_xlabel("trial")
        ax.set_ylabel(what)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, frameon=False, loc="best")
    fig.suptitle(f"Compare {c.get('name')}: interleaved arms per trial and over all trials")
    return fig


def figures(run) -> Iterator[tuple[str, str, Figure]]:
    """(title, file name, figure) of each top-level compare and each sweep with a slope."""
    r, nodes = run.results, run.nodes
    for step in r.steps:
        s = step.fields
        if step.step == "compare" and all(a["flow"] in run.records for a in s["arms"].values()):
            an = study_md.compare_analysis(s, run.records, nodes)
            yield (f"Compare {s['name']}", f"compare-{s['name']}.png", compare_figure(s, an))
        elif step.step == "sweep" and s.get("slope"):
            an = study_md.sweep_analysis(s, run.records, nodes)
            if an["points"]:
                yield (f"Sweep {s['name']}", f"sweep-{s['name']}.png", sweep_figure(s, an, run.records))


def write_csvs(run, out_dir: str) -> list[str]:
    """sweep-NAME.csv per sweep with a slope: one row per value (and the calibration point)."""
    paths = []
    for s in (st.fields for st in run.results.steps_of("sweep")):
        if not s.get("slope"):
            continue
        an = study_md.sweep_analysis(s, run.records, run.nodes)
        path = os.path.join(out_dir, f"sweep-{s['name']}.csv")
        rows = ([an["calibration"]] if an["calibration"] else []) + an["points"]
        trials = max((len(p["est"]["per_trial"]) for p in rows), default=0)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["parameter", "value", "unit", "label", "flow", "metric", "estimate", "ci_low", "ci_high",
                        "n_a", "n_b"] + [f"trial_{k + 1}" for k in range(trials)])
            for p in rows:
                e = p["est"]
                w.writerow([an["parameter"], p["x"], an["unit"], p["label"], p["flow"], an["metric"],
                            f"{e['value']:.4f}", f"{e['ci_low']:.4f}", f"{e['ci_high']:.4f}", e["n_a"], e["n_b"]]
                           + [f"{t:.4f}" for t in e["per_trial"]])
        paths.append(path)
    return paths
