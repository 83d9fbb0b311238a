"""The bundled Kubernetes schemas (kubernetes-validate's _definitions.json): lookup and OpenAPI docs."""
from __future__ import annotations

import copy
import functools
import hashlib
import importlib.resources
import json
from typing import Any

from emulator.config.manifests import KUBERNETES_VERSION
from emulator.kubeapi.resources import RESOURCES
from emulator.config.extra_kinds import BackendConfig

REF_PREFIX = "#/$defs/"


@functools.lru_cache(maxsize=1)
def definitions() -> dict[str, dict]:
    """Definition name -> JSON schema (with `#/$defs/` refs): Kubernetes' own and kubemu's extra kinds."""
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / \
        f"v{KUBERNETES_VERSION}.0-local"
    defs = json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))["$defs"]
    return {**defs, **extra_definitions()}


def _drop_null_any_of(x: Any) -> Any:
    """pydantic's `anyOf: [T, null]` for optional fields -> T."""
    if isinstance(x, list):
        return [_drop_null_any_of(v) for v in x]
    if not isinstance(x, dict):
        return x
    out = {k: _drop_null_any_of(v) for k, v in x.items()}
    alts = out.get("anyOf")
    if isinstance(alts, list):
        real = [a for a in alts if a != {"type": "null"}]
        if len(real) == 1:
            del out["anyOf"]
            out = {**real[0], **out}
    return out


def extra_definitions() -> dict[str, dict]:
    """Schemas of the kinds kubemu adds (BackendConfig), from their pydantic models."""
    prefix = "com.google.cloud.v1."
    schema = BackendConfig.model_json_schema(ref_template=REF_PREFIX + prefix + "{model}")
    out = {prefix + name: _drop_null_any_of(d) for name, d in schema.pop("$defs", {}).items()}
    schema = _drop_null_any_of(schema)
    schema["properties"]["metadata"] = {"$ref": REF_PREFIX + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    schema["x-kubernetes-group-version-kind"] = [{"group": "cloud.google.com", "version": "v1",
                                                  "kind": "BackendConfig"}]
    out[prefix + "BackendConfig"] = schema
    out.pop(prefix + "ObjectMeta", None)
    return out


def resolve(schema: dict | None) -> dict:
    """Follow `$ref` (and a one-element allOf) to the schema it names."""
    seen = 0
    while schema and seen < 20:
        ref = schema.get("$ref") or (schema.get("allOf") or [{}])[0].get("$ref")
        if not ref:
            return schema
        schema = definitions().get(ref[len(REF_PREFIX):])
        seen += 1
    return schema or {}


def definition(name: str) -> dict:
    """One definition by name ({} when unknown)."""
    return definitions().get(name, {})


def field_schema(schema: dict | None, key: str) -> dict:
    """Schema of property `key` of an object schema ({} when unknown)."""
    s = resolve(schema)
    prop = (s.get("properties") or {}).get(key)
    if prop is None:
        extra = s.get("additionalProperties")
        return extra if isinstance(extra, dict) else {}
    return prop


def items_schema(schema: dict | None) -> dict:
    """Schema of a list's items."""
    return resolve(schema).get("items") or (schema or {}).get("items") or {}


def patch_meta(schema: dict | None) -> tuple[str | None, str, list[str]]:
    """(merge key, strategy, list-map keys) of a list field: strategy '' means replace."""
    s = schema or {}
    return (s.get("x-kubernetes-patch-merge-key"), s.get("x-kubernetes-patch-strategy", ""),
            list(s.get("x-kubernetes-list-map-keys") or []))


def _v3(x: Any) -> Any:
    """JSON-schema fragment -> OpenAPI v3 schema fragment (refs, nullable types)."""
    if isinstance(x, list):
        return [_v3(v) for v in x]
    if not isinstance(x, dict):
        return x
    out = {}
    for k, v in x.items():
        if k == "$ref":
            out[k] = "#/components/schemas/" + v[len(REF_PREFIX):]
        elif k == "type" and isinstance(v, list):
            types = [t for t in v if t != "null"]
            out[k] = types[0] if types else "object"
        elif k == "enum" and isinstance(v, list):
            out[k] = [e for e in v if e is not None]
        elif k == "oneOf" and all(isinstance(o, dict) and set(o) == {"type"} for o in v):
            out["x-kubernetes-int-or-string"] = True
        elif k == "properties":
            out[k] = {p: _v3(s) for p, s in v.items()}
        else:
            out[k] = _v3(v)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}]
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def _refs(schema: Any, into: set[str]) -> None:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            name = ref[len(REF_PREFIX):]
            if name not in into:
                into.add(name)
                _refs(definitions().get(name), into)
        for v in schema.values():
            _refs(v, into)
    elif isinstance(schema, list):
        for v in schema:
            _refs(v, into)


