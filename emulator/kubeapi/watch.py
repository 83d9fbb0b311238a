"""Watch streams: newline-delimited JSON events from a resourceVersion, with bookmarks and 410 Gone."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Mapping

from emulator.api.store import ApiError
from emulator.kubeapi import endpoints
from emulator.kubeapi.backend import StoreClient
from emulator.kubeapi.routes import Target, is_true
from emulator.kubeapi.selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from emulator.kubeapi.wire import status_object, to_wire

POLL = 5.0            # seconds per long-poll of the ApiServer
DEFAULT_TIMEOUT = 1800.0

Send = Callable[[dict], Awaitable[None]]


def gone_event(rv: Any, current: int) -> dict:
    """The ERROR event telling a watcher its resourceVersion is too old (relist)."""
    return {"type": "ERROR", "object": status_object(
        410, f"too old resource version: {rv} ({current})", "Expired")}


class Watcher:
    """Streams one watch request's events through `send` until the timeout or the client leaves."""

    def __init__(self, store: StoreClient, t: Target, q: Mapping[str, str],
                 wrap: Callable[[dict, bool], dict] | None = None) -> None:
        self.store = store
        self.t = t
        self.labels = parse_label_selector(q.get("labelSelector"))
        self.fields = parse_field_selector(q.get("fieldSelector"))
        self.rv = q.get("resourceVersion") or ""
        self.timeout = float(q.get("timeoutSeconds") or DEFAULT_TIMEOUT)
        self.bookmarks = is_true(q.get("allowWatchBookmarks"))
        self.initial_events = is_true(q.get("sendInitialEvents"))
        self.wrap = wrap or (lambda o, first: o)
        self._first = True
        self._seen: set[tuple[str, str]] = set()
        self._filtered = bool(self.labels or self.fields)
        self._knows = False      # whether _seen holds the whole selection (after an initial list)

    def _wanted(self, obj: dict) -> bool:
        meta = obj.get("metadata") or {}
        if self.t.namespace is not None and meta.get("namespace", "") != self.t.namespace:
            return False
        if self.t.name is not None and meta.get("name") != self.t.name:
            return False
        return labels_match(self.labels, meta.get("labels")) and fields_match(self.fields, obj)

    def _translate(self, typ: str, obj: dict) -> str | None:
        """The event a filtered watcher sees: an object leaving the selection is DELETED for it,
        one entering it is ADDED (as the API server's watch cache does); None: not for it."""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        now = self._wanted(obj)
        before = key in self._seen
        if typ == "DELETED":
            self._seen.discard(key)
            return typ if now or before else None
        if now:
            self._seen.add(key)
            return "ADDED" if typ == "MODIFIED" and not before and self._filtered and self._knows else typ
        self._seen.discard(key)
        return "DELETED" if before and typ == "MODIFIED" else None

    async def _emit(self, send: Send, typ: str, obj: dict) -> None:
        await send({"type": typ, "object": self.wrap(obj, self._first)})
        self._first = False

    async def run(self, send: Send, alive: Callable[[], bool] = lambda: True) -> None:
        """Initial ADDED events when no (or 0) resourceVersion, then changes until the timeout
        (or until `alive` says the client has gone)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        kind = self.t.resource.kind
        derived = kind == "Endpoints"
        if derived:
            kind = "EndpointSlice"
        if self.rv in ("", "0") or self.initial_events:
            objs, rv = await self.store.call("list", kind, self.t.namespace)
            if derived:
                objs = endpoints.endpoints_list([to_wire(o) for o in objs])
            for o in sorted(objs, key=lambda o: int(o["metadata"].get("resourceVersion", 0))):
                w = to_wire(o)
                if self._wanted(w):
                    self._seen.add((w["metadata"].get("namespace", ""), w["metadata"]["name"]))
                    await self._emit(send, "ADDED", w)
            self._knows = True
            if self.initial_events and self.bookmarks:
                await self._bookmark(send, rv, initial=True)
        else:
            try:
                rv = int(self.rv)
            except ValueError:
                await send({"type": "ERROR", "object": status_object(400, f"invalid resourceVersion {self.rv!r}",
                                                                     "BadRequest")})
                return
        while (remaining := deadline - loop.time()) > 0 and alive():
            try:
                out = await self.store.call("watch", [kind], rv, min(POLL, remaining))
            except ApiError as e:
                if e.code == 410:
                    out = {"gone": True, "rv": rv}
                else:
                    raise
            if out.get("gone"):
                await send(gone_event(rv, out.get("rv", 0)))
                return
            events = out["events"]
            if derived:
                events = await self._endpoints_events(events)
            for e in events:
                obj = to_wire(e["obj"])
                typ = self._translate(e["type"], obj)
                if typ is not None:
                    await self._emit(send, typ, obj)
            rv = out["rv"]
            if not out["events"] and self.bookmarks:
                await self._bookmark(send, rv)

    async def _endpoints_events(self, events: list[dict]) -> list[dict]:
        """EndpointSlice events as the Endpoints events they cause (one per Service touched)."""
        out = []
        touched = dict.fromkeys(((e["obj"].get("metadata") or {}).get("namespace", ""), endpoints.service_of(e["obj"]))
                                for e in events)
        for ns, svc in touched:
            if not svc:
                continue
            objs, _ = await self.store.call("list", "EndpointSlice", ns)
            slices = [to_wire(o) for o in objs if endpoints.service_of(o) == svc]
            if slices:
                ep = endpoints.endpoints_from_slices(ns, svc, slices)
                out.append({"type": "MODIFIED" if (ns, svc) in self._seen else "ADDED", "obj": ep})
            else:
                ep = endpoints.endpoints_from_slices(ns, svc, [e["obj"] for e in events
                                                              if endpoints.service_of(e["obj"]) == svc][-1:])
                out.append({"type": "DELETED", "obj": ep})
        return out

    async def _bookmark(self, send: Send, rv: int, initial: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        await send({"type": "BOOKMARK", "object": {"kind": self.t.resource.kind,
                                                   "apiVersion": self.t.resource.group_version, "metadata": meta}})


def encode_event(ev: dict) -> bytes:
    """One event line."""
    return json.dumps(ev, separators=(",", ":")).encode() + b"\n"
