"""Wire forms: Status errors, RFC 3339 timestamps, objects as the API returns them."""
from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from emulator.kubeapi.resources import by_kind

TIME_KEYS = {"creationTimestamp", "deletionTimestamp", "lastTransitionTime", "lastProbeTime",
             "lastHeartbeatTime", "startTime", "startedAt", "finishedAt", "lastUpdateTime",
             "firstTimestamp", "lastTimestamp"}
MICRO_TIME_KEYS = {"renewTime", "acquireTime", "eventTime"}
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
           415: "UnsupportedMediaType", 422: "Invalid", 500: "InternalError", 501: "NotImplemented"}


class StatusError(Exception):
    """An API failure carried to the client as a meta/v1 Status."""

    def __init__(self, code: int, message: str, reason: str | None = None,
                 details: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "InternalError")
        self.details = details

    def status(self) -> dict:
        """The Status object."""
        return status_object(self.code, self.message, self.reason, self.details)


def status_object(code: int, message: str, reason: str, details: dict | None = None) -> dict:
    """A meta/v1 Status of a failure."""
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": reason, "code": code}
    if details:
        out["details"] = details
    return out


def not_found(plural: str, name: str, group: str = "") -> StatusError:
    """404 as the API server words it: pods "x" not found."""
    res = f"{plural}.{group}" if group else plural
    return StatusError(404, f'{res} "{name}" not found', "NotFound",
                       {"name": name, "group": group, "kind": plural})


def already_exists(plural: str, name: str, group: str = "") -> StatusError:
    """409 AlreadyExists."""
    res = f"{plural}.{group}" if group else plural
    return StatusError(409, f'{res} "{name}" already exists', "AlreadyExists",
                       {"name": name, "group": group, "kind": plural})


def conflict(plural: str, name: str, group: str = "", why: str = "") -> StatusError:
    """409 Conflict on a stale resourceVersion."""
    res = f"{plural}.{group}" if group else plural
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return StatusError(409, f'Operation cannot be fulfilled on {res} "{name}": {why}', "Conflict",
                       {"name": name, "group": group, "kind": plural})


def invalid(kind: str, name: str, group: str, causes: list[dict]) -> StatusError:
    """422 Invalid with field causes, worded like the API server."""
    text = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    details = {"name": name, "group": group, "kind": kind, "causes": causes}
    return StatusError(422, f'{kind} "{name}" is invalid: {text}', "Invalid", details)


def rfc3339(t: float, micro: bool = False) -> str:
    """Epoch seconds as RFC 3339 UTC (whole seconds, or microseconds for MicroTime)."""
    d = dt.datetime.fromtimestamp(float(t), dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str) -> float:
    """RFC 3339 text as epoch seconds."""
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _times_out(x: Any) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k in TIME_KEYS | MICRO_TIME_KEYS:
                x[k] = rfc3339(v, k in MICRO_TIME_KEYS)
            else:
                _times_out(v)
    elif isinstance(x, list):
        for v in x:
            _times_out(v)


def to_wire(obj: dict) -> dict:
    """A stored object as clients see it: apiVersion set, timestamps as RFC 3339 text."""
    out = copy.deepcopy(obj)
    res = by_kind(out.get("kind", ""))
    if res is not None:
        out["apiVersion"] = res.group_version
    _times_out(out)
    meta = out.get("metadata") or {}
    for k in ("labels", "annotations"):     # strings on the wire, whatever a controller wrote
        if isinstance(meta.get(k), dict):
            meta[k] = {str(a): b if isinstance(b, str) else json.dumps(b) for a, b in meta[k].items()}
    return out


def _times_in(x: Any, path: str = "") -> None:
    if isinstance(x, dict):
        for k, v in list(x.items()):
            here = f"{path}.{k}" if path else k
            if k in TIME_KEYS | MICRO_TIME_KEYS and isinstance(v, str):
                try:
                    x[k] = parse_time(v)
                except ValueError:
                    raise StatusError(400, f"{here}: invalid time {v!r}") from None
            elif k in TIME_KEYS | MICRO_TIME_KEYS and v is None:
                del x[k]
            else:
                _times_in(v, here)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _times_in(v, f"{path}[{i}]")


def from_wire(obj: dict) -> dict:
    """A client's object as stored: timestamps as epoch seconds, as kubemu's controllers write them."""
    out = copy.deepcopy(obj)
    _times_in(out)
    return out


def human_duration(seconds: float) -> str:
    """Kubernetes' duration.HumanDuration (AGE columns): 5s, 3m4s, 2d3h, 400d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    s = max(s, 0)
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        y = h // 24 // 365
        return f"{y}y{h // 24 % 365}d" if h // 24 % 365 else f"{y}y"
    return f"{h // 24 // 365}y"
