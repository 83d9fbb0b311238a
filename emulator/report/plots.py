"""PNG plots of a run's flows: latency CDF, traffic share per serving node, timeline.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no global
state, no display needed). The figure builders are pure over the loaded records;
`save` writes one PNG.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from emulator.records.results import Results
from emulator.report import chaos_md, study_plots
from emulator.report import palette
from emulator.report.palette import DPI
from emulator.report.study_md import study_flow_names, sweep_flow_names

BIN_S = 0.1          # timeline bin: 100 ms
FAILED_COLOR = "#b0b0b0"


def _ok_totals(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.sort(np.asarray([r["total_ms"] for r in records
                               if r.get("outcome") == "ok" and r.get("total_ms") is not None], dtype=float))


def latency_cdf(records: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> Figure:
    """Empirical CDF of the total time of successful requests, one line per flow, log x."""
    fig = Figure(figsize=(9, 5.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    colors = palette.colors(len(records))
    empty, plotted = [], 0
    for (name, recs), color in zip(records.items(), colors):
        x = _ok_totals(recs)
        x = x[x > 0]
        if x.size == 0:
            empty.append(name)
            continue
        y = np.arange(1, x.size + 1) / x.size
        plotted += 1
        ax.step(np.concatenate([[x[0]], x]), np.concatenate([[0.0], y]), where="post", color=color, lw=1.6,
                label=f"{name} (n={x.size}, p50 {np.percentile(x, 50):.2f} ms)")
    ax.set_xscale("log")
    if plotted:
        lo, hi = ax.get_xlim()
        span = math.log10(hi / lo) if lo > 0 and hi > lo else 3.0
        subs = (1.0, 2.0, 3.0, 5.0, 7.0) if span < 1.3 else (1.0, 2.0, 5.0) if span < 3 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    for q in (0.5, 0.9, 0.99):
        ax.axhline(q, color="#888888", lw=0.7, ls=":")
        ax.annotate(f"p{round(q * 100)}", xy=(1.0, q), xycoords=("axes fraction", "data"), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=8, color="#666666")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("total request time (ms, log scale)")
    ax.set_ylabel("fraction of successful requests ≤ time")
    ax.set_title(title or "Latency CDF per flow (successful requests)")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", axis="x", alpha=0.12)
    if plotted:
        ax.legend(loc="upper left", bbox_to_anchor=(1.04, 1.0), fontsize=8, title="flow", title_fontsize=9,
                  frameon=False)
    if empty:
        ax.text(0.01 if plotted else 0.5, -0.13 if plotted else 0.5, "no successful requests: " + ", ".join(empty),
                transform=ax.transAxes, fontsize=8, color="#aa3333", ha="left" if plotted else "center",
                va="top" if plotted else "center")
    if not plotted:
        ax.set_xlim(0.1, 1000)
    return fig


def node_shares(records: Mapping[str, Sequence[Mapping[str, Any]]], node_order: Sequence[str] = (),
                notes: Mapping[str, str] | None = None, title: str = "") -> Figure:
    """Per flow, a 100% bar split by the node that served each request (failed requests grey)."""
    names = list(records)
    seen = {r.get("node") for recs in records.values() for r in recs if r.get("outcome") == "ok" and r.get("node")}
    nodes = [n for n in node_order if n in seen] + sorted(seen - set(node_order))
    colors = dict(zip(nodes, palette.colors(len(nodes))))
    ncol = min(5, len(nodes) + 1)
    legend_rows = -(-(len(nodes) + 1) // ncol)   # the legend below the bars needs its own height
    fig = Figure(figsize=(10, 1.4 + 0.45 * max(len(names), 1) + 0.2 * legend_rows), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(names))
    left = np.zeros(len(names))
    segments = [(n, colors[n], [sum(1 for r in records[f] if r.get("outcome") == "ok" and r.get("node") == n)
                                for f in names]) for n in nodes]
    segments.append(("no answer (failed)", FAILED_COLOR,
                     [sum(1 for r in records[f] if r.get("outcome") != "ok" or not r.get("node")) for f in names]))
    totals = np.asarray([max(len(records[f]), 1) for f in names], dtype=float)
    for label, color, counts in segments:
        share = 100 * np.asarray(counts, dtype=float) / totals
        if not share.any():
            continue
        bars = ax.barh(y, share, left=left, color=color, label=label, edgecolor="white", lw=0.6,
                       hatch="//" if color == FAILED_COLOR else None)
        for rect, s in zip(bars, share):
            if s >= 7:
                ax.text(rect.get_x() + rect.get_width() / 2, rect.get_y() + rect.get_height() / 2, f"{s:.0f}%",
                        ha="center", va="center", fontsize=8, color="black")
        left += share
    ax.set_yticks(y, names)
    ax.set_ylim(len(names) - 0.5, -0.5)          # first flow on top
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the flow's requests (%)")
    ax.set_title(title or "Traffic share per serving node")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    right = ax.twinx()                            # per-flow notes as right-hand tick labels
    right.set_ylim(ax.get_ylim())
    right.set_yticks(y, [f"n={len(records[f])}" + (f" · {notes[f]}" if notes and notes.get(f) else "")
                         for f in names], fontsize=8)
    right.tick_params(axis="y", length=0)
    if ax.patches:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=ncol,
                   fontsize=8, title="serving node", title_fontsize=9, frameon=False)
    return fig


def binned(records: Sequence[Mapping[str, Any]], t0: float, bin_s: float = BIN_S
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin edges (s since t0), requests started and successes per bin, from the first to the last bin used."""
    starts = np.asarray([r["t_start"] for r in records if r.get("t_start") is not None], dtype=float)
    if starts.size == 0:
        return np.zeros(0), np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    ok = np.asarray([r.get("outcome") == "ok" for r in records if r.get("t_start") is not None])
    # rounded to 10 us first: epoch seconds carry ~0.2 us of float noise, enough to cross a bin edge
    idx = np.floor(np.round(starts - t0, 5) / bin_s + 1e-9).astype(int)
    lo, hi = int(idx.min()), int(idx.max())
    started = np.bincount(idx - lo, minlength=hi - lo + 1)
    oks = np.bincount(idx - lo, weights=ok.astype(float), minlength=hi - lo + 1).astype(int)
    edges = (np.arange(lo, hi + 2)) * bin_s
    return edges, started, oks


