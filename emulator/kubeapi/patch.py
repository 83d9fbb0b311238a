"""Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386), Kubernetes strategic merge patch.

Strategic merge follows k8s.io/apimachinery/pkg/util/strategicpatch: lists with a patch
merge key merge element by element, `$patch` (replace/delete/merge), `$retainKeys`,
`$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` directives; the merge keys
come from the bundled schemas.
"""
from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from emulator.kubeapi import schemas
from emulator.kubeapi.wire import StatusError

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
DIRECTIVE = "$patch"
RETAIN = "$retainKeys"
ORDER = "$setElementOrder/"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def json_patch(obj: dict, ops: Any) -> dict:
    """RFC 6902 operations on `obj`; 422 when an operation fails (as the API server)."""
    if not isinstance(ops, list):
        raise StatusError(400, "json patch must be a list of operations")
    try:
        return jsonpatch.JsonPatch(ops).apply(obj)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as e:
        raise StatusError(422, f"the server rejected our request due to an error in our request: {e}") from None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge(original: dict, patch: dict, schema: dict | None) -> dict:
    """Kubernetes strategic merge patch of `original` with `patch` (schema gives merge keys)."""
    if not isinstance(patch, dict):
        raise StatusError(400, "strategic merge patch must be a JSON object")
    return _merge_map(copy.deepcopy(original) if isinstance(original, dict) else {}, patch, schema)


def _merge_map(orig: dict, patch: dict, schema: dict | None) -> dict:
    directive = patch.get(DIRECTIVE)
    if directive == "replace":
        return {k: v for k, v in patch.items() if k != DIRECTIVE}
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise StatusError(400, f"unknown patch directive {directive!r}")
    retain = patch.get(RETAIN)
    if retain is not None:
        orig = {k: v for k, v in orig.items() if k in retain}
    orders = {k[len(ORDER):]: v for k, v in patch.items() if k.startswith(ORDER)}
    for k, v in patch.items():
        if k.startswith(DELETE_PRIMITIVE):
            field = k[len(DELETE_PRIMITIVE):]
            if isinstance(orig.get(field), list):
                orig[field] = [x for x in orig[field] if x not in v]
    for k, v in patch.items():
        if k in (DIRECTIVE, RETAIN) or k.startswith(ORDER) or k.startswith(DELETE_PRIMITIVE):
            continue
        sub = schemas.field_schema(schema, k)
        if v is None:
            orig.pop(k, None)
        elif isinstance(v, dict) and isinstance(orig.get(k), dict):
            merged = _merge_map(orig[k], v, sub)
            if v.get(DIRECTIVE) == "delete":
                orig.pop(k, None)
            else:
                orig[k] = merged
        elif isinstance(v, dict):
            if v.get(DIRECTIVE) != "delete":
                orig[k] = _merge_map({}, v, sub)
        elif isinstance(v, list):
            orig[k] = _merge_list(orig.get(k) if isinstance(orig.get(k), list) else [], v, sub)
        else:
            orig[k] = copy.deepcopy(v)
    for field, order in orders.items():
        if isinstance(orig.get(field), list):
            merge_key, _, _ = schemas.patch_meta(schemas.field_schema(schema, field))
            orig[field] = _reorder(orig[field], order, merge_key)
    return orig


def _strip(x: Any) -> Any:
    """A patch value without directives (for values added whole)."""
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items()
                if k not in (DIRECTIVE, RETAIN) and not k.startswith(ORDER) and not k.startswith(DELETE_PRIMITIVE)}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _merge_list(orig: list, patch: list, schema: dict | None) -> list:
    merge_key, strategy, _ = schemas.patch_meta(schema)
    if any(isinstance(p, dict) and p.get(DIRECTIVE) == "replace" for p in patch):
        return [_strip(p) for p in patch if not (isinstance(p, dict) and p.get(DIRECTIVE) == "replace")]
    if "merge" not in strategy.split(","):
        return _strip(patch)
    if not patch or not isinstance(patch[0], dict):
        return orig + [p for p in patch if p not in orig]      # primitive list: union
    if not merge_key:
        return _strip(patch)
    out = list(orig)
    item_schema = schemas.items_schema(schema)
    for p in patch:
        if not isinstance(p, dict) or merge_key not in p:
            raise StatusError(400, f"map in a merging list lacks the merge key {merge_key!r}")
        idx = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(merge_key) == p[merge_key]), None)
        if p.get(DIRECTIVE) == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_merge_map({}, p, item_schema))
        else:
            out[idx] = _merge_map(out[idx], p, item_schema)
    return out


def _reorder(items: list, order: list, merge_key: str | None) -> list:
    """Order `items` as `$setElementOrder` says; items it does not name keep their place at the end."""
    def key(x: Any) -> Any:
        return x.get(merge_key) if merge_key and isinstance(x, dict) else x
    ranked = {json_key(k if not isinstance(k, dict) else k.get(merge_key)): i for i, k in enumerate(order)}
    named = sorted((x for x in items if json_key(key(x)) in ranked), key=lambda x: ranked[json_key(key(x))])
    return named + [x for x in items if json_key(key(x)) not in ranked]


def json_key(x: Any) -> str:
    """A hashable form of a merge-key value."""
    return repr(x)
