"""report.md sections for link impairments and the extra-hop study.

Pure: results.json and the flow reports in, markdown lines out. The study compares,
per flow from outside the cluster, the share of requests that entered a node without
a pod and the share served by another node than the one entered with their expected
values; and, between flows to the same target run with and without link impairments,
how much the extra-hop penalty grew (Mann-Whitney U on penalty-shifted latencies).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from emulator.records.results import ImpairmentsRecord, Results, StepResult, TopologyClient, TopologyNode
from emulator.report import stats
from emulator.report.hops import extra_hop_flags
from emulator.report.study_md import compares


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _classes(rec: ImpairmentsRecord | StepResult | None) -> dict[str, dict[str, Any]]:
    """The impairment classes of the bring-up record or of an `impair` step."""
    if isinstance(rec, StepResult):
        return rec.fields.get("classes") or {}
    return rec.classes if rec else {}


def impairment_timeline(results: Results) -> dict[str, str]:
    """The link impairments in force while each flow ran, as text ('none' when none)."""
    def text(rec: ImpairmentsRecord | StepResult | None) -> str:
        return "; ".join(f"{k} {v['config']}" for k, v in _classes(rec).items()) or "none"
    now = text(results.impairments)
    out: dict[str, str] = {}
    for s in results.steps:
        if s.step == "impair":
            now = text(s)
        elif s.step == "traffic" and "flow" in s.fields:
            out[s.fields["flow"]] = now
    for c, _ in compares(results):   # compares record what was in force (sweeps change it per point)
        out.update({a["flow"]: c.get("impairments", "none") for a in (c.get("arms") or {}).values()})
    return out


def impairment_lines(results: Results) -> list[str]:
    """'## Link impairments': each configuration applied and what enforced each class."""
    applied: list[tuple[str, ImpairmentsRecord | StepResult | None]] = [("bring-up", results.impairments)]
    applied += [(f"step {i + 1}", s) for i, s in enumerate(results.steps) if s.step == "impair"]
    rows = []
    for when, rec in applied:
        classes = _classes(rec)
        rows += [(when, name, c.get("config"), c.get("enforced_by"), c.get("hosts")) for name, c in classes.items()]
        if not classes and when != "bring-up":
            rows.append((when, "all", "none (removed)", "-", "-"))
    if not rows:
        return []
    out = ["## Link impairments", "",
           "Each host delays/drops/shapes its own egress (one-way values; a round trip crosses "
           "the link twice). *netem*: tc netem qdiscs; *nfqueue delay*: the kernel has no sch_netem, "
           "packets wait in NFQUEUE for the host's delay process; *statistic loss*: iptables "
           "`-m statistic` DROP; *htb rate*: an htb class per link class.", ""]
    header = "| applied at | link class | impairment | enforced by | hosts |"
    out += [header, "|---|---|---|---|---:|"]
    out += [f"| {w} | {n} | {c} | {e} | {h} |" for w, n, c, e, h in rows]
    return out + [""]


def _split(records: Sequence[Mapping[str, Any]], flags: Sequence[bool | None],
           key: str = "total_ms") -> tuple[list, list]:
    """`key` values of the direct and of the extra-hop requests."""
    direct = [r[key] for r, f in zip(records, flags) if f is False and r.get(key) is not None]
    extra = [r[key] for r, f in zip(records, flags) if f is True and r.get(key) is not None]
    return direct, extra


def _median(xs: Sequence[float]) -> float | None:
    return float(np.median(xs)) if len(xs) else None


def study_rows(flows: Sequence[Any], records: Mapping[str, Sequence[Mapping[str, Any]]],
               nodes: Sequence[TopologyNode], clients: Sequence[TopologyClient]) -> list[dict]:
    """Per outside flow: shares against expected values, medians and the extra-hop penalty."""
    client_ips = {c.ip for c in clients}
    out = []
    for f in flows:
        if f.hops is None or not f.hops.attributed:
            continue
        recs = records[f.name]
        serving = set(f.summary.per_node)
        n, k = len(f.hops.entered), len(serving)
        kept = bool(client_ips & set(f.summary.client_ips))
        no_pod = sum(c for node, c in f.hops.entered.items() if node not in serving) / f.hops.attributed
        flags = extra_hop_flags(recs, nodes)
        direct, extra = _split(recs, flags)
        md, me = _median(direct), _median(extra)
        cd, ce = (_median(x) for x in _split(recs, flags, "connect_ms"))
        out.append({"flow": f.name, "n": f.hops.attributed, "entered_nodes": n, "pod_nodes": k,
                    "client_ip_kept": kept, "no_pod": no_pod, "extra": f.hops.extra_share,
                    "expected_no_pod": 0.0 if kept else (n - k) / n if n else None,
                    "expected_extra": 0.0 if kept else (n - 1) / n if n else None,
                    "median_all": f.summary.total_ms.p50 if f.summary.total_ms else None,
                    "median_direct": md, "median_extra": me,
                    "penalty": None if md is None or me is None else me - md,
                    "connect_penalty": None if cd is None or ce is None else ce - cd,
                    "target": _target(recs), "direct": direct, "extra_ms": extra})
    return out


def _target(records: Sequence[Mapping[str, Any]]) -> str | None:
    r = next((r for r in records if r.get("remote_ip")), None)
    return None if r is None else f"{r['remote_ip']}:{r.get('remote_port')}"


def penalty_growth(rows: Sequence[dict], when: Mapping[str, str]) -> list[dict]:
    """For each impaired flow with a penalty, the unimpaired flow to the same target and the growth."""
    out = []
    for b in rows:
        if when.get(b["flow"], "none") == "none" or b["penalty"] is None:
            continue
        a = next((r for r in rows if r["target"] == b["target"] and r["penalty"] is not None
                  and when.get(r["flow"], "none") == "none"), None)
        if a is None:
            continue
        shifted_a = [x - a["median_direct"] for x in a["extra_ms"]]
        shifted_b = [x - b["median_direct"] for x in b["extra_ms"]]
        cmp = stats.compare(shifted_a, shifted_b, f"{a['flow']} penalty", f"{b['flow']} penalty")
        out.append({"without": a["flow"], "with": b["flow"], "impairment": when[b["flow"]],
                    "penalty_without": a["penalty"], "penalty_with": b["penalty"],
                    "growth": b["penalty"] - a["penalty"], "compare": cmp,
                    "connect_growth": None if None in (a["connect_penalty"], b["connect_penalty"])
                    else b["connect_penalty"] - a["connect_penalty"]})
    return out


def study_lines(results: Results, flows: Sequence[Any],
                records: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """'## Extra-hop study' for runs with outside flows that reached pods on several nodes."""
    topo = results.topology
    rows = study_rows(flows, records, topo.nodes, topo.clients) if topo else []
    if not rows:
        return []
    when = impairment_timeline(results)
    out = ["## Extra-hop study", "",
           "*Entered without pod*: requests whose entry node (read from the source IP the pod saw) "
           "has no pod of the flow; the load balancer's spreading alone gives (nodes − nodes with a pod) "
           "/ nodes. *Extra hop*: requests served by another node than the one entered. With "
           "externalTrafficPolicy Cluster kube-proxy picks among *all* endpoints, so a request that "
           "entered a node with a pod still leaves it for another node's pod; the chance to stay is "
           "1/nodes whatever the pods' spread, so the expected extra-hop share is (nodes − 1)/nodes "
           "(5/6 = 83.3% for 6 nodes), not (nodes − nodes with a pod)/nodes (4/6 = 66.7%). With Local "
           "(client IP kept) both are 0. *Penalty*: median extra-hop latency − median direct latency "
           "(new connection + one HTTP exchange per request). A node-to-node delay D (one way) "
           "adds 2D per round trip to extra-hop requests only; a new connection and one HTTP "
           "exchange are two round trips, so the penalty should grow by about 4D.", ""]
    out += ["| flow | impairments | client IP kept | entered without pod (expected) | extra hop (expected) "
            "| median ms | median direct ms | median extra-hop ms | penalty ms |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['flow']} | {when.get(r['flow'], 'none')} | {'yes' if r['client_ip_kept'] else 'no'} "
                   f"| {_pct(r['no_pod'])} ({_pct(r['expected_no_pod'])}) | {_pct(r['extra'])} "
                   f"({_pct(r['expected_extra'])}) | {_ms(r['median_all'])} | {_ms(r['median_direct'])} "
                   f"| {_ms(r['median_extra'])} "
                   f"| {_ms(r['penalty'])} |")
    out.append("")
    for g in penalty_growth(rows, when):
        c = g["compare"]
        out += [f"With {g['impairment']} ({g['with']}) the extra-hop penalty is {_ms(g['penalty_with'])} ms "
                f"against {_ms(g['penalty_without'])} ms without ({g['without']}): it grew by "
                f"{_ms(g['growth'])} ms. Extra-hop latencies minus each flow's direct median: "
                f"{c['sentence']}" + ("" if g["connect_growth"] is None else
                                      f" The TCP handshake alone (one round trip) grew by "
                                      f"{_ms(g['connect_growth'])} ms."), ""]
    return out
