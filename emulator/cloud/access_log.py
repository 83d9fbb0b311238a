"""The Ingress proxy's access log (`logs/gfe-access.log`): parse lines, count decisions.

A line (haproxy_cfg.LOG_FORMAT): `CLIENT:PORT [DATE] FRONTEND BACKEND/SERVER TIMES STATUS
BYTES TERM lb=... host=... path=... policy=... rule=... action=... preview_rule=...
preview_action=... iap=... user=...`; `-` is an unset value.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

KEYS = ("lb", "host", "path", "policy", "rule", "action", "preview_rule", "preview_action", "iap", "user")


def parse_line(line: str) -> dict | None:
    """One request as a dict (client, backend, server, status, and the key=value fields)."""
    parts = line.split()
    if len(parts) < 8 or "]" not in line or not parts[5].isdigit():
        return None
    rec = {"client": parts[0].rpartition(":")[0], "backend": parts[3].partition("/")[0],
           "server": parts[3].partition("/")[2], "status": int(parts[5])}
    for p in parts[8:]:
        k, sep, v = p.partition("=")
        if sep and k in KEYS:
            rec[k] = None if v == "-" else v
    return rec


def summarize(lines: Iterable[str]) -> dict[str, dict]:
    """Per load balancer: requests, statuses, security policy and IAP decisions."""
    out: dict[str, dict] = {}
    for line in lines:
        rec = parse_line(line)
        if rec is None or not rec.get("lb"):
            continue
        s = out.setdefault(rec["lb"], {"requests": 0, "status": Counter(), "armor": Counter(),
                                       "preview": Counter(), "iap": Counter()})
        s["requests"] += 1
        s["status"][str(rec["status"])] += 1
        if rec.get("policy"):
            s["armor"][f"{rec['policy']} rule {rec.get('rule')}: {rec.get('action')}"] += 1
        if rec.get("preview_rule"):
            s["preview"][f"{rec['policy']} rule {rec['preview_rule']}: {rec.get('preview_action')}"] += 1
        if rec.get("iap"):
            s["iap"][rec["iap"]] += 1
    return {k: {**v, **{c: dict(v[c]) for c in ("status", "armor", "preview", "iap")}} for k, v in out.items()}
