"""Reads and writes of resources against the ApiServer: get, list, create, update, patch, delete,
and the status and scale subresources. Objects go in and out in wire form (wire.py)."""
from __future__ import annotations

import copy
import uuid
from typing import Any, Mapping

from emulator.api.store import ApiError
from emulator.kubeapi import endpoints
from emulator.kubeapi import patch as patches
from emulator.kubeapi import schemas, ssa, validation
from emulator.kubeapi.backend import StoreClient
from emulator.kubeapi.printers import format_selector
from emulator.kubeapi.resources import RESOURCES, Resource, by_kind
from emulator.kubeapi.routes import Target, decode_continue, encode_continue, is_true
from emulator.kubeapi.selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from emulator.kubeapi.wire import (StatusError, already_exists, conflict, from_wire, invalid, not_found,
                                   to_wire)

ADMITTED = ("Service", "Namespace")
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")          # writes through ApiServer.apply (admission runs)
DEPENDENT_KINDS = ("ReplicaSet", "Pod", "EndpointSlice")


PATCH_RETRIES = 5


def _patch_names_rv(ctype: str, body: Any) -> bool:
    """The patch itself pins a resourceVersion (then a conflict is the client's to handle)."""
    if isinstance(body, dict):
        return bool((body.get("metadata") or {}).get("resourceVersion"))
    if isinstance(body, list):
        return any(isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion" for op in body)
    return False


def _key(o: dict) -> str:
    m = o.get("metadata") or {}
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def _schema(res: Resource) -> dict | None:
    return schemas.definition(res.definition) if res.definition else None


class Crud:
    """The resource verbs; `warnings` collects Warning headers for the current request."""

    def __init__(self, store: StoreClient) -> None:
        self.store = store

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await self.store.call(method, *args)
        except ApiError as e:
            raise StatusError(e.code if e.code < 600 else 500, str(e).split(": ", 1)[-1]) from None

    async def fetch(self, t: Target, name: str | None = None) -> dict:
        """The stored object (wire form) or 404."""
        name = name or t.name
        if t.resource.kind == "Endpoints":
            slices = [s for s in await self.slices(t.namespace) if endpoints.service_of(s) == name]
            if not slices:
                raise not_found(t.resource.plural, name or "", t.resource.group)
            return endpoints.endpoints_from_slices(t.namespace or "", name or "", slices)
        obj = await self._call("get", t.resource.kind, t.namespace or "", name)
        if obj is None:
            raise not_found(t.resource.plural, name, t.resource.group)
        return to_wire(obj)

    async def list(self, t: Target, q: Mapping[str, str]) -> tuple[list[dict], int, str]:
        """(objects in wire form, resourceVersion, continue token) honouring selectors and limit."""
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"))
        if t.resource.kind == "Endpoints":
            objs = endpoints.endpoints_list(await self.slices(t.namespace))
            rv = await self._call("resource_version")
        else:
            objs, rv = await self._call("list", t.resource.kind, t.namespace)
        objs = sorted((to_wire(o) for o in objs), key=_key)
        objs = [o for o in objs if labels_match(labels, o["metadata"].get("labels")) and fields_match(fields, o)]
        after = ""
        if q.get("continue"):
            rv_c, after = decode_continue(q["continue"])
            objs = [o for o in objs if _key(o) > after]
        limit = int(q.get("limit") or 0)
        token = ""
        if limit > 0 and len(objs) > limit:
            objs = objs[:limit]
            token = encode_continue(rv, _key(objs[-1]))
        return objs, rv, token

    async def slices(self, namespace: str | None) -> list[dict]:
        """EndpointSlices (wire form) of a namespace, or all."""
        objs, _ = await self._call("list", "EndpointSlice", namespace)
        return [to_wire(o) for o in objs]

    def list_object(self, res: Resource, objs: list[dict], rv: int, token: str) -> dict:
        """A <Kind>List."""
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
        return {"kind": f"{res.kind}List", "apiVersion": res.group_version, "metadata": meta, "items": objs}

    def _check(self, res: Resource, obj: dict, old: dict | None, q: Mapping[str, str]) -> tuple[dict, list[str]]:
        """Validate a new version of an object: (object, warnings); 400 for unknown fields when strict, 422."""
        unknown, causes = validation.problems(obj)
        if old is not None:     # only what this request introduced
            old_unknown, old_causes = validation.problems(old)
            unknown = [u for u in unknown if u not in old_unknown]
            causes = [c for c in causes if c not in old_causes]
        name = obj.get("metadata", {}).get("name", "")
        if causes:
            raise invalid(res.kind, name, res.group, causes)
        mode = q.get("fieldValidation", "Warn")
        if unknown and mode == "Strict":
            text = ", ".join(f'unknown field "{validation.path_text(u)}"' for u in unknown)
            raise StatusError(400, f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: "
                              f"strict decoding error: {text}", "BadRequest")
        warnings = [f'unknown field "{validation.path_text(u)}"' for u in unknown] if mode == "Warn" else []
        validation.drop_fields(obj, unknown)
        return obj, warnings

    def _identity(self, t: Target, obj: Any, name: str | None) -> dict:
        """Check kind/apiVersion/namespace of a body against the URL; fill them in."""
        res = t.resource
        if not isinstance(obj, dict):
            raise StatusError(400, "the body of the request was not a JSON object")
        if obj.get("kind") not in (None, res.kind) or obj.get("apiVersion") not in (None, res.group_version):
            raise StatusError(400, f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                              f"expected API version ({res.group_version})")
        obj = copy.deepcopy(obj)
        obj["kind"], obj["apiVersion"] = res.kind, res.group_version
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace") not in (None, "", t.namespace):
                raise StatusError(400, "the namespace of the provided object does not match the namespace "
                                  "sent on the request")
            meta["namespace"] = t.namespace
        else:
            meta.pop("namespace", None)
        if name is not None and meta.get("name") not in (None, name):
            raise StatusError(400, "the name of the object does not match the name on the URL")
        if name is not None:
            meta["name"] = name
        return obj

    async def create(self, t: Target, body: Any, q: Mapping[str, str], manager: str) -> tuple[dict, list[str]]:
        """POST: a new object (generateName, validation, admission)."""
        obj = self._identity(t, body, None)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        for k in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp", "generation", "managedFields"):
            meta.pop(k, None)
        if "status" in t.resource.subresources:     # clients do not set status on create
            obj.pop("status", None)
        obj, warnings = self._check(t.resource, obj, None, q)
        await self._namespace_exists(t)
        obj = ssa.record_update(None, obj, manager, _schema(t.resource))
        return await self._store_create(t, obj, q), warnings

    async def _namespace_exists(self, t: Target) -> None:
        """404 for a namespace that is not there (the built-in ones always are)."""
        if t.namespace is None or t.namespace in BUILTIN_NAMESPACES:
            return
        if await self._call("get", "Namespace", "", t.namespace) is None:
            raise not_found("namespaces", t.namespace)

    async def _store_create(self, t: Target, obj: dict, q: Mapping[str, str]) -> dict:
        if q.get("dryRun"):
            existing = await self._call("get", t.resource.kind, t.namespace or "", obj["metadata"]["name"])
            if existing is not None:
                raise already_exists(t.resource.plural, obj["metadata"]["name"], t.resource.group)
            return obj
        try:
            out = await self.store.call("create", from_wire(obj))
        except ApiError as e:
            if e.code == 409:
                raise already_exists(t.resource.plural, obj["metadata"]["name"], t.resource.group) from None
            raise invalid(t.resource.kind, obj["metadata"]["name"], t.resource.group,
                          [validation.cause("spec", "FieldValueInvalid", str(e).split(": ", 1)[-1])]) from None
        return to_wire(out)

    async def write(self, t: Target, old: dict, new: dict, q: Mapping[str, str], manager: str,
                    expect_rv: str | None = None, managed: list | None = None) -> tuple[dict, list[str]]:
        """Store a new version of an existing object (status kept unless this is the status subresource)."""
        res = t.resource
        new = self._identity(t, new, old["metadata"]["name"])
        meta = new["metadata"]
        for k in ("uid", "creationTimestamp"):
            meta[k] = old["metadata"].get(k)
        if "deletionTimestamp" in old["metadata"]:
            meta["deletionTimestamp"] = old["metadata"]["deletionTimestamp"]
        if t.sub == "status":
            new = {**old, "status": new.get("status", {})}
        elif "status" in res.subresources or "status" in old:
            new["status"] = old.get("status", {})
            if not new["status"]:
                new.pop("status")
        new, warnings = self._check(res, new, old, q)
        if managed is not None:      # server-side apply computed them
            new["metadata"]["managedFields"] = managed
        elif t.sub != "status":
            new = ssa.record_update(old, new, manager, _schema(res))
        else:
            new["metadata"]["managedFields"] = old["metadata"].get("managedFields", [])
        if expect_rv and expect_rv != old["metadata"].get("resourceVersion"):
            raise conflict(res.plural, old["metadata"]["name"], res.group)
        if q.get("dryRun"):
            return new, warnings
        stored = from_wire(new)
        try:
            if res.kind in ADMITTED:
                if t.sub != "status":
                    stored.pop("status", None)    # ApiServer.apply keeps the stored one
                out = await self.store.call("apply", stored)
            else:
                out = await self.store.call("update", stored, old["metadata"]["resourceVersion"])
        except ApiError as e:
            if e.code == 409:
                raise conflict(res.plural, old["metadata"]["name"], res.group) from None
            if e.code == 404:
                raise not_found(res.plural, old["metadata"]["name"], res.group) from None
            raise invalid(res.kind, old["metadata"]["name"], res.group,
                          [validation.cause("spec", "FieldValueInvalid", str(e).split(": ", 1)[-1])]) from None
        return to_wire(out), warnings

    async def update(self, t: Target, body: Any, q: Mapping[str, str], manager: str) -> tuple[dict, list[str]]:
        """PUT of an object or its status."""
        old = await self.fetch(t)
        rv = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        return await self.write(t, old, body, q, manager, rv)

    async def patch(self, t: Target, ctype: str, body: Any, q: Mapping[str, str], manager: str) -> tuple[dict, list[str]]:
        """PATCH by content type; like the API server, retried when a controller wrote in between."""
        for attempt in range(PATCH_RETRIES):
            try:
                return await self._patch_once(t, ctype, body, q, manager)
            except StatusError as e:
                if e.reason != "Conflict" or e.details is None or e.details.get("causes") \
                        or _patch_names_rv(ctype, body) or attempt == PATCH_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _patch_once(self, t: Target, ctype: str, body: Any, q: Mapping[str, str],
                          manager: str) -> tuple[dict, list[str]]:
        res = t.resource
        if ctype == patches.APPLY:
            return await self._apply(t, body, q, manager)
        old = await self.fetch(t)
        if ctype == patches.JSON_PATCH:
            new = patches.json_patch(old, body)
        elif ctype == patches.MERGE_PATCH:
            new = patches.merge_patch(old, body)
        elif ctype == patches.STRATEGIC:
            if not res.definition:
                raise StatusError(415, "strategic merge patch is not supported for this resource", "UnsupportedMediaType")
            new = patches.strategic_merge(old, body, _schema(res))
        else:
            raise StatusError(415, f"the body of the request was in an unknown format - accepted media types "
                              f"include: {patches.JSON_PATCH}, {patches.MERGE_PATCH}, {patches.APPLY}, "
                              f"{patches.STRATEGIC}", "UnsupportedMediaType")
        if not isinstance(new, dict):
            raise StatusError(422, "the patch does not leave an object")
        rv = (new.get("metadata") or {}).get("resourceVersion")
        expect = rv if rv != old["metadata"].get("resourceVersion") else None
        return await self.write(t, old, new, q, manager, expect)

    async def _apply(self, t: Target, body: Any, q: Mapping[str, str], manager: str) -> tuple[dict, list[str]]:
        """Server-side apply (create when missing)."""
        if not q.get("fieldManager"):
            raise StatusError(400, "PATCH, application/apply-patch+yaml requires fieldManager to be set")
        res = t.resource
        applied = self._identity(t, body, t.name)
        try:
            old = await self.fetch(t)
        except StatusError as e:
            if e.code != 404:
                raise
            old = None
        new = ssa.apply(old, applied, q["fieldManager"], is_true(q.get("force")), _schema(res))
        if old is None:
            new, warnings = self._check(res, new, None, q)
            await self._namespace_exists(t)
            return await self._store_create(t, new, q), warnings
        return await self.write(t, old, new, q, q["fieldManager"], None, new["metadata"]["managedFields"])

    async def delete(self, t: Target, opts: dict, q: Mapping[str, str]) -> dict:
        """DELETE: grace period for bound Pods, dependents by ownerReferences (Background/Foreground/Orphan)."""
        obj = await self.fetch(t)
        pre = (opts.get("preconditions") or {})
        if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise conflict(t.resource.plural, t.name, t.resource.group, "the ResourceVersion in the precondition "
                           "does not match the ResourceVersion in record")
        if q.get("dryRun") or opts.get("dryRun"):
            return obj
        policy = opts.get("propagationPolicy") or q.get("propagationPolicy") or "Background"
        grace = opts.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
        return await self._delete_one(obj, policy, None if grace is None else int(grace))

    async def _delete_one(self, obj: dict, policy: str, grace: int | None) -> dict:
        kind, meta = obj["kind"], obj["metadata"]
        ns = meta.get("namespace", "")
        if kind == "Namespace":     # the namespace controller's job: everything in it goes
            await self._empty_namespace(meta["name"])
        if policy != "Orphan":
            await self._delete_dependents(obj, policy)
        else:
            await self._orphan_dependents(obj)
        # A Pod on a node is deleted gracefully by the API server (emulator/api/deletion.py):
        # it stays Terminating until its kubelet removes it; grace 0 (--force) removes it now.
        out = await self._call("delete", kind, ns, meta["name"], grace if kind == "Pod" else None)
        if out is None:
            raise not_found(by_kind(kind).plural, meta["name"], by_kind(kind).group)
        return to_wire(out)

    async def _empty_namespace(self, namespace: str) -> None:
        for res in RESOURCES:
            if not res.namespaced:
                continue
            objs, _ = await self._call("list", res.kind, namespace)
            for o in objs:
                try:
                    await self._delete_one(to_wire(o), "Background", None)
                except StatusError as e:
                    if e.code != 404:
                        raise

    async def _dependents(self, obj: dict) -> list[dict]:
        uid, ns = obj["metadata"].get("uid"), obj["metadata"].get("namespace")
        out = []
        for kind in DEPENDENT_KINDS:
            objs, _ = await self._call("list", kind, ns)
            out += [to_wire(o) for o in objs if any(r.get("uid") == uid for r in
                                                    o["metadata"].get("ownerReferences") or [])]
        return out

    async def _delete_dependents(self, obj: dict, policy: str) -> None:
        for dep in await self._dependents(obj):
            try:
                await self._delete_one(dep, policy, None)
            except StatusError as e:
                if e.code != 404:
                    raise

    async def _orphan_dependents(self, obj: dict) -> None:
        uid = obj["metadata"].get("uid")
        for dep in await self._dependents(obj):
            refs = [r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            m = dep["metadata"]
            await self._call("patch_metadata", dep["kind"], m.get("namespace", ""), m["name"],
                             {"ownerReferences": refs})

    def scale_of(self, obj: dict) -> dict:
        """autoscaling/v1 Scale of a Deployment or ReplicaSet."""
        m = obj["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                             if k in m},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": format_selector((obj.get("spec") or {}).get("selector")).replace("<none>", "")}}

    async def write_scale(self, t: Target, ctype: str | None, body: Any, q: Mapping[str, str],
                          manager: str) -> dict:
        """PUT or PATCH of the scale subresource; retried when a controller wrote in between,
        unless the client pinned a resourceVersion."""
        pinned = ctype is None and bool(((body or {}).get("metadata") or {}).get("resourceVersion"))
        for attempt in range(PATCH_RETRIES):
            try:
                return await self._write_scale_once(t, ctype, body, q, manager)
            except StatusError as e:
                if e.reason != "Conflict" or pinned or attempt == PATCH_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _write_scale_once(self, t: Target, ctype: str | None, body: Any, q: Mapping[str, str],
                                manager: str) -> dict:
        old = await self.fetch(t)
        scale = self.scale_of(old)
        if ctype is None:
            new_scale = body
        elif ctype == patches.JSON_PATCH:
            new_scale = patches.json_patch(scale, body)
        elif ctype in (patches.MERGE_PATCH, patches.STRATEGIC):
            new_scale = patches.merge_patch(scale, body)
        else:
            raise StatusError(415, f"unsupported patch type {ctype} for scale", "UnsupportedMediaType")
        replicas = ((new_scale or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid("Scale", t.name or "", "autoscaling", [validation.cause(
                "spec.replicas", "FieldValueInvalid", f"Invalid value: {replicas}: must be greater than or equal to 0")])
        rv = ((new_scale.get("metadata") or {}).get("resourceVersion")) if ctype is None else None
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["replicas"] = replicas
        main = Target(t.resource, t.namespace, t.name, None)
        out, _ = await self.write(main, old, new, q, manager, rv)
        return self.scale_of(out)
