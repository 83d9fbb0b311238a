"""A JSONPath-like field syntax for `wait: {until: ...}`, object assertions and `save`.

    spec.clusterIP                        dotted keys
    status.loadBalancer.ingress[0].ip     [N]: the N-th item (negative from the end)
    endpoints[*].addresses[0]             [*]: every item
    endpoints[hostname=db-1].conditions.ready   [KEY=VALUE]: the items whose KEY (a dotted
                                          path inside the item) equals VALUE (compared as text)
    metadata.labels["app.kubernetes.io/name"]   ["KEY"]: a key holding dots or slashes

A path without `[*]` or a filter selects one value (or nothing); with them, the list of
every value it reaches (possibly empty). `select` returns (found, value).
"""
from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"""\.?(?P<key>[A-Za-z0-9_\-]+)|\[(?P<index>-?\d+)\]|\[(?P<star>\*)\]"""
                    r"""|\[["'](?P<quoted>[^"']+)["']\]|\[(?P<fkey>[A-Za-z0-9_.\-]+)=(?P<fval>[^\]]*)\]""")


class FieldPathError(ValueError):
    """A field path that cannot be parsed."""


def parse(path: str) -> list[tuple[str, Any]]:
    """Steps of `path`: ("key", k) | ("index", n) | ("all", None) | ("filter", (subpath, value))."""
    if not path or path.startswith(".") or path.endswith("."):
        raise FieldPathError(f"field {path!r}: write dotted keys such as spec.clusterIP")
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None or (m.group("key") is not None and pos > 0 and path[pos] != "."):
            raise FieldPathError(f"field {path!r}: cannot read {path[pos:]!r} (keys, [N], [*], [KEY=VALUE], [\"KEY\"])")
        if m.group("key") is not None:
            steps.append(("key", m.group("key")))
        elif m.group("quoted") is not None:
            steps.append(("key", m.group("quoted")))
        elif m.group("index") is not None:
            steps.append(("index", int(m.group("index"))))
        elif m.group("star"):
            steps.append(("all", None))
        else:
            steps.append(("filter", (parse(m.group("fkey")), m.group("fval").strip("\"'"))))
        pos = m.end()
    return steps


def _text(value: Any) -> str:
    """A value as a filter compares it: true/false lowercase, like YAML."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def select(obj: Any, path: str) -> tuple[bool, Any]:
    """(found, value) of `path` in `obj`; with [*] or a filter, value is a list (found even if empty)."""
    steps = parse(path)
    many = any(kind in ("all", "filter") for kind, _ in steps)
    values = _walk([obj], steps)
    if many:
        return True, values
    return (True, values[0]) if values else (False, None)


def _walk(current: list[Any], steps: list[tuple[str, Any]]) -> list[Any]:
    for kind, arg in steps:
        nxt: list[Any] = []
        for v in current:
            if kind == "key" and isinstance(v, dict) and arg in v:
                nxt.append(v[arg])
            elif kind == "index" and isinstance(v, list) and -len(v) <= arg < len(v):
                nxt.append(v[arg])
            elif kind == "all" and isinstance(v, list):
                nxt.extend(v)
            elif kind == "filter" and isinstance(v, list):
                sub, want = arg
                nxt.extend(item for item in v if any(_text(x) == want for x in _walk([item], sub)))
        current = nxt
    return current


def is_empty(found: bool, value: Any) -> bool:
    """Absent, null, "", [] or {}."""
    return not found or value is None or value == "" or value == [] or value == {}
