"""report.md and PNG plots of a run directory, rebuilt from its stored records.

A run directory holds `results.json` and `flows/<flow>.jsonl`; everything here reads
them and nothing writes back to results.json. `load_run` reads, `flow_reports` and
`render_markdown` are pure, `write_report` is the one function that writes files
(report.md and the plots of `plots.py`). `report_after_run` is what `kubemu run`
calls: it never raises.
"""
from __future__ import annotations

import json
import logging
import math
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

from pydantic import ValidationError

from emulator.errors import KubemuError
from emulator.records.results import Results, TopologyNode
from emulator.report import chaos_md, hop_study, ingress_md, kernel_limits, load_lapses, reach_md, stats, study_md
from emulator.report.hops import entered_node, extra_hop_flags
from emulator.report.markdown import table
from emulator.report.stats import FlowSummary

log = logging.getLogger(__name__)

REPORT_FILE = "report.md"
PLOTS_DIR = "plots"


@dataclass(frozen=True)
class RunData:
    """What a run directory stores: results.json and each flow's records."""

    run_dir: str
    results: Results
    records: dict[str, list[dict[str, Any]]]   # in results.json's flow order, then any others

    @property
    def nodes(self) -> list[TopologyNode]:
        return self.results.nodes


@dataclass(frozen=True)
class Hops:
    """Where requests entered the cluster against where they were served.

    `attributed` counts the successful requests whose entry node is known; `extra` those
    of them served by another node than the one they entered (the extra hop).
    """

    entered: dict[str, int]
    attributed: int
    extra: int
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)  # (entered, served) -> count

    @property
    def extra_share(self) -> float | None:
        return self.extra / self.attributed if self.attributed else None


@dataclass(frozen=True)
class FlowReport:
    """One flow: where it came from, its summary and, for outside traffic, its hops."""

    name: str
    source: str | None            # the step's `from`, e.g. host/inet-1 or pod/default/client
    external: bool                # came from outside the cluster: hop attribution applies
    summary: FlowSummary
    hops: Hops | None             # None for traffic that starts inside the cluster
    extra_vs_direct: dict[str, Any] | None = None   # stats.compare of extra-hop against direct


# --- reading ---------------------------------------------------------------------------

def load_run(run_dir: str | os.PathLike) -> RunData:
    """results.json and flows/*.jsonl of a run directory."""
    run_dir = os.path.abspath(os.fspath(run_dir))
    path = os.path.join(run_dir, "results.json")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise KubemuError(f"{run_dir} is not a run directory (no results.json)") from None
    except json.JSONDecodeError as e:
        raise KubemuError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise KubemuError(f"{path} does not hold a results object")
    try:
        results = Results.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise KubemuError(f"{path}: {where}: {err['msg']}") from None
    flows_dir = Path(run_dir, "flows")
    files = {p.stem: p for p in sorted(flows_dir.glob("*.jsonl"))} if flows_dir.is_dir() else {}
    order = [n for n in results.flows if n in files] + [n for n in files if n not in results.flows]
    records: dict[str, list[dict[str, Any]]] = {}
    for name in order:
        try:
            records[name] = stats.read_records(files[name])
        except json.JSONDecodeError as e:
            raise KubemuError(f"{files[name]} has a line that is not JSON: {e}") from None
    return RunData(run_dir, results, records)


# --- pure analysis ---------------------------------------------------------------------

def flow_sources(results: Results) -> dict[str, str]:
    """The `from` of each traffic step, by flow name."""
    out = {s.fields["flow"]: s.fields.get("from") for s in results.steps_of("traffic") if "flow" in s.fields}
    out.update({a["flow"]: c.get("from") for c, _ in study_md.compares(results) for a in (c.get("arms") or {}).values()})
    return out


def is_external(source: str | None, nodes: Sequence[TopologyNode]) -> bool:
    """Whether traffic from `source` enters the cluster from outside (a client host)."""
    if not source:
        return False
    kind, _, name = source.partition("/")
    return kind == "host" and name not in {n.name for n in nodes}


