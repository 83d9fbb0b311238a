"""The reachability part of report.md: each matrix step, its verdict and its matrices."""
from __future__ import annotations

from emulator.records.results import Results


def section(results: Results) -> list[str]:
    """Markdown lines: a summary table, then every step's matrices as printed (`!` marks differences)."""
    steps = [s.fields for s in results.steps_of("reachability")]
    if not steps:
        return []
    out = ["## Reachability", "", "| matrix | pods | result | differing cells |", "|---|---:|---|---:|"]
    out += [f"| {s.get('name') or '-'} | {len(s.get('pods') or [])} | {'PASS' if s.get('ok') else '**FAIL**'} "
            f"| {len(s.get('differences') or [])} |" for s in steps]
    out.append("")
    for s in steps:
        out += [f"### {s.get('name') or 'reachability'}", "", "```", s.get("text", "").rstrip(), "```", ""]
        for d in (s.get("differences") or [])[:20]:
            out.append(f"- {d['from']} -> {d['to']} {d['port']}: expected {d['expected']}, probe {d['observed']}")
        if s.get("differences"):
            out.append("")
    return out
