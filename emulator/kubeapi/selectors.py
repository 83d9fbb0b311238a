"""Label and field selectors in their query-string forms (?labelSelector=, ?fieldSelector=)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from emulator.kubeapi.wire import StatusError

_TOKEN = re.compile(r"\s*(!=|==|=|!|,|\(|\)|\bnotin\b|\bin\b|[^\s,=!()]+)")


@dataclass(frozen=True)
class Requirement:
    """key op values: op is =, !=, in, notin, exists, !exists."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        v = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and v in self.values
        if self.op in ("!=", "notin"):
            return not has or v not in self.values
        if self.op == "exists":
            return has
        return not has


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise StatusError(400, f"unable to parse requirement: {text!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_label_selector(text: str | None) -> list[Requirement]:
    """`a=b,c!=d,e in (x,y),f notin (z),g,!h` as requirements; 400 on bad syntax."""
    if not text or not text.strip():
        return []
    toks, i, out = _tokens(text), 0, []
    bad = StatusError(400, f"unable to parse requirement: invalid label selector {text!r}")
    while i < len(toks):
        if toks[i] == "!":
            if i + 1 >= len(toks):
                raise bad
            out.append(Requirement(toks[i + 1], "!exists"))
            i += 2
        else:
            key = toks[i]
            nxt = toks[i + 1] if i + 1 < len(toks) else ","
            if nxt in ("=", "==", "!="):
                if i + 2 >= len(toks) or toks[i + 2] == ",":
                    val, i = "", i + 2
                else:
                    val, i = toks[i + 2], i + 3
                out.append(Requirement(key, "!=" if nxt == "!=" else "=", (val,)))
            elif nxt in ("in", "notin"):
                if i + 2 >= len(toks) or toks[i + 2] != "(":
                    raise bad
                j, vals = i + 3, []
                while j < len(toks) and toks[j] != ")":
                    if toks[j] != ",":
                        vals.append(toks[j])
                    j += 1
                if j >= len(toks):
                    raise bad
                out.append(Requirement(key, nxt, tuple(vals)))
                i = j + 1
            elif nxt == ",":
                out.append(Requirement(key, "exists"))
                i += 1
            else:
                raise bad
        if i < len(toks):
            if toks[i] != ",":
                raise bad
            i += 1
    return out


def labels_match(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    """All requirements hold for these labels."""
    return all(r.matches(labels or {}) for r in reqs)


FIELDS: dict[str, Callable[[dict], Any]] = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name"),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
    "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", ""),
    "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
    "spec.type": lambda o: (o.get("spec") or {}).get("type", ""),
    "type": lambda o: o.get("type", ""),
    "reason": lambda o: o.get("reason", ""),
    "involvedObject.name": lambda o: (o.get("involvedObject") or {}).get("name", ""),
    "involvedObject.kind": lambda o: (o.get("involvedObject") or {}).get("kind", ""),
    "involvedObject.namespace": lambda o: (o.get("involvedObject") or {}).get("namespace", ""),
    "spec.unschedulable": lambda o: str(bool((o.get("spec") or {}).get("unschedulable"))).lower(),
}


def parse_field_selector(text: str | None) -> list[Requirement]:
    """`metadata.name=x,status.phase!=Running`; only fields the API server supports (400 otherwise)."""
    out = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([^=!]+?)\s*(==|!=|=)\s*(.*)", part)
        if m is None:
            raise StatusError(400, f"invalid field selector: {part!r}")
        key, op, val = m.group(1), m.group(2), m.group(3)
        if key not in FIELDS:
            raise StatusError(400, f'field label not supported: {key}')
        out.append(Requirement(key, "!=" if op == "!=" else "=", (val,)))
    return out


def fields_match(reqs: list[Requirement], obj: dict) -> bool:
    """All field requirements hold for the object."""
    for r in reqs:
        v = FIELDS[r.key](obj)
        v = "" if v is None else str(v)
        if (v == r.values[0]) != (r.op == "="):
            return False
    return True
