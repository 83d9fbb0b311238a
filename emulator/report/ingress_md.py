"""The Ingress part of report.md: each HTTP(S) load balancer, its backends and its decisions."""
from __future__ import annotations

from typing import Mapping

from emulator.records.results import Results


def _counts(c: Mapping[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((c or {}).items(), key=lambda kv: -kv[1])) or "-"


def section(results: Results) -> list[str]:
    """Markdown lines: one row per Ingress, then its access-log decisions (empty without Ingress)."""
    ings = results.ingresses or {}
    if not ings:
        return []
    out = ["## HTTP(S) load balancers (Ingress)", "",
           "Backends: NodePort sends to every node's NodeIP:NodePort (the node may forward to a pod "
           "elsewhere: the extra hop); NEG sends straight to pod IPs. Decisions come from logs/gfe-access.log.", "",
           "| ingress | address | backends | requests | statuses | security policy | preview | IAP | errors |",
           "|---|---|---|---:|---|---|---|---|---|"]
    for key, i in sorted(ings.items()):
        bes = "; ".join(f"{(b or {}).get('service', name)} ({'NEG' if (b or {}).get('neg') else 'NodePort'}, "
                        f"{len((b or {}).get('servers') or [])} servers)"
                        for name, b in (i.get("backends") or {}).items())
        log = i.get("log") or {}
        out.append(f"| {key} | {i.get('ip') or '-'} | {bes or '-'} | {log.get('requests', 0)} | "
                   f"{_counts(log.get('status'))} | {_counts(log.get('armor'))} | {_counts(log.get('preview'))} | "
                   f"{_counts(log.get('iap'))} | {'; '.join(i.get('errors') or []) or '-'} |")
    return out + [""]