def openapi_v3_path(group_version: str) -> str:
    """The /openapi/v3 path of a group version: api/v1, apis/apps/v1."""
    return "api/v1" if group_version == "v1" else f"apis/{group_version}"


@functools.lru_cache(maxsize=None)
def openapi_v3_document(group_version: str) -> bytes | None:
    """The OpenAPI v3 document of one group version (its kinds and what they use), as JSON bytes."""
    res = [r for r in RESOURCES if r.group_version == group_version and r.definition]
    if not res:
        return None
    names: set[str] = set()
    for r in res:
        names.add(r.definition)
        _refs(definitions().get(r.definition), names)
        names.add(r.definition + "List")
        _refs(definitions().get(r.definition + "List"), names)
    names |= {"io.k8s.apimachinery.pkg.apis.meta.v1.Status", "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"}
    for n in list(names):
        _refs(definitions().get(n), names)
    schemas = {n: _v3(copy.deepcopy(definitions()[n])) for n in sorted(names) if n in definitions()}
    paths = {}
    for r in res:
        paths.update(_resource_paths(group_version, r.group, r.version, r.kind, r.plural, r.definition, r.namespaced))
    doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
           "paths": paths, "components": {"schemas": schemas}}
    return json.dumps(doc).encode()


WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")


def _op(op_id: str, gvk: dict, action: str, ref: str | None, params: tuple[str, ...] = (),
        body_types: tuple[str, ...] = ()) -> dict:
    """One operation with the GVK extension kubectl's query-parameter check looks for."""
    out: dict[str, Any] = {"operationId": op_id, "x-kubernetes-action": action,
                           "x-kubernetes-group-version-kind": gvk,
                           "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}} for p in params],
                           "responses": {"200": {"description": "OK"}}}
    if ref:
        out["responses"]["200"]["content"] = {"application/json": {"schema": {"$ref": ref}}}
    if body_types:
        out["requestBody"] = {"content": {t: {"schema": {"$ref": ref} if ref else {"type": "object"}}
                                          for t in body_types}, "required": True}
    return out


def _resource_paths(gv: str, group: str, version: str, kind: str, plural: str, definition: str,
                    namespaced: bool) -> dict:
    """OpenAPI paths of one resource: list/create on the collection, get/replace/patch/delete on items."""
    base = f"/{openapi_v3_path(gv)}/" + ("namespaces/{namespace}/" if namespaced else "") + plural
    gvk = {"group": group, "version": version, "kind": kind}
    ref = f"#/components/schemas/{definition}"
    patch_types = ("application/json-patch+json", "application/merge-patch+json",
                   "application/strategic-merge-patch+json", "application/apply-patch+yaml")
    return {
        base: {"get": _op(f"list{kind}", gvk, "list", ref + "List", ("labelSelector", "fieldSelector", "limit",
                                                                        "continue", "watch", "resourceVersion")),
               "post": _op(f"create{kind}", gvk, "post", ref, WRITE_PARAMS, ("application/json",))},
        base + "/{name}": {
            "get": _op(f"read{kind}", gvk, "get", ref),
            "put": _op(f"replace{kind}", gvk, "put", ref, WRITE_PARAMS, ("application/json",)),
            "patch": _op(f"patch{kind}", gvk, "patch", ref, WRITE_PARAMS + ("force",), patch_types),
            "delete": _op(f"delete{kind}", gvk, "delete", None, ("dryRun", "gracePeriodSeconds",
                                                                   "propagationPolicy"))},
    }


def openapi_v3_index(prefix: str = "") -> dict:
    """The /openapi/v3 index: path -> serverRelativeURL with a content hash."""
    out = {}
    for gv in sorted({r.group_version for r in RESOURCES if r.definition}):
        doc = openapi_v3_document(gv)
        digest = hashlib.sha512(doc).hexdigest().upper()[:128]
        path = openapi_v3_path(gv)
        out[path] = {"serverRelativeURL": f"{prefix}/openapi/v3/{path}?hash={digest}"}
    return {"paths": out}
