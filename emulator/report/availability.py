"""Availability of a flow around a fault, and the phases of the cluster's reaction. Pure.

`analyze` works on the generator's per-request records (`t_start` epoch seconds,
`total_ms`, `outcome`): success ratio per 100 ms bin of request starts, time to detect
(the first failed request that was still running at the fault or started after it),
time to recover (the first successful request after which `stable_s` seconds pass
without a failure: a lone timeout a minute later is a separate blip, counted in
`later_failures`, not a longer outage), downtime (first failure to recovery), errors by
kind and requests lost. Later failures that reuse the 4-tuple of an earlier failed connect
within `SYN_SENT_S` are counted apart (`later_stale_conntrack`): the entry node's conntrack
still holds that connect's UNREPLIED SYN_SENT entry, DNATed to an endpoint that has gone
since; a SYN of the same 4-tuple counts as its retransmission and follows the old DNAT
(Linux, and kube-proxy deletes stale entries of UDP only). Later failures that start while
a load balancer's health check holds a node that did not fail as unhealthy (`flaps`: a
busy machine answered its probes late) are counted apart too (`later_healthcheck_flap`):
the run says the machine could not keep up instead of hiding it. `phases` reads the
control plane's own records: the node lifecycle controller's events, the load
balancer health-check transitions and the EndpointSlice changes with their times.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

BIN_S = 0.1
SYN_SENT_S = 120.0   # net.netfilter.nf_conntrack_tcp_timeout_syn_sent, renewed by every SYN


def _end(r: Mapping[str, Any]) -> float:
    return r["t_start"] + (r.get("total_ms") or 0.0) / 1000.0


def bins(records: Sequence[Mapping[str, Any]], t0: float, bin_s: float = BIN_S) -> list[dict[str, Any]]:
    """Per bin of request starts since t0: {t, requests, ok, ratio} (empty bins left out)."""
    acc: dict[int, list[int]] = {}
    for r in records:
        i = int((round(r["t_start"] - t0, 5)) // bin_s)
        a = acc.setdefault(i, [0, 0])
        a[0] += 1
        a[1] += r.get("outcome") == "ok"
    return [{"t": round(i * bin_s, 3), "requests": n, "ok": ok, "ratio": round(ok / n, 4)}
            for i, (n, ok) in sorted(acc.items())]


def recovery(recs: Sequence[Mapping[str, Any]], after: float, stable_s: float) -> tuple[float | None, int]:
    """(start of the first ok request after `after` that `stable_s` seconds of successes
    follow, or None; failures after it). `recs` sorted by start; the flow's end counts as stable."""
    cand = None
    for i, r in enumerate(recs):
        if r["t_start"] < after:
            continue
        if r.get("outcome") != "ok":
            cand = None
            continue
        if cand is None:
            cand = r["t_start"]
        if r["t_start"] - cand >= stable_s or i == len(recs) - 1:
            later = sum(1 for x in recs if x["t_start"] > cand and x.get("outcome") != "ok")
            return cand, later
    return None, 0


def _four_tuple(r: Mapping[str, Any]) -> tuple | None:
    port = r.get("local_port")
    return (r.get("local_ip"), port, r.get("remote_ip"), r.get("remote_port")) if port else None


def stale_conntrack(recs: Sequence[Mapping[str, Any]], window_s: float = SYN_SENT_S) -> set[int]:
    """Indexes of failed requests (`recs` sorted by start) whose connect reused the 4-tuple of
    an earlier failed connect at most `window_s` before (whose SYN_SENT entry was still there)."""
    last_failed: dict[tuple, float] = {}
    out: set[int] = set()
    for i, r in enumerate(recs):
        key = _four_tuple(r)
        if key is None or r.get("outcome") == "ok":
            continue
        prev = last_failed.get(key)
        if prev is not None and r["t_start"] - prev <= window_s:
            out.add(i)
        if not r.get("connect_ms"):    # it failed before the handshake: its SYN left an entry
            last_failed[key] = r["t_start"]
    return out


