"""Server-side apply and managedFields: who owns which fields, conflicts, removal of dropped fields."""
from __future__ import annotations

import copy
import time

from emulator.kubeapi import fieldsets as fs
from emulator.kubeapi.patch import strategic_merge
from emulator.kubeapi.wire import StatusError, rfc3339


def _entries(obj: dict) -> list[dict]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def _entry(manager: str, operation: str, api_version: str, paths: set, now: float) -> dict:
    return {"manager": manager, "operation": operation, "apiVersion": api_version, "time": rfc3339(now),
            "fieldsType": "FieldsV1", "fieldsV1": fs.to_fields_v1(paths)}


def _set_entries(obj: dict, owners: list[tuple[dict, set]]) -> None:
    """Write back entries whose field sets are not empty."""
    out = []
    for e, paths in owners:
        if paths:
            out.append({**e, "fieldsV1": fs.to_fields_v1(paths)})
    obj.setdefault("metadata", {})["managedFields"] = out


def _without_meta(obj: dict) -> dict:
    o = copy.deepcopy(obj)
    (o.get("metadata") or {}).pop("managedFields", None)
    return o


def record_update(old: dict | None, new: dict, manager: str, schema: dict | None,
                  now: float | None = None) -> dict:
    """managedFields after a non-apply write: `manager` takes the fields it changed, others lose them."""
    now = time.time() if now is None else now
    old_clean = _without_meta(old) if old else {}
    new_clean = _without_meta(new)
    new_set = fs.field_set(new_clean, schema)
    changed = {p for p in fs.leaves(new_set) if fs.value_at(old_clean, p) != fs.value_at(new_clean, p)}
    changed |= {p[:i] for p in changed for i in range(1, len(p))}
    out = copy.deepcopy(new)
    owners = []
    mine = None
    for e in _entries(old or {}):
        paths = fs.from_fields_v1(e.get("fieldsV1")) & new_set
        if e.get("manager") == manager and e.get("operation") == "Update":
            mine = (e, paths | changed)
            continue
        owners.append((e, _drop(paths, fs.leaves(changed))))
    if mine is None and changed:
        mine = (_entry(manager, "Update", new.get("apiVersion", ""), set(), now), changed)
    if mine is not None:
        owners.append(({**mine[0], "time": rfc3339(now)}, mine[1]))
    _set_entries(out, owners)
    return out


def _drop(paths: set, lost: set) -> set:
    """`paths` without `lost` and without intermediate paths left with nothing under them."""
    inner = paths - fs.leaves(paths)
    kept = paths - lost
    under = {p[:i] for p in kept for i in range(1, len(p))}
    return {p for p in kept if p not in inner or p in under}


def apply(live: dict | None, applied: dict, manager: str, force: bool, schema: dict | None,
          now: float | None = None) -> dict:
    """The object after `manager` applies `applied` (creating when `live` is None); 409 on conflicts."""
    now = time.time() if now is None else now
    applied = _without_meta(applied)
    new_set = fs.field_set(applied, schema)
    if live is None:
        out = copy.deepcopy(applied)
        _set_entries(out, [(_entry(manager, "Apply", applied.get("apiVersion", ""), set(), now), new_set)])
        return out
    live_clean = _without_meta(live)
    old_mine: set = set()
    others: list[tuple[dict, set]] = []
    for e in _entries(live):
        paths = fs.from_fields_v1(e.get("fieldsV1"))
        if e.get("manager") == manager and e.get("operation") == "Apply":
            old_mine = paths
        else:
            others.append((e, paths))
    new_leaves = fs.leaves(new_set)
    conflicts = []
    for e, paths in others:
        for p in sorted(new_leaves & fs.leaves(paths)):
            if fs.value_at(live_clean, p) != fs.value_at(applied, p):
                conflicts.append((e, p))
    if conflicts and not force:
        raise _conflict_error(conflicts, live)
    others_all = set().union(*(p for _, p in others)) if others else set()
    base = copy.deepcopy(live_clean)
    for p in sorted(old_mine - new_set, key=len, reverse=True):
        if p not in others_all:
            fs.remove_at(base, p)
    merged = strategic_merge(base, applied, schema)
    lost = {p for _, p in conflicts}
    owners = [(e, _drop(paths, lost)) for e, paths in others]
    owners.append((_entry(manager, "Apply", applied.get("apiVersion", ""), set(), now), new_set))
    _set_entries(merged, owners)
    return merged


def _conflict_error(conflicts: list, live: dict) -> StatusError:
    causes = [{"reason": "FieldManagerConflict", "field": fs.format_path(p),
               "message": f'conflict with "{e.get("manager")}"' + (
                   f' using {e.get("apiVersion")}' if e.get("operation") == "Update" else "")}
              for e, p in conflicts]
    n = len(causes)
    if n == 1:
        text = f"{causes[0]['message']}: {causes[0]['field']}"
    else:
        text = "\n" + "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
    meta = live.get("metadata") or {}
    return StatusError(409, f"Apply failed with {n} conflict{'s' if n > 1 else ''}:{' ' if n == 1 else ''}{text}", "Conflict",
                       {"name": meta.get("name", ""), "kind": live.get("kind", "").lower() + "s", "causes": causes})
