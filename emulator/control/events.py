"""Kubernetes Events (`kubectl get events`): a pure builder and a fire-and-forget recorder.

`make_event` builds a core/v1 Event about an involved object; `EventRecorder` sends it
to the ApiServer actor without waiting, and aggregates repeats like client-go's event
correlator: the same (object, reason, message, type, source) bumps `count` and
`lastTimestamp` of the event already sent instead of creating a new one. Recording
never blocks a control loop: calls are not awaited, and when too many are still in
flight the event is dropped (and counted in `dropped`).
"""
from __future__ import annotations

import datetime
import logging
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

import ray

log = logging.getLogger(__name__)

API_VERSIONS = {"Pod": "v1", "Node": "v1", "Service": "v1", "Namespace": "v1",
                "Deployment": "apps/v1", "ReplicaSet": "apps/v1"}
Key = tuple[str, str, str, str, str, str, str]


def rfc3339(t: float) -> str:
    """`2026-12-04T15:23:46Z` (Events' timestamps have second precision)."""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def involved_ref(obj: dict) -> dict:
    """The involvedObject reference of an object."""
    meta = obj.get("metadata", {})
    kind = obj["kind"]
    ref = {"kind": kind, "apiVersion": obj.get("apiVersion") or API_VERSIONS.get(kind, "v1"),
           "name": meta["name"]}
    if kind != "Node" and kind != "Namespace":
        ref["namespace"] = meta.get("namespace", "default")
    for k in ("uid", "resourceVersion"):
        if meta.get(k) is not None:
            ref[k] = str(meta[k])
    return ref


def make_event(involved: dict, reason: str, message: str, type_: str = "Normal", component: str = "",
               host: str | None = None, now: float | None = None, count: int = 1,
               first: float | None = None, name: str | None = None) -> dict:
    """A core/v1 Event about `involved` (an object or an involvedObject reference)."""
    if type_ not in ("Normal", "Warning"):
        raise ValueError(f"event type must be Normal or Warning, not {type_!r}")
    ref = involved if "metadata" not in involved else involved_ref(involved)
    now = time.time() if now is None else now
    source = {"component": component, **({"host": host} if host else {})}
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name or f"{ref['name']}.{int(now * 1e9):x}{secrets.token_hex(2)}",
                         "namespace": ref.get("namespace", "default")},
            "involvedObject": ref, "reason": reason, "message": message, "type": type_,
            "source": source, "reportingComponent": component, "reportingInstance": host or "",
            "firstTimestamp": rfc3339(first if first is not None else now), "lastTimestamp": rfc3339(now),
            "eventTime": None, "count": count, "action": reason}


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an Event timestamp (`2026-12-04T15:23:46Z`)."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def expired(events: list[dict], now: float, ttl: float = 3600.0) -> list[dict]:
    """Events last seen more than `ttl` ago (the API server's --event-ttl, 1 h by default)."""
    out = []
    for ev in events:
        try:
            if now - parse_rfc3339(ev.get("lastTimestamp") or "") > ttl:
                out.append(ev)
        except ValueError:
            continue
    return out


def event_key(ev: dict) -> Key:
    """What makes two events the same (client-go's aggregation key, without the uid's version)."""
    ref = ev["involvedObject"]
    return (ref["kind"], ref.get("namespace", ""), ref["name"], ev["reason"], ev["message"], ev["type"],
            ev["source"].get("component", ""))


def bump(ev: dict, now: float) -> dict:
    """The same event seen again: count + 1, a new lastTimestamp."""
    return {**ev, "count": int(ev.get("count", 1)) + 1, "lastTimestamp": rfc3339(now)}


class EventRecorder:
    """Sends events to the ApiServer actor (`api.apply`) without waiting; aggregates repeats."""

    def __init__(self, api: Any, component: str, host: str | None = None,
                 max_pending: int = 256, max_keys: int = 4096) -> None:
        self.api, self.component, self.host = api, component, host
        self.max_pending, self.max_keys = max_pending, max_keys
        self._seen: OrderedDict[Key, dict] = OrderedDict()
        self._pending: list = []
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0

    def record(self, involved: dict, reason: str, message: str, type_: str = "Normal") -> None:
        """Create the event, or bump the count of the same one; never raises, never waits."""
        try:
            now = time.time()
            ev = make_event(involved, reason, message, type_, self.component, self.host, now)
            with self._lock:
                key = event_key(ev)
                old = self._seen.pop(key, None)
                ev = bump(old, now) if old is not None else ev
                self._seen[key] = ev
                while len(self._seen) > self.max_keys:
                    self._seen.popitem(last=False)
                if not self._room():
                    self.dropped += 1
                    return
                self._pending.append(self.api.apply.remote(ev))
                self.sent += 1
        except Exception as e:  # noqa: BLE001 - an event is never worth a failed control loop
            self.dropped += 1
            log.debug("event %s not recorded: %s", reason, e)

    def _room(self) -> bool:
        """True when fewer than max_pending calls are in flight (finished ones are forgotten)."""
        if len(self._pending) < self.max_pending:
            return True
        done, self._pending = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
        return len(self._pending) < self.max_pending