def analyze(records: Sequence[Mapping[str, Any]], fault_t: float, bin_s: float = BIN_S,
            stable_s: float = 5.0, flaps: Sequence[tuple[float, float]] = ()) -> dict[str, Any]:
    """Figures of one flow around a fault at `fault_t` (epoch s); times in seconds after the fault.
    `flaps`: (from, to) epoch windows in which a node that did not fail was held unhealthy."""
    recs = sorted((r for r in records if r.get("t_start") is not None), key=lambda r: r["t_start"])
    n = len(recs)
    failed_all = [r for r in recs if r.get("outcome") != "ok"]
    hit = [r for r in failed_all if _end(r) >= fault_t]
    out: dict[str, Any] = {"requests": n, "failed": len(failed_all),
                           "error_ratio": round(len(failed_all) / n, 6) if n else None,
                           "requests_lost": len(hit), "errors_by_kind": dict(Counter(r["outcome"] for r in hit)),
                           "detect_s": None, "recover_s": None, "downtime_s": 0.0, "recovered": True,
                           "final_success_ratio": None, "later_failures": 0, "later_stale_conntrack": 0,
                           "later_healthcheck_flap": 0}
    if recs:
        last = recs[-1]["t_start"]
        tail = [r for r in recs if r["t_start"] >= last - 1.0]
        out["final_success_ratio"] = round(sum(r.get("outcome") == "ok" for r in tail) / len(tail), 6)
    if hit:
        first = hit[0]
        out["detect_s"] = round(max(0.0, first["t_start"] - fault_t), 3)
        back, later = recovery(recs, first["t_start"], stable_s)
        if back is not None:
            out["recover_s"] = round(back - fault_t, 3)
            out["downtime_s"] = round(back - max(fault_t, first["t_start"]), 3)
            out["later_failures"] = later
            stale = stale_conntrack(recs)
            out["later_stale_conntrack"] = sum(1 for i in stale if recs[i]["t_start"] > back)
            out["later_healthcheck_flap"] = sum(
                1 for i, r in enumerate(recs) if r["t_start"] > back and r.get("outcome") != "ok"
                and i not in stale and any(a <= r["t_start"] <= b for a, b in flaps))
            out["requests_lost"] = len(hit) - later
            lost = [r for r in hit if r["t_start"] < back]
            out["errors_by_kind"] = dict(Counter(r["outcome"] for r in lost))
        else:
            out["recovered"] = False
            out["downtime_s"] = round(recs[-1]["t_start"] - max(fault_t, first["t_start"]), 3)
    out["bins"] = bins(recs, fault_t, bin_s)
    return out


def metric(figures: Mapping[str, Any], name: str) -> float:
    """An assertable figure: detect_ms, recover_ms, downtime_ms, requests_lost, final_success_ratio."""
    if name.endswith("_ms"):
        v = figures.get(name[:-3] + "_s")
        return float("inf") if v is None else v * 1000.0
    v = figures.get(name)
    return float("nan") if v is None else float(v)


def _ready_on(slices: Iterable[Mapping[str, Any]], nodes: set[str] | None) -> int:
    """Ready endpoints of these slices (on `nodes` only, when given)."""
    return sum(1 for s in slices for e in s.get("endpoints") or []
               if (e.get("conditions") or {}).get("ready") and (nodes is None or e.get("nodeName") in nodes))


