"""Field sets as server-side apply tracks them: paths into an object, and their fieldsV1 form.

A path is a tuple of steps: ("f", key) a map field, ("k", '{"name":"web"}') a list-map
element by its keys, ("v", '80') a set element. The keys of list maps come from the schemas
(x-kubernetes-list-map-keys, else the patch merge key); other lists are atomic.
"""
from __future__ import annotations

import json
from typing import Any

from emulator.kubeapi import schemas

Path = tuple[tuple[str, str], ...]
META_TRACKED = ("labels", "annotations", "finalizers", "ownerReferences")
_MISSING = object()


def _list_keys(schema: dict) -> list[str]:
    merge_key, _, map_keys = schemas.patch_meta(schema)
    return map_keys or ([merge_key] if merge_key else [])


def _key_text(item: dict, keys: list[str]) -> str:
    return json.dumps({k: item[k] for k in keys if k in item}, sort_keys=True, separators=(",", ":"))


def field_set(obj: dict, schema: dict | None) -> set[Path]:
    """Every path the object sets (intermediate ones included); identity fields and status left out."""
    out: set[Path] = set()

    def walk(x: Any, s: dict | None, prefix: Path) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                p = prefix + (("f", k),)
                out.add(p)
                walk(v, schemas.field_schema(s, k), p)
        elif isinstance(x, list):
            rs = s or {}
            keys = _list_keys(rs)
            if keys and x and all(isinstance(i, dict) for i in x):
                for item in x:
                    p = prefix + (("k", _key_text(item, keys)),)
                    out.add(p)
                    walk(item, schemas.items_schema(rs), p)
            elif rs.get("x-kubernetes-list-type") == "set" or (
                    "merge" in rs.get("x-kubernetes-patch-strategy", "") and not keys):
                for v in x:
                    out.add(prefix + (("v", json.dumps(v, sort_keys=True)),))

    for k, v in obj.items():
        if k in ("apiVersion", "kind", "status"):
            continue
        if k == "metadata":
            for mk in META_TRACKED:
                if mk in (v or {}):
                    p: Path = (("f", "metadata"), ("f", mk))
                    out.add((("f", "metadata"),))
                    out.add(p)
                    walk(v[mk], schemas.field_schema(schemas.definition(
                        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), mk), p)
            continue
        out.add((("f", k),))
        walk(v, schemas.field_schema(schema, k), (("f", k),))
    return out


def leaves(paths: set[Path]) -> set[Path]:
    """Paths that no other path extends."""
    parents = {p[:i] for p in paths for i in range(1, len(p))}
    return {p for p in paths if p not in parents}


def to_fields_v1(paths: set[Path]) -> dict:
    """The fieldsV1 form: {"f:spec": {"f:ports": {".": {}, 'k:{"port":80}': {...}}}}."""
    root: dict = {}
    parents = {p[:i] for p in paths for i in range(1, len(p))}
    for p in sorted(paths):
        node = root
        for kind, key in p:
            node = node.setdefault(f"{kind}:{key}", {})
        if p in parents and len(p) >= 2:
            node["."] = {}
    return root


def from_fields_v1(tree: dict | None) -> set[Path]:
    """Paths from a fieldsV1 tree."""
    out: set[Path] = set()

    def walk(node: dict, prefix: Path) -> None:
        for k, v in (node or {}).items():
            if k == ".":
                if prefix:
                    out.add(prefix)
                continue
            kind, _, key = k.partition(":")
            p = prefix + ((kind, key),)
            out.add(p)
            walk(v or {}, p)

    walk(tree or {}, ())
    return out


def value_at(obj: Any, path: Path) -> Any:
    """The value a path points at, or _MISSING."""
    x = obj
    for kind, key in path:
        if kind == "f":
            if not isinstance(x, dict) or key not in x:
                return _MISSING
            x = x[key]
        elif kind == "k":
            want = json.loads(key)
            if not isinstance(x, list):
                return _MISSING
            x = next((i for i in x if isinstance(i, dict) and all(i.get(a) == b for a, b in want.items())), _MISSING)
            if x is _MISSING:
                return x
        else:
            v = json.loads(key)
            return v if isinstance(x, list) and v in x else _MISSING
    return x


def remove_at(obj: Any, path: Path) -> None:
    """Delete what a path points at (nothing when it is not there)."""
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    kind, key = path[-1]
    if kind == "f" and isinstance(parent, dict):
        parent.pop(key, None)
    elif kind == "k" and isinstance(parent, list):
        want = json.loads(key)
        parent[:] = [i for i in parent if not (isinstance(i, dict) and all(i.get(a) == b for a, b in want.items()))]
    elif kind == "v" and isinstance(parent, list):
        v = json.loads(key)
        parent[:] = [i for i in parent if i != v]


def format_path(path: Path) -> str:
    """.spec.ports[port=80,protocol="TCP"].port, as SSA conflict messages print paths."""
    out = ""
    for kind, key in path:
        if kind == "f":
            out += f".{key}"
        elif kind == "k":
            out += "[" + ",".join(f"{a}={json.dumps(b)}" for a, b in json.loads(key).items()) + "]"
        else:
            out += f"[={key}]"
    return out