def hops(records: Sequence[Mapping[str, Any]], nodes: Sequence[TopologyNode]) -> Hops:
    """Entry node (as `kubemu`'s assertions derive it) against serving node, per request."""

    plan = SimpleNamespace(nodes=list(nodes))
    entered: dict[str, int] = {}
    pairs: dict[tuple[str, str], int] = {}
    attributed = extra = 0
    for r in records:
        into = entered_node(dict(r), plan)
        if into is None:
            continue
        entered[into] = entered.get(into, 0) + 1
        served = r.get("node")
        pairs[(into, served)] = pairs.get((into, served), 0) + 1
        attributed += 1
        if served is not None and served != into:
            extra += 1
    entered = dict(sorted(entered.items(), key=lambda kv: (-kv[1], kv[0])))
    return Hops(entered, attributed, extra, pairs)


def flow_report(name: str, records: Sequence[Mapping[str, Any]], results: Results) -> FlowReport:
    """The summary of one flow's records, with hop attribution for outside traffic."""
    nodes = results.nodes
    source = flow_sources(results).get(name)
    external = is_external(source, nodes)
    summary = stats.summarize(records)
    h = hops(records, nodes) if external and nodes else None
    cmp = None
    if h is not None and h.extra and h.extra < h.attributed:
        flags = extra_hop_flags(records, nodes)
        direct = [r.get("total_ms") for r, f in zip(records, flags) if f is False]
        extra = [r.get("total_ms") for r, f in zip(records, flags) if f is True]
        if len(direct) >= 2 and len(extra) >= 2:
            cmp = stats.compare(direct, extra, "direct", "extra-hop")
    return FlowReport(name, source, external, summary, h, cmp)


def flow_reports(run: RunData) -> list[FlowReport]:
    return [flow_report(name, recs, run.results) for name, recs in run.records.items()]


# --- markdown --------------------------------------------------------------------------

