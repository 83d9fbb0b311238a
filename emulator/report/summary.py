"""Present flow summaries: a rich table for the CLI and plain dicts for results.json."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from rich.table import Table

from emulator.report.stats import FlowSummary, Latency


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _failures(s: FlowSummary) -> str:
    """`timeout 3, refused 1` for the non-ok outcomes that happened."""
    bad = [f"{k} {v}" for k, v in s.outcomes.items() if k != "ok" and v]
    return ", ".join(bad) or "-"


def _top(counts: Mapping[str, int], limit: int = 4) -> str:
    """`a 40%, b 35%, ... (+2)` shares of the largest counts."""
    total = sum(counts.values())
    if not total:
        return "-"
    items = [f"{k} {v / total:.0%}" for k, v in list(counts.items())[:limit]]
    more = len(counts) - limit
    return ", ".join(items) + (f" (+{more})" if more > 0 else "")


def render_summary_table(flows: Mapping[str, FlowSummary], title: str = "Traffic") -> Table:
    """One row per flow: success, latency percentiles, throughput, backends and nodes."""
    table = Table(title=title)
    table.add_column("flow", style="bold")
    table.add_column("requests", justify="right")
    table.add_column("success", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p90 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("max ms", justify="right")
    table.add_column("connect p50", justify="right")
    table.add_column("ok/s", justify="right")
    table.add_column("backends", justify="right")
    table.add_column("nodes")
    table.add_column("failures")
    for name, s in flows.items():
        lat = s.total_ms
        ratio = "-" if s.success_ratio is None else f"{s.success_ratio:.1%}"
        style = None if s.success_ratio in (None, 1.0) else "yellow" if s.success_ratio >= 0.99 else "red"
        table.add_row(name, str(s.count), ratio,
                      _num(lat and lat.p50), _num(lat and lat.p90), _num(lat and lat.p99), _num(lat and lat.max),
                      _num(s.connect_ms and s.connect_ms.p50), _num(s.throughput_rps, 1),
                      str(s.distinct_backends), _top(s.per_node), _failures(s), style=style)
    return table


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf become None, floats rounded to microseconds of a millisecond."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else round(x, 6)
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def to_json(summary: FlowSummary | Latency) -> dict[str, Any]:
    """A plain, JSON-serializable dict of a summary (for results.json)."""
    return _clean(dataclasses.asdict(summary))
