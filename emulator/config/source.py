"""YAML read with line numbers kept, and every validation failure turned into one ConfigError.

Documents are parsed with ruamel.yaml's round-trip loader, whose nodes remember the line
of each key and list item; `YamlDoc.line_of(path)` maps a field path such as
`("steps", 2, "traffic")` back to its line, so pydantic and schema errors can name
`file:line: field`. Validation itself runs on plain dicts and lists (`to_plain`).
"""
from __future__ import annotations

import datetime
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, Sequence

import pydantic
from pydantic import BaseModel
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from emulator.config.reading import parse_file
from emulator.errors import ConfigError

Loc = tuple[str | int, ...]


def format_path(loc: Sequence[str | int]) -> str:
    """`("steps", 2, "traffic")` -> `steps[2].traffic`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def to_plain(node: Any) -> Any:
    """Round-trip YAML nodes -> plain dict/list/str/int/float/bool/None (dates as ISO text)."""
    if isinstance(node, dict):
        return {to_plain(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, (datetime.date, datetime.datetime)):
        return node.isoformat()
    return node


@dataclass(frozen=True)
class YamlDoc:
    """One parsed YAML document: its root node (round-trip) and the file it came from."""

    file: str
    root: Any

    @property
    def line(self) -> int | None:
        """Line of the document's first key or item (1-based)."""
        return _node_line(self.root)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Line of the deepest part of `loc` present in the document (1-based)."""
        node, line = self.root, _node_line(self.root)
        for part in loc:
            if isinstance(node, CommentedMap) and not isinstance(part, int) and part in node:
                line = node.lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line = node.lc.item(part)[0] + 1
                node = node[part]
            else:
                continue   # a union tag or a missing key: keep the line found so far
        return line

    def sub(self, loc: Sequence[str | int]) -> "YamlDoc":
        """The document rooted at `loc` (same file, absolute lines kept)."""
        node = self.root
        for part in loc:
            node = node[part]
        return YamlDoc(self.file, node)

    def plain(self) -> Any:
        """The document as plain Python data."""
        return to_plain(self.root)

    def error(self, loc: Sequence[str | int], message: str) -> ConfigError:
        """A ConfigError for `loc` in this document."""
        return ConfigError(message, self.file, self.line_of(loc), format_path(loc) or None)


def _node_line(node: Any) -> int | None:
    """1-based line where a mapping or sequence node starts, if known."""
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return None
    return lc.line + 1


def read_yaml(file: str) -> YamlDoc:
    """Parse a single-document YAML file (bounded: see `emulator.config.reading`)."""
    return YamlDoc(file, parse_file(file, all_documents=False)[0])


def read_yaml_all(file: str) -> list[YamlDoc]:
    """Parse a multi-document YAML file (empty documents are dropped)."""
    return [YamlDoc(file, root) for root in parse_file(file, all_documents=True) if root is not None]


def _allowed_fields(model: Any, loc: Loc) -> list[str] | None:
    """Field names (aliases) of the model reached by following `loc` from `model`, if found."""
    current: Any = model
    for part in loc:
        current = _descend(current, part)
        if current is None:
            return None
    fields = _model_of(current)
    if fields is None:
        return None
    return [f.alias or name for name, f in fields.model_fields.items()]


def _model_of(tp: Any) -> type[BaseModel] | None:
    """The BaseModel class of a type, seen through Annotated and Optional/unions of one model."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _model_of(args[0])
    if origin in (typing.Union, types.UnionType):
        models = [m for m in (_model_of(a) for a in args if a is not type(None)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def _descend(tp: Any, part: str | int) -> Any:
    """The type reached from `tp` by one loc step (field name, list index or union tag)."""
    model = _model_of(tp)
    if model is not None and isinstance(part, str):
        for name, f in model.model_fields.items():
            if part in (name, f.alias):
                return f.annotation
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _descend(args[0], part)
    if origin is list and isinstance(part, int):
        return args[0]
    if origin is dict and isinstance(part, str):
        return args[1]
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return _descend(members[0], part)
        for arg in members:   # a tagged union: the member whose KIND is this tag
            m = _model_of(arg)
            if m is not None and getattr(m, "KIND", None) == part:
                return m
    return None


def _message(err: Any, model: type[BaseModel] | None) -> str:
    """A short user-facing message for one pydantic error."""
    kind, msg = err["type"], err["msg"]
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error", msg))
    if kind == "assertion_error":
        return msg.removeprefix("Assertion failed, ")
    if kind == "extra_forbidden":
        loc = tuple(err["loc"])
        allowed = _allowed_fields(model, loc[:-1]) if model is not None else None
        if allowed:
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown field (allowed: {', '.join(allowed)}){hint}"
        return "unknown field"
    if kind == "missing":
        return "required field missing"
    return msg


def clean_loc(doc: YamlDoc, loc: Loc, missing: bool = False) -> Loc:
    """Drop union tags and validator names from a pydantic loc, keeping real data keys.

    With `missing`, a last part absent from the data is kept: it names a missing field.
    """
    data = doc.root
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(data, dict) and not isinstance(part, int) and part in data:
            out.append(part)
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            out.append(part)
            data = data[part]
        elif missing and i == len(loc) - 1 and isinstance(data, (dict, list)):
            out.append(part)   # a missing field or bad index: name it
    return tuple(out)


def validation_error(exc: pydantic.ValidationError, doc: YamlDoc, prefix: Loc = (),
                     model: type[BaseModel] | None = None) -> ConfigError:
    """The first error of a pydantic ValidationError as a ConfigError with file, line, field."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = clean_loc(doc, tuple(first["loc"]), missing=first["type"] == "missing")
    message = _message(first, model)
    others = len({tuple(e["loc"]) for e in errors} - {tuple(first["loc"])})
    if others:
        message += f" (and {others} more error{'s' if others > 1 else ''})"
    return ConfigError(message, doc.file, doc.line_of(loc), format_path(prefix + loc) or None)