def endpoint_phases(slice_events: Sequence[tuple[float, str, Mapping[str, Any]]], before: Mapping[str, dict],
                    nodes: set[str], fault_t: float) -> dict[str, dict[str, float | None]]:
    """Per Service: when its ready endpoints on `nodes` were gone and when it had as many ready
    endpoints as before the fault again (seconds after the fault). `before`: slice name -> slice."""
    cur = {k: dict(v) for k, v in before.items()}
    svc_of = {k: (v.get("metadata", {}).get("labels") or {}).get("kubernetes.io/service-name") for k, v in cur.items()}
    want = {}
    for k, s in cur.items():
        want[svc_of[k]] = want.get(svc_of[k], 0) + _ready_on([s], None)
    hit = {svc for k, svc in svc_of.items() if _ready_on([cur[k]], nodes)}
    out: dict[str, dict[str, float | None]] = {svc: {"endpoints_removed_s": None, "endpoints_restored_s": None}
                                               for svc in hit}
    for t, type_, obj in sorted(slice_events, key=lambda e: e[0]):
        k = obj["metadata"]["name"]
        svc = (obj["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        if type_ == "DELETED":
            cur.pop(k, None)
        else:
            cur[k] = obj
        if svc not in out or t < fault_t:
            continue
        mine = [s for name, s in cur.items() if (s["metadata"].get("labels") or {}).get(
            "kubernetes.io/service-name") == svc]
        o = out[svc]
        if o["endpoints_removed_s"] is None and _ready_on(mine, nodes) == 0:
            o["endpoints_removed_s"] = round(t - fault_t, 3)
        if o["endpoints_removed_s"] is not None and o["endpoints_restored_s"] is None \
                and _ready_on(mine, None) >= want.get(svc, 0):
            o["endpoints_restored_s"] = round(t - fault_t, 3)
    return out


def health_phases(transitions: Sequence[Mapping[str, Any]], nodes: set[str], fault_t: float
                  ) -> dict[str, dict[str, float | None]]:
    """Per load balancer Service: when its health checks marked the failed nodes unhealthy
    (`lb_steered_s`, when the VPC got it: `lb_applied_s`) and when any node turned healthy again."""
    out: dict[str, dict[str, float | None]] = {}
    for e in sorted(transitions, key=lambda e: e["time"]):
        if e["time"] < fault_t:
            continue
        o = out.setdefault(e["service"], {"lb_steered_s": None, "lb_applied_s": None, "lb_healthy_again_s": None})
        if not e["healthy"] and e["node"] in nodes and o["lb_steered_s"] is None:
            o["lb_steered_s"] = round(e["time"] - fault_t, 3)
            if e.get("applied_at") is not None:
                o["lb_applied_s"] = round(e["applied_at"] - fault_t, 3)
        elif e["healthy"] and not e.get("first") and o["lb_healthy_again_s"] is None:
            o["lb_healthy_again_s"] = round(e["time"] - fault_t, 3)
    return {k: v for k, v in out.items() if any(x is not None for x in v.values())}


def flap_windows(transitions: Sequence[Mapping[str, Any]], failed: set[str], fault_t: float
                 ) -> list[tuple[float, float]]:
    """(unhealthy, healthy again) epoch windows, after the fault, of health checks that held a
    node that did not fail as unhealthy (open windows end at infinity)."""
    down: dict[tuple[str, str], float] = {}
    out: list[tuple[float, float]] = []
    for e in sorted(transitions, key=lambda e: e["time"]):
        if e["time"] < fault_t or e["node"] in failed:
            continue
        key = (e["service"], e["node"])
        if not e["healthy"]:
            down.setdefault(key, e["time"])
        elif key in down:
            out.append((down.pop(key), e["time"]))
    return sorted(out + [(t, float("inf")) for t in down.values()])


def lifecycle_phases(events: Sequence[Mapping[str, Any]], nodes: set[str], fault_t: float) -> dict[str, float]:
    """Seconds after the fault of the node lifecycle controller's first action of each kind."""
    out: dict[str, float] = {}
    for e in sorted(events, key=lambda e: e["t"]):
        if e["t"] >= fault_t and e["node"] in nodes:
            out.setdefault(e["event"] + "_s", round(e["t"] - fault_t, 3))
            if e["event"] == "node_not_ready" and "silent_s" in e:
                out.setdefault("node_silent_s", e["silent_s"])   # since its last lease renewal
    return out
