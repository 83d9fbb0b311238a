"""The API server's pure core: Kubernetes-style objects with resourceVersion and watch.

Objects are plain dicts (as in the Kubernetes API). Every write bumps one global
resourceVersion and appends an event to a bounded log; a watcher asks for the events
after the resourceVersion it last saw, and relists when that is too old (410 Gone).
"""
from __future__ import annotations

import copy
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from emulator.errors import KubemuError

NAMESPACED = {"Pod", "Service", "EndpointSlice", "Deployment", "ReplicaSet", "NetworkPolicy",
              "Ingress", "BackendConfig", "Secret", "Lease", "Event"}


class ApiError(KubemuError):
    """An API request that cannot be served; `code` is the HTTP-like status."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

    def __reduce__(self) -> tuple:
        """Pickle by (code, message), so the error crosses Ray intact."""
        return (ApiError, (self.code, self.message))


class Gone(ApiError):
    """The requested resourceVersion is older than the event log: relist."""

    def __init__(self, rv: int) -> None:
        self.rv = rv
        super().__init__(410, f"resourceVersion {rv} is too old")

    def __reduce__(self) -> tuple:
        return (Gone, (self.rv,))


@dataclass(frozen=True)
class WatchEvent:
    """One change: type is ADDED, MODIFIED or DELETED; obj is the object after it."""

    rv: int
    type: str
    kind: str
    obj: dict
    at: float = 0.0   # when it happened (epoch seconds)


Key = tuple[str, str, str]


def key_of(obj: dict) -> Key:
    """(kind, namespace, name) of an object; cluster-scoped kinds have namespace ''."""
    kind = obj["kind"]
    meta = obj.get("metadata", {})
    ns = meta.get("namespace", "default") if kind in NAMESPACED else ""
    return kind, ns, meta["name"]


def labels_match(selector: dict | None, labels: dict | None) -> bool:
    """matchLabels-style selector: every key/value must be present (empty matches all)."""
    labels = labels or {}
    return all(labels.get(k) == v for k, v in (selector or {}).items())


class ObjectStore:
    """In-memory objects + resourceVersion + event log; no I/O, no threads."""

    def __init__(self, log_size: int = 100_000, clock: Callable[[], float] = time.time,
                 journal: Callable[[WatchEvent], None] | None = None) -> None:
        self._objs: dict[Key, dict] = {}
        self._rv = 0
        self._log: deque[WatchEvent] = deque(maxlen=log_size)
        self._clock = clock
        self._journal = journal

    def restore(self, objs: Iterable[dict], rv: int) -> None:
        """Start from saved objects at resourceVersion `rv`; the event log starts empty, so
        watchers from before get Gone and relist."""
        self._objs = {key_of(o): copy.deepcopy(o) for o in objs}
        self._rv = rv
        self._log.clear()

    @property
    def resource_version(self) -> int:
        return self._rv

    def _record(self, type_: str, obj: dict) -> dict:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        event = WatchEvent(self._rv, type_, obj["kind"], copy.deepcopy(obj), self._clock())
        self._log.append(event)
        if self._journal is not None:
            self._journal(event)
        return copy.deepcopy(obj)

    def create(self, obj: dict) -> dict:
        """Store a new object; 409 when it exists."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if obj["kind"] in NAMESPACED:
            meta.setdefault("namespace", "default")
        k = key_of(obj)
        if k in self._objs:
            raise ApiError(409, f"{k[0]} {k[1]}/{k[2]} already exists")
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", self._clock())
        meta.setdefault("generation", 1)
        self._objs[k] = obj
        return self._record("ADDED", obj)

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        obj = self._objs.get((kind, namespace if kind in NAMESPACED else "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def update(self, obj: dict, expect_rv: str | None = None) -> dict:
        """Replace an object (optimistic concurrency when expect_rv is given)."""
        obj = copy.deepcopy(obj)
        if obj["kind"] in NAMESPACED:
            obj["metadata"].setdefault("namespace", "default")
        k = key_of(obj)
        old = self._objs.get(k)
        if old is None:
            raise ApiError(404, f"{k[0]} {k[1]}/{k[2]} not found")
        if expect_rv is not None and old["metadata"]["resourceVersion"] != expect_rv:
            raise ApiError(409, f"{k[0]} {k[1]}/{k[2]} was modified")
        for field in ("uid", "creationTimestamp"):
            obj["metadata"][field] = old["metadata"][field]
        gen = old["metadata"].get("generation", 1)
        if obj.get("spec") != old.get("spec"):
            gen += 1
        obj["metadata"]["generation"] = gen
        if obj == old:
            return copy.deepcopy(old)
        self._objs[k] = obj
        return self._record("MODIFIED", obj)

    def patch(self, kind: str, namespace: str, name: str, fn: Callable[[dict], Any]) -> dict:
        """Apply `fn` to a copy of the object in place and store the result."""
        obj = self.get(kind, namespace, name)
        if obj is None:
            raise ApiError(404, f"{kind} {namespace}/{name} not found")
        fn(obj)
        return self.update(obj)

    def delete(self, kind: str, namespace: str, name: str) -> dict | None:
        """Remove an object; returns it, or None when it did not exist."""
        obj = self._objs.pop((kind, namespace if kind in NAMESPACED else "", name), None)
        if obj is None:
            return None
        return self._record("DELETED", obj)

    def list(self, kind: str, namespace: str | None = None, selector: dict | None = None,
             field: Callable[[dict], bool] | None = None) -> tuple[list[dict], int]:
        """Objects of a kind (optionally one namespace, label selector, predicate) + rv."""
        out = []
        for (k, ns, _), obj in self._objs.items():
            if k != kind or (namespace is not None and ns != namespace):
                continue
            if selector and not labels_match(selector, obj["metadata"].get("labels")):
                continue
            if field is not None and not field(obj):
                continue
            out.append(copy.deepcopy(obj))
        return out, self._rv

    def last_event_rv(self, kinds: Iterable[str]) -> int:
        """resourceVersion of the newest event of these kinds still in the log (deletions
        included, which no listed object shows), or 0."""
        kinds = set(kinds)
        for e in reversed(self._log):
            if e.kind in kinds:
                return e.rv
        return 0

    def timed_events(self, kind: str, since: float) -> list[tuple[float, str, dict]]:
        """(time, type, object) of the logged events of a kind at or after `since`."""
        return [(e.at, e.type, copy.deepcopy(e.obj)) for e in self._log if e.kind == kind and e.at >= since]

    def events_since(self, rv: int, kinds: Iterable[str] | None = None) -> list[WatchEvent]:
        """Events after `rv` for the given kinds; raises Gone when the log lost some."""
        if rv > self._rv:
            return []
        if self._log and rv < self._log[0].rv - 1 or (not self._log and rv < self._rv):
            raise Gone(rv)
        kinds = set(kinds) if kinds else None
        out = []
        for e in reversed(self._log):
            if e.rv <= rv:
                break
            if kinds is None or e.kind in kinds:
                out.append(e)
        out.reverse()
        return out
