"""The API server actor: an `ObjectStore` behind async Ray methods, with long-poll watch.

Watchers call `watch(kinds, rv, timeout)` and get the events after `rv` as soon as
there are some (or an empty list after `timeout`); `Gone` tells them to relist.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from emulator.api.admission import ServiceAdmission, admit_namespace
from emulator.api.conditions import ready_status, with_kubelet_ready
from emulator.api.deletion import graceful_delete
from emulator.api.journal import Journal
from emulator.api.store import ApiError, Gone, ObjectStore
from emulator.api.waiters import Waiters, wait_keys


class ApiServer:
    """Objects with resourceVersion and watch; Service admission allocates addresses."""

    def __init__(self, service_range: str, journal_path: str | None = None) -> None:
        self.admission = ServiceAdmission(service_range)
        self.waiters = Waiters()
        self.restarts = 0
        if journal_path is None:
            self.store = ObjectStore()
            return
        # Durable: a restarted actor (Ray max_restarts) replays what it had.
        journal = Journal(journal_path)
        objs, rv = journal.replay()
        self.store = ObjectStore(journal=journal.append)
        self.store.restore(objs, rv)
        for o in objs:
            if o["kind"] == "Service":
                self.admission.restore(o)
        self.restarts = 1 if rv else 0

    def _notify(self, obj: dict | None) -> None:
        self.waiters.wake(obj)

    async def create(self, obj: dict) -> dict:
        """Create an object (Services are admitted: ClusterIP, node ports)."""
        if obj.get("kind") == "Service":
            self.admission.admit(obj, None)
        elif obj.get("kind") == "Namespace":
            admit_namespace(obj)
        out = self.store.create(obj)
        self._notify(out)
        return out

    async def apply(self, obj: dict) -> dict:
        """Create or replace (spec from `obj`, status kept when `obj` has none)."""
        meta = obj.get("metadata", {})
        old = self.store.get(obj["kind"], meta.get("namespace", "default"), meta["name"])
        if old is None:
            return await self.create(obj)
        if "status" not in obj and "status" in old:
            obj = {**obj, "status": old["status"]}
        if obj["kind"] == "Service":
            self.admission.admit(obj, old)
        elif obj["kind"] == "Namespace":
            admit_namespace(obj)
        out = self.store.update(obj)
        self._notify(out)
        return out

    async def renew_leases(self, leases: list[dict]) -> dict[str, str]:
        """Apply node Leases in one call (a node host's heartbeats); returns each existing
        Node's Ready status ("" without one), for the kubelets to post theirs."""
        out: dict[str, str] = {}
        for lease in leases:
            await self.apply(lease)
            name = lease["metadata"]["name"]
            node = self.store.get("Node", "", name)
            if node is not None:
                out[name] = ready_status(node) or ""
        return out

    async def post_nodes_ready(self, names: list[str]) -> list[str]:
        """The kubelets of a node host post Ready=True in one call, each for its Node if it says
        otherwise (after a lapse); returns the Nodes patched."""
        out = []
        for name in names:
            node = self.store.get("Node", "", name)
            if node is not None and ready_status(node) != "True":
                conds = node.get("status", {}).get("conditions", []) or []
                await self.patch_status("Node", "", name, {"conditions": with_kubelet_ready(conds)})
                out.append(name)
        return out

    async def update(self, obj: dict, expect_rv: str | None = None) -> dict:
        out = self.store.update(obj, expect_rv)
        self._notify(out)
        return out

    async def _patch(self, kind: str, namespace: str, name: str, fn) -> dict | None:
        """Apply `fn` to the stored object; None when it is gone."""
        try:
            out = self.store.patch(kind, namespace, name, fn)
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        self._notify(out)
        return out

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict | None:
        """Merge `status` keys into the object's status; None when it is gone."""
        return await self._patch(kind, namespace, name, lambda o: o.setdefault("status", {}).update(status))

    async def patch_metadata(self, kind: str, namespace: str, name: str, fields: dict) -> dict | None:
        """Merge metadata keys (labels, annotations, deletionTimestamp...)."""
        def fn(o: dict) -> None:
            for k, v in fields.items():
                if isinstance(v, dict) and isinstance(o["metadata"].get(k), dict):
                    o["metadata"][k].update(v)
                else:
                    o["metadata"][k] = v
        return await self._patch(kind, namespace, name, fn)

    async def delete(self, kind: str, namespace: str, name: str,
                     grace_period_seconds: int | None = None) -> dict | None:
        """Remove an object; a Pod on a node is deleted gracefully (deletion.py): it stays,
        Terminating, until its kubelet deletes it with grace 0. Returns the object."""
        if kind == "Pod":
            pod = self.store.get(kind, namespace, name)
            kept = None if pod is None else graceful_delete(pod, grace_period_seconds, time.time())
            if kept is not None:
                out = kept if kept == pod else self.store.update(kept)
                self._notify(out)
                return out
        out = self.store.delete(kind, namespace, name)
        if out is not None and kind == "Service":
            self.admission.release(out)
        self._notify(out)
        return out

    async def get(self, kind: str, namespace: str, name: str) -> dict | None:
        return self.store.get(kind, namespace, name)

    async def list(self, kind: str, namespace: str | None = None,
                   selector: dict | None = None, node_name: str | None = None) -> tuple[list[dict], int]:
        """Objects of a kind; `node_name` keeps Pods bound to that node."""
        field = None
        if node_name is not None:
            field = lambda o: o.get("spec", {}).get("nodeName") == node_name  # noqa: E731
        return self.store.list(kind, namespace, selector, field)

    async def resource_version(self) -> int:
        return self.store.resource_version

    async def last_event_rv(self, kinds: list[str]) -> int:
        """resourceVersion of the newest create/update/delete of these kinds (0 if none logged)."""
        return self.store.last_event_rv(kinds)

    async def timed_events(self, kind: str, since: float) -> list[tuple[float, str, dict]]:
        """(time, type, object) of the logged events of a kind since `since` (phase timelines)."""
        return self.store.timed_events(kind, since)

    async def watch(self, kinds: list[str], rv: int, timeout: float = 5.0,
                    node_name: str | None = None) -> dict[str, Any]:
        """Events after `rv` (waiting up to `timeout`): {"events": [...], "rv": int} or {"gone": True}."""
        deadline = asyncio.get_running_loop().time() + timeout
        keys = wait_keys(kinds, node_name)
        while True:
            try:
                events = self.store.events_since(rv, kinds)
            except Gone:
                return {"gone": True, "rv": self.store.resource_version}
            if events:
                out = [{"type": e.type, "kind": e.kind, "obj": e.obj} for e in events
                       if node_name is None or e.kind != "Pod"
                       or e.obj.get("spec", {}).get("nodeName") == node_name]
                return {"events": out, "rv": events[-1].rv}
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return {"events": [], "rv": self.store.resource_version}
            await self.waiters.wait(keys, remaining)

    async def ping(self) -> bool:
        return True
