"""The chaos part of report.md and the plots: faults, availability per flow, phases."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from emulator.records.results import Results
from emulator.report import expected_phases
from emulator.report.markdown import table


def _s(x: Any) -> str:
    return "-" if x is None else f"{x:.2f}"


def _later(f: Mapping[str, Any]) -> str:
    n, stale = f.get("later_failures", 0), f.get("later_stale_conntrack", 0)
    flap = f.get("later_healthcheck_flap", 0)
    text = f"{n} ({stale})" if stale else str(n)
    return f"{text} [{flap} in a health-check flap]" if flap else text


def section(results: Results) -> list[str]:
    """Markdown lines: the faults, then per flow its availability figures and the phases per Service."""
    faults = [s.fields for s in results.steps_of("fault")]
    avail = [s.fields for s in results.steps_of("availability")]
    if not faults:
        return []
    out = ["## Chaos", ""]
    out += table(["fault", "action", "targets", "at s (after the steps started)"],
                  [(f.get("name"), f.get("action"), ", ".join(f.get("nodes") or []) or f.get("pod", "-"),
                    _s(f.get("t_steps"))) for f in faults], right=(3,))
    out.append("")
    if not avail:
        return out
    out += ["Seconds after the fault. *detect*: first failed request; *recover*: first success that "
            "a quiet stretch follows; *downtime*: first failure to recovery; *later*: failures after it, "
            "in brackets those that reused the source port of a failed connect (a stale conntrack entry "
            "on the node they entered still DNATs that 4-tuple to the gone endpoint, for 120 s).", ""]
    if any((a.get("figures") or {}).get("later_healthcheck_flap") for a in avail):
        out[-2] += (" In square brackets: later failures sent while a load balancer held a node that did "
                    "not fail as unhealthy (its health checks were answered late: the machine could not "
                    "keep up).")
    rows = []
    for a in avail:
        f = a.get("figures") or {}
        errs = ", ".join(f"{k} {v}" for k, v in (f.get("errors_by_kind") or {}).items()) or "-"
        rows.append((a.get("flow"), a.get("fault"), f.get("requests"), f.get("requests_lost"), errs,
                     _s(f.get("detect_s")), _s(f.get("recover_s")), _s(f.get("downtime_s")),
                     _later(f), _s(f.get("final_success_ratio"))))
    out += table(["flow", "fault", "requests", "lost", "errors", "detect s", "recover s", "downtime s", "later",
                   "last 1 s ok"], rows, right=(2, 3, 5, 6, 7, 8, 9))
    ph = avail[0].get("phases") or {}
    node = {k: v for k, v in ph.items() if k not in ("services", "expected")}
    out += ["", f"Phases of {avail[0].get('fault')}: " +
            (", ".join(f"{k[:-2].replace('_', ' ')} {v:.2f} s" for k, v in node.items()) or "no node events"), ""]
    cols = ["lb_steered_s", "lb_applied_s", "endpoints_removed_s", "endpoints_restored_s"]
    svcs = ph.get("services") or {}
    if svcs:
        out += table(["Service", "health check steered away", "in the VPC", "endpoints removed",
                       "replacements ready"],
                      [(svc, *(_s(v.get(c)) for c in cols)) for svc, v in sorted(svcs.items())], right=(1, 2, 3, 4))
        out.append("")
    rows = expected_phases.comparison(ph)
    if rows:
        out += [f"Against the timing profile ({results.timing.profile if results.timing else '?'}): the window "
                "each phase should fall in, from the lease, grace, toleration and health-check settings "
                f"(emulator/report/expected_phases.py); *matches* allows {expected_phases.TOLERANCE:.0%} "
                "beyond its edges.", ""]
        out += table(["phase", "measured s", "expected s", "matches"],
                      [(name, _s(got), f"{lo:.2f}-{hi:.2f}", "yes" if ok else "NO") for name, got, (lo, hi), ok in rows],
                      right=(1, 2))
        out.append("")
    return out


def markers(results: Results, t0: float) -> list[tuple[float, str]]:
    """(seconds since t0, label) of every fault and of the first availability step's phases."""
    faults = [s.fields for s in results.steps_of("fault")]
    out = [(s["t"] - t0, str(s.get("name"))) for s in faults if "t" in s]
    avail: Sequence[Mapping[str, Any]] = [s.fields for s in results.steps_of("availability")]
    if avail:
        a = avail[0]
        ph = a.get("phases") or {}
        if ph.get("node_not_ready_s") is not None:
            out.append((a["fault_t"] - t0 + ph["node_not_ready_s"], "NotReady"))
        for svc, v in (ph.get("services") or {}).items():
            for key, label in (("lb_steered_s", "LB steered"), ("endpoints_restored_s", "replacements ready")):
                if v.get(key) is not None:
                    out.append((a["fault_t"] - t0 + v[key], f"{svc}: {label}"))
    return out


PHASE_BANDS = (("node_not_ready_s", "node down, lease not yet expired"),
               ("pods_evicted_s", "NotReady and tainted, pods kept"),
               ("endpoints_restored_s", "pods evicted, replacements starting"),
               (None, "replacements ready"))


def phase_bands(results: Results, t0: float) -> dict[str, list]:
    """For the timeline plot, seconds since t0: `faults` (x, label), `bands` (x0, x1, label) between
    the node's phases after the first availability step's fault, `events` (x, label) per Service."""
    faults = [(s["t"] - t0, f"{s.get('name')} ({s.get('action', 'fault')})")
              for s in (f.fields for f in results.steps_of("fault")) if "t" in s]
    avail = [s.fields for s in results.steps_of("availability") if s.fields.get("fault_t") is not None]
    if not avail:
        return {"faults": faults, "bands": [], "events": []}
    a = avail[0]
    ph, ft = a.get("phases") or {}, a["fault_t"] - t0
    svcs = ph.get("services") or {}
    restored = [v["endpoints_restored_s"] for v in svcs.values() if v.get("endpoints_restored_s") is not None]
    at = {"node_not_ready_s": ph.get("node_not_ready_s"), "pods_evicted_s": ph.get("pods_evicted_s"),
          "endpoints_restored_s": max(restored) if restored else None}
    bands, start = [], 0.0
    for key, label in PHASE_BANDS:
        end = at.get(key) if key else None
        if key and end is None:
            break
        bands.append((ft + start, None if end is None else ft + end, label))
        start = end if end is not None else start
    events = [(ft + v["lb_steered_s"], f"{svc}: load balancer steered away")
              for svc, v in sorted(svcs.items()) if v.get("lb_steered_s") is not None]
    return {"faults": faults, "bands": bands, "events": events}