def _ms(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def shares(counts: Mapping[str, int], total: int | None = None) -> str:
    """`a 60 (60.0%), b 40 (40.0%)`: counts with their share of `total` (default: their sum)."""
    total = sum(counts.values()) if total is None else total
    if not counts or not total:
        return "-"
    return ", ".join(f"{k} {v} ({100 * v / total:.1f}%)" for k, v in counts.items())


def _failures(s: FlowSummary) -> str:
    return ", ".join(f"{k} {v}" for k, v in s.outcomes.items() if k != "ok" and v) or "-"


def _mbps(s: FlowSummary) -> str:
    """Megabits per second of a throughput test (iperf3), `-` for other flows."""
    return "-" if s.bits_per_second is None else f"{s.bits_per_second / 1e6:.1f}"


def _extra_cell(f: FlowReport) -> str:
    if f.hops is None:
        return "n/a"
    if not f.hops.attributed:
        return "-"
    return f"{_pct(f.hops.extra_share)} ({f.hops.extra}/{f.hops.attributed})"


def render_markdown(run: RunData, flows: Sequence[FlowReport] | None = None,
                    plots: Mapping[str, str] | None = None) -> str:
    """report.md of a run: scenario, topology, flows, assertions, bring-up timeline.

    `plots` maps a title to a path relative to the run directory (embedded as images).
    """
    r = run.results
    flows = flow_reports(run) if flows is None else flows
    out: list[str] = []
    verdict = "passed" if r.ok else ("interrupted" if r.interrupted else "FAILED")
    out += [f"# kubemu run {r.run_id}: scenario {r.scenario}", ""]
    facts = [("Scenario", r.scenario), ("Scenario file", r.scenario_file),
             ("Run id", r.run_id), ("Result", verdict),
             ("Duration", f"{r.seconds:.1f} s" if r.seconds is not None else None),
             ("iptables backend", r.iptables_backend), ("Error", r.error)]
    out += table(["", ""], [(k, v) for k, v in facts if v is not None]) + [""]
    for line in load_lapses.warnings(r.load or {}):
        out += ["**" + line + "**", ""]
    if r.kernel_limits:
        out += ["**" + kernel_limits.warning(r.kernel_limits) + "**", ""]

    topo = r.topology
    out += ["## Topology", ""]
    if topo and topo.nodes:
        out += table(["node", "zone", "IP", "pod CIDR"], [(n.name, n.zone, n.ip, n.pod_cidr) for n in topo.nodes])
        out.append("")
    if topo and topo.clients:
        out += table(["client", "kind", "IP"], [(c.name, c.kind, c.ip) for c in topo.clients])
        out.append("")
    if not topo:
        out += ["No topology recorded (the run stopped before the cluster was up).", ""]

    out += ["## Traffic", ""]
    if not flows:
        out += ["No flow records.", ""]
    else:
        out += ["Latency is the total time of successful requests, in milliseconds; throughput is "
                "successful requests per second of the flow's wall time. *Extra hop*: share of "
                "successful requests from outside the cluster served by another node than the one "
                "they entered (n/a for traffic that starts inside the cluster).", ""]
        rows = []
        for f in flows:
            s, lat = f.summary, f.summary.total_ms
            rows.append((f.name, f.source or "-", s.count, _pct(s.success_ratio), _failures(s),
                         _ms(lat and lat.p50), _ms(lat and lat.p90), _ms(lat and lat.p99), _ms(lat and lat.max),
                         "-" if s.throughput_rps is None else f"{s.throughput_rps:.1f}", _extra_cell(f), _mbps(s)))
        out += table(["flow", "from", "requests", "success", "failures", "p50 ms", "p90 ms", "p99 ms",
                       "max ms", "ok/s", "extra hop", "Mbit/s"], rows, right=(2, 3, 5, 6, 7, 8, 9, 10, 11))
        out.append("")
        for f in flows:
            out += _flow_details(f)

    out += hop_study.impairment_lines(r) + hop_study.study_lines(r, flows, run.records)
    out += study_md.section(r, run.records)
    out += ["## Assertions", ""]
    checks = [(s.fields.get("flow") or s.fields.get("object"), c) for s in r.steps
              if s.step in ("assert", "sweep")
              for c in s.fields.get("checks") or []]
    if checks:
        rows = []
        for flow, c in checks:
            exp, act = c.get("expected"), c.get("actual")
            exp = exp if isinstance(exp, str) else "= " + (", ".join(map(str, exp)) if isinstance(exp, list) else str(exp))
            act = f"{act:.4g}" if isinstance(act, (int, float)) and not isinstance(act, bool) else \
                ", ".join(map(str, act)) if isinstance(act, list) else str(act)
            rows.append((flow, c.get("metric"), exp, act, "PASS" if c.get("ok") else "**FAIL**"))
        out += table(["flow", "metric", "expected", "actual", "result"], rows) + [""]
        passed = sum(1 for _, c in checks if c.get("ok"))
        out += [f"{passed} of {len(checks)} checks passed.", ""]
    else:
        out += ["No assertions.", ""]

    out += chaos_md.section(r)
    out += reach_md.section(r)
    out += ingress_md.section(r)

    out += ["## Bring-up timeline", ""]
    tl = r.timeline or {}
    if tl:
        rows, prev = [], 0.0
        for phase, at in sorted(tl.items(), key=lambda kv: kv[1]):
            rows.append((phase, f"{at:.3f}", f"{at - prev:.3f}"))
            prev = at
        out += ["Seconds since the run started: when each phase was done and how long it took.", ""]
        out += table(["phase", "done at s", "took s"], rows, right=(1, 2)) + [""]
    else:
        out += ["No timeline recorded.", ""]

    if plots:
        out += ["## Plots", ""]
        for title, rel in plots.items():
            out += [f"### {title}", "", f"![{title}]({rel})", ""]
    return "\n".join(out).rstrip() + "\n"


def _flow_details(f: FlowReport) -> list[str]:
    s = f.summary
    lines = [f"### {f.name}", ""]
    lat = s.total_ms
    items = [("from", f.source or "-"),
             ("requests", f"{s.count} ({s.ok} ok, {_pct(s.success_ratio)})"),
             ("outcomes", ", ".join(f"{k} {v}" for k, v in s.outcomes.items() if v) or "-"),
             ("total ms p50 / p90 / p99 / max",
              " / ".join(_ms(getattr(lat, q)) for q in ("p50", "p90", "p99", "max")) if lat else "-"),
             ("connect ms p50 / p99", f"{_ms(s.connect_ms.p50)} / {_ms(s.connect_ms.p99)}" if s.connect_ms else "-"),
             ("throughput", "-" if s.throughput_rps is None else f"{s.throughput_rps:.1f} ok/s over {s.wall_s:.3f} s"),
             *([("iperf3 throughput", f"{_mbps(s)} Mbit/s, {s.bytes_received} bytes received, "
                                      f"{'-' if s.retransmits is None else s.retransmits} retransmits")]
               if s.bits_per_second is not None else []),
             ("served by pod", shares(s.per_pod)),
             ("served by node", shares(s.per_node))]
    if f.hops is not None:
        h = f.hops
        items += [("entered node", shares(h.entered)),
                  ("extra hop (entered ≠ serving node)",
                   f"{h.extra} of {h.attributed} ({_pct(h.extra_share)})" if h.attributed else "-")]
    else:
        items += [("entered node", "n/a: the traffic starts inside the cluster")]
    items += [("client IPs seen by the pod", shares(s.client_ips))]
    lines += table(["", ""], items) + [""]
    if f.extra_vs_direct:
        c = f.extra_vs_direct
        lines += [f"Extra-hop against direct requests (median {_ms(c['median_b_ms'])} ms against "
                  f"{_ms(c['median_a_ms'])} ms, n = {c['n_b']} and {c['n_a']}): {c['sentence']}", ""]
    return lines


# --- writing -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportPaths:
    markdown: str
    plots: dict[str, str]        # title -> absolute path


def write_report(run_dir: str | os.PathLike) -> ReportPaths:
    """Write report.md and the PNG plots (in plots/) of a run directory from its records."""
    # imported late: matplotlib takes a second, and render_markdown needs none of it
    from emulator.report import plots, study_plots

    run = load_run(run_dir)
    flows = flow_reports(run)
    out_dir = os.path.join(run.run_dir, PLOTS_DIR)
    os.makedirs(out_dir, exist_ok=True)
    written: dict[str, str] = {}
    for title, fname, fig in plots.figures(run, flows):
        path = os.path.join(out_dir, fname)
        plots.save(fig, path)
        written[title] = path
    study_plots.write_csvs(run, out_dir)
    rel = {t: os.path.relpath(p, run.run_dir) for t, p in written.items()}
    md_path = os.path.join(run.run_dir, REPORT_FILE)
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(render_markdown(run, flows, rel))
    return ReportPaths(md_path, written)


def report_after_run(run_dir: str, progress: Callable[[str], None] = print) -> ReportPaths | None:
    """`write_report` for the end of `kubemu run`: a failure is logged and reported, never raised."""
    try:
        paths = write_report(run_dir)
    except Exception as e:  # a report must not fail the run it reports on
        where = os.path.join(run_dir, "report-error.txt")
        try:
            with open(where, "w", encoding="utf-8") as f:
                f.write(traceback.format_exc())
        except OSError:
            where = "the log"
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        log.error("report of %s not written: %s", run_dir, msg)
        progress(f"report not written: {msg} (traceback in {where}); "
                 f"retry with: kubemu report {run_dir}")
        return None
    progress(f"report: {paths.markdown} (plots in {os.path.join(run_dir, PLOTS_DIR)})")
    return paths