WINDOW_REQUESTS = 20          # the rolling success window holds about this many requests
BAND_COLORS = ("#f4a582", "#fddbc7", "#d1e5f0", "#b8e186")
EVENT_STYLES = ("--", "-.", ":", (0, (5, 1, 1, 1)))


def rolling(records: Sequence[Mapping[str, Any]], t0: float, window_s: float, step_s: float = 0.05
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (s since t0), request rate (per s) and success ratio over the trailing `window_s`,
    every `step_s` from the first to the last request (ratio nan where the window is empty)."""
    rs = [r for r in records if r.get("t_start") is not None]
    if not rs:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    starts = np.asarray([r["t_start"] - t0 for r in rs], dtype=float)
    ok = np.asarray([r.get("outcome") == "ok" for r in rs], dtype=float)
    order = np.argsort(starts)
    starts, ok = starts[order], ok[order]
    cum = np.concatenate([[0.0], np.cumsum(ok)])
    t = np.arange(starts[0], starts[-1] + step_s, step_s)
    hi = np.searchsorted(starts, t, side="right")
    lo = np.searchsorted(starts, t - window_s, side="right")
    n = hi - lo
    ratio = np.divide(cum[hi] - cum[lo], n, out=np.full(t.shape, np.nan), where=n > 0)
    return t, n / window_s, ratio


def window_for(records: Sequence[Mapping[str, Any]], n: int = WINDOW_REQUESTS) -> float:
    """A window (s) holding about `n` of the flow's requests at its mean rate (0.2 s at least)."""
    starts = [r["t_start"] for r in records if r.get("t_start") is not None]
    if len(starts) < 2 or max(starts) == min(starts):
        return 1.0
    rate = (len(starts) - 1) / (max(starts) - min(starts))
    return max(0.2, n / rate)


def timeline(records: Mapping[str, Sequence[Mapping[str, Any]]], t0: float, bin_s: float = BIN_S,
             title: str = "", markers: Sequence[tuple[float, str]] = (),
             phases: Mapping[str, list] | None = None) -> Figure:
    """Per flow: request rate and success ratio over a rolling window of ~20 requests, and each
    request as a tick (failures red); `phases` (chaos_md.phase_bands) as shaded bands, faults and
    events as lines, all named in the legend; `markers`: further labelled lines."""
    names = [n for n, recs in records.items() if recs]
    fig = Figure(figsize=(11, 5.5 + 0.25 * len(names)), dpi=DPI, layout="constrained")
    ax_rate, ax_ok, ax_rug = fig.subplots(3, 1, sharex=True, height_ratios=(2, 3, 0.5 + 0.35 * max(len(names), 1)))
    colors = dict(zip(names, palette.colors(len(names))))
    lo = hi = None
    for i, name in enumerate(names):
        recs = records[name]
        w = window_for(recs)
        t, rate, ratio = rolling(recs, t0, w)
        if t.size == 0:
            continue
        lo = t[0] if lo is None else min(lo, t[0])
        hi = t[-1] if hi is None else max(hi, t[-1])
        ax_rate.plot(t, rate, color=colors[name], lw=1.2, label=f"{name} (window {w:.1f} s)")
        ax_ok.plot(t, 100 * ratio, color=colors[name], lw=1.4, label=name)
        starts = np.asarray([r["t_start"] - t0 for r in recs if r.get("t_start") is not None])
        bad = np.asarray([r.get("outcome") != "ok" for r in recs if r.get("t_start") is not None])
        ax_rug.vlines(starts[~bad], i - 0.3, i + 0.3, color="#bbbbbb", lw=0.4)
        ax_rug.vlines(starts[bad], i - 0.4, i + 0.4, color="#d62728", lw=1.0)
    handles = []
    ph = phases or {}
    end = (hi or 0) + 1
    for (x0, x1, label), color in zip(ph.get("bands") or [], BAND_COLORS):
        for ax in (ax_rate, ax_ok, ax_rug):
            span = ax.axvspan(x0, end if x1 is None else x1, color=color, alpha=0.45, lw=0, zorder=0)
        span.set_label(label)
        handles.append(span)
    for x, label in ph.get("faults") or []:
        for ax in (ax_rate, ax_ok, ax_rug):
            line = ax.axvline(x, color="black", lw=1.6)
        line.set_label(f"fault {label}")
        handles.append(line)
    extra = list(ph.get("events") or []) + list(markers)
    for (x, label), style in zip(extra, EVENT_STYLES * (1 + len(extra) // len(EVENT_STYLES))):
        for ax in (ax_rate, ax_ok, ax_rug):
            line = ax.axvline(x, color="#555555", lw=1.1, ls=style)
        line.set_label(label)
        handles.append(line)
    ax_rate.set_ylabel("requests / s\n(rolling window)")
    ax_rate.set_ylim(bottom=0)
    ax_rate.set_title(title or "Request rate and success over the run")
    ax_ok.set_ylim(-3, 103)
    ax_ok.set_ylabel("success %\n(rolling, ~20 requests)")
    ax_rug.set_yticks(range(len(names)), names, fontsize=8)
    ax_rug.set_ylim(len(names) - 0.5, -0.5)
    ax_rug.set_ylabel("requests\n(red: failed)", fontsize=8)
    ax_rug.set_xlabel("time since the run started (s)")
    for ax in (ax_rate, ax_ok):
        ax.grid(True, alpha=0.3)
    if lo is not None:
        pad = max(0.5, 0.02 * (hi - lo))
        ax_rug.set_xlim(lo - pad, hi + pad)
        ax_rate.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="flow", title_fontsize=9,
                       frameon=False)
    else:
        ax_rate.text(0.5, 0.5, "no requests", transform=ax_rate.transAxes, ha="center")
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(3, len(handles)), fontsize=8,
                   frameon=False, title="phases and events", title_fontsize=9)
    return fig


def _t0(results: Results, records: Mapping[str, Sequence[Mapping[str, Any]]]) -> float:
    started = results.started
    if not math.isnan(started):
        return float(started)
    ts = [r["t_start"] for recs in records.values() for r in recs if r.get("t_start") is not None]
    return min(ts) if ts else 0.0


def figures(run, flows) -> Iterator[tuple[str, str, Figure]]:
    """(title, file name, figure) of every plot of a loaded run (`render.RunData`, its `FlowReport`s)."""

    r, recs = run.results, run.records
    if not any(recs.values()):      # a run without traffic (e.g. only reachability matrices): nothing to plot
        return
    label = f"{r.scenario} run {r.run_id}"
    notes = {}
    for f in flows:
        if f.hops is not None and f.hops.attributed:
            notes[f.name] = f"extra hop {100 * f.hops.extra_share:.0f}%"
    study_flows, swept = study_flow_names(r), sweep_flow_names(r)   # sweeps have their own plot
    recs = {k: v for k, v in recs.items() if k not in swept}
    requests = {k: v for k, v in recs.items() if not (v and "bits_per_second" in v[0])}  # not iperf3 tests
    if recs:
        yield ("Latency CDF per flow", "latency-cdf.png",
               latency_cdf(requests, f"Latency CDF per flow, successful requests ({label})"))
        yield ("Traffic share per serving node", "node-share.png",
               node_shares(recs, [n.name for n in run.nodes], notes,
                           f"Share of each flow's requests per serving node ({label})"))
    timed = {k: v for k, v in recs.items() if k not in study_flows}
    if timed:
        yield ("Timeline", "timeline.png",
               timeline(timed, _t0(r, recs), BIN_S, f"Request rate and success over the run ({label})",
                        phases=chaos_md.phase_bands(r, _t0(r, recs))))
    yield from study_plots.figures(run)


def save(fig: Figure, path: str) -> None:
    """Write a figure as PNG."""
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI)
