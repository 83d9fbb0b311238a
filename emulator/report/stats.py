"""Statistics over per-request records: flow summaries and group comparisons.

Pure functions. Latency percentiles are over successful requests only (a failure's
time is the time until it failed, a different quantity); throughput is successful
requests per second over the flow's wall time, from the first request's start to the
last request's end.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

OUTCOMES = ("ok", "http_error", "refused", "timeout", "reset", "dns_error", "error")
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Latency:
    """Percentiles of one timing column, in milliseconds."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float


@dataclass(frozen=True)
class FlowSummary:
    """What one flow's records say: success, latency, throughput, who answered."""

    count: int
    ok: int
    success_ratio: float | None
    outcomes: dict[str, int]
    total_ms: Latency | None
    connect_ms: Latency | None
    ttfb_ms: Latency | None
    wall_s: float
    throughput_rps: float | None          # successful requests per second of wall time
    per_pod: dict[str, int] = field(default_factory=dict)
    per_node: dict[str, int] = field(default_factory=dict)
    distinct_backends: int = 0
    client_ips: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)   # HTTP status code -> responses, any outcome
    bits_per_second: float | None = None  # iperf3 flows: bytes received * 8 / test seconds
    bytes_received: int | None = None
    retransmits: int | None = None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def latency(values: Iterable[float | None]) -> Latency | None:
    """Percentiles (numpy, linear interpolation) of the non-null values; None if there are none."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return None
    p50, p90, p99 = (float(x) for x in np.percentile(arr, PERCENTILES))
    return Latency(int(arr.size), p50, p90, p99, float(arr.max()), float(arr.mean()))


def _counts(values: Iterable[str | None]) -> dict[str, int]:
    """Counts of non-null values, largest first, then by name."""
    c = Counter(v for v in values if v is not None)
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def summarize(records: Sequence[Mapping[str, Any]]) -> FlowSummary:
    """Summary of one flow's records."""
    count = len(records)
    ok_recs = [r for r in records if r.get("outcome") == "ok"]
    outcomes = {o: 0 for o in OUTCOMES}
    for r in records:
        outcomes[r.get("outcome") or "error"] = outcomes.get(r.get("outcome") or "error", 0) + 1
    starts = [r["t_start"] for r in records if r.get("t_start") is not None]
    ends = [r["t_start"] + (r.get("total_ms") or 0.0) / 1000.0 for r in records if r.get("t_start") is not None]
    wall = (max(ends) - min(starts)) if starts else 0.0
    per_pod = _counts(r.get("pod") for r in ok_recs)
    return FlowSummary(
        count=count, ok=len(ok_recs),
        success_ratio=(len(ok_recs) / count) if count else None,
        outcomes={k: v for k, v in outcomes.items() if v or k in OUTCOMES},
        total_ms=latency(r.get("total_ms") for r in ok_recs),
        connect_ms=latency(r.get("connect_ms") for r in ok_recs),
        ttfb_ms=latency(r.get("ttfb_ms") for r in ok_recs),
        wall_s=wall,
        throughput_rps=(len(ok_recs) / wall) if wall > 0 else None,
        per_pod=per_pod,
        per_node=_counts(r.get("node") for r in ok_recs),
        distinct_backends=len(per_pod),
        client_ips=_counts(r.get("client_ip_seen") for r in ok_recs),
        statuses=_counts(str(r["status"]) for r in records if r.get("status") is not None),
        **_throughput(ok_recs),
    )


def _throughput(ok_recs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """bits_per_second, bytes_received, retransmits of throughput tests (records with bits_per_second)."""
    tests = [r for r in ok_recs if r.get("bits_per_second") is not None]
    if not tests:
        return {}
    received = sum(int(r.get("received_bytes") or 0) for r in tests)
    seconds = sum((r.get("total_ms") or 0.0) / 1000.0 for r in tests)
    retrans = [r["retransmits"] for r in tests if r.get("retransmits") is not None]
    bps = received * 8 / seconds if seconds > 0 else sum(r["bits_per_second"] for r in tests) / len(tests)
    return {"bits_per_second": bps, "bytes_received": received, "retransmits": sum(retrans) if retrans else None}


def _evidence(p: float) -> str:
    """Words for a p-value."""
    if p < 0.001:
        return "strong evidence"
    if p < 0.01:
        return "moderate evidence"
    if p < 0.05:
        return "weak evidence"
    return "no evidence of a difference"


def _effect(ps: float) -> str:
    """Vargha-Delaney magnitude of a probability of superiority."""
    d = abs(ps - 0.5)
    return "negligible" if d < 0.06 else "small" if d < 0.14 else "medium" if d < 0.21 else "large"


def _fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def compare(a_ms: Sequence[float], b_ms: Sequence[float], a_name: str = "A", b_name: str = "B",
            alpha: float = 0.05) -> dict[str, Any]:
    """Mann-Whitney U test of B against A, with the probability of superiority and a sentence.

    `prob_superiority` is P(a B value > an A value) + half the ties: 0.5 means no shift,
    1.0 means every B request was slower than every A request.
    """
    from scipy.stats import mannwhitneyu   # imported late: scipy takes a second, only comparisons need it

    a = np.asarray([x for x in a_ms if x is not None and not math.isnan(x)], dtype=float)
    b = np.asarray([x for x in b_ms if x is not None and not math.isnan(x)], dtype=float)
    out: dict[str, Any] = {"a": a_name, "b": b_name, "n_a": int(a.size), "n_b": int(b.size),
                           "median_a_ms": float(np.median(a)) if a.size else None,
                           "median_b_ms": float(np.median(b)) if b.size else None,
                           "median_diff_ms": None, "u_statistic": None, "p_value": None,
                           "prob_superiority": None, "effect": None, "evidence": None,
                           "significant": False}
    if a.size < 2 or b.size < 2:
        out["sentence"] = f"Too few values to compare {b_name} with {a_name} (n = {a.size} and {b.size})."
        return out
    diff = float(np.median(b) - np.median(a))
    if np.all(a == a[0]) and np.all(b == b[0]) and a[0] == b[0]:
        u, p = a.size * b.size / 2.0, 1.0
    else:
        res = mannwhitneyu(b, a, alternative="two-sided")
        u, p = float(res.statistic), float(res.pvalue)
    ps = u / (a.size * b.size)
    out.update(median_diff_ms=diff, u_statistic=u, p_value=p, prob_superiority=ps,
               effect=_effect(ps), evidence=_evidence(p), significant=p < alpha)
    if p >= alpha:
        out["sentence"] = (f"No clear difference between {b_name} and {a_name} "
                           f"(medians differ by {diff:+.2f} ms, {_fmt_p(p)}, {_evidence(p)}).")
        return out
    word = "slower" if ps > 0.5 else "faster"
    by = (f"by {abs(diff):.2f} ms at the median" if (diff > 0) == (ps > 0.5) and diff != 0
          else f"(medians differ by {diff:+.2f} ms)")
    share = ps if ps > 0.5 else 1 - ps
    out["sentence"] = (f"{b_name} is {word} than {a_name} {by} ({_fmt_p(p)}, {_evidence(p)}; "
                       f"{_effect(ps)} effect: in {share:.0%} of ({b_name}, {a_name}) pairs "
                       f"the {b_name} request is the {word} one).")
    return out
