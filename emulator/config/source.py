"""YAML read with line numbers kept, and every validation failure turned into one ConfigError.

Documents are parsed with ruamel.yaml's round-trip loader, whose nodes remember the line
of each key and list item; `YamlDoc.line_of(path)` maps a field path such as
`("steps", 2, "traffic")` back to its line, so pydantic and schema errors can name
`file:line: field`. Validation itself runs on plain dicts and lists (`to_plain`).
"""
from __future__ import annotations

import datetime
import difflib
import os
import stat
import time
import types
import typing
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import pydantic
from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning, YAMLError
from ruamel.yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent

from emulator.config import limits
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


class _BoundedComposer(Composer):
    """A composer that refuses deep nesting, recursive aliases, alias bombs and slow files.

    Each alias counts as every node it repeats (what plain data built from it would hold),
    so a few hundred bytes of nested aliases ("billion laughs") stop at MAX_YAML_NODES.
    """

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.nodes = 0                          # nodes so far, aliases expanded
        self.nesting = 0                        # open mappings and sequences
        self.sizes: dict[int, int] = {}         # id(anchored node) -> its expanded size
        self.deadline = time.monotonic() + limits.MAX_PARSE_SECONDS

    def compose_document(self) -> Any:
        """One document: its anchors (and their sizes) are its own."""
        self.sizes = {}
        return super().compose_document()

    def _count(self, n: int, event: Any) -> None:
        """Add `n` nodes; refuse past the node limit or the deadline."""
        self.nodes += n
        if self.nodes > limits.MAX_YAML_NODES:
            raise _LimitError(f"more than {limits.MAX_YAML_NODES} YAML nodes (aliases counted "
                              "as the nodes they repeat): refused", event.start_mark)
        if time.monotonic() > self.deadline:
            raise _LimitError(f"parsing took longer than {limits.MAX_PARSE_SECONDS:g} s: refused",
                              event.start_mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node within the bounds."""
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                if id(target) not in self.sizes:
                    raise _LimitError(f"alias *{event.anchor} refers to a node that contains it "
                                      "(recursive data): refused", event.start_mark)
                self._count(self.sizes[id(target)], event)
            return super().compose_node(parent, index)
        collection = isinstance(event, (MappingStartEvent, SequenceStartEvent))
        if collection and self.nesting >= limits.MAX_YAML_DEPTH:
            raise _LimitError(f"nested deeper than {limits.MAX_YAML_DEPTH} levels: refused", event.start_mark)
        before = self.nodes
        self._count(1, event)
        self.nesting += collection
        node = super().compose_node(parent, index)
        self.nesting -= collection
        if event.anchor is not None:
            self.sizes[id(node)] = self.nodes - before
        return node


class _LimitError(MarkedYAMLError):
    """A file beyond the limits of `emulator.config.limits`."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def _yaml() -> YAML:
    """A round-trip loader (keeps line numbers; duplicate keys are errors; bounded)."""
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    y.Composer = _BoundedComposer
    return y


def _yaml_error(file: str, exc: YAMLError) -> ConfigError:
    """A ruamel parse error -> ConfigError naming the line."""
    if isinstance(exc, _LimitError):
        mark = exc.problem_mark
        return ConfigError(str(exc.problem), file, mark.line + 1 if mark is not None else None)
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if exc.context and problem.startswith("but "):
            problem = f"{exc.context}, {problem}"
        line = mark.line + 1 if mark is not None else None
        return ConfigError(f"invalid YAML: {_one_line(problem)}", file, line)
    return ConfigError(f"invalid YAML: {_one_line(str(exc))}", file)


def _one_line(text: str) -> str:
    """`text` on one line (parser messages may quote several)."""
    return " ".join(str(text).split())


def _read_text(file: str) -> str:
    """The text of a regular file of at most MAX_FILE_BYTES, or a ConfigError.

    FIFOs, devices, sockets and directories are refused from their stat, never opened for a
    blocking read; the file is opened non-blocking and checked again (it may have changed).
    """
    try:
        st = os.stat(file)
        _check_regular(file, st)
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise ConfigError("file not found", file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file) from None
    try:
        _check_regular(file, os.fstat(fd))
        data = os.read(fd, limits.MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file) from None
    finally:
        os.close(fd)
    if len(data) > limits.MAX_FILE_BYTES:
        _too_large(file, f"more than {limits.MAX_FILE_BYTES}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}): refused", file) from None


def _check_regular(file: str, st: os.stat_result) -> None:
    """Refuse anything but a regular file of at most MAX_FILE_BYTES."""
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("is a directory, not a file", file)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device"
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket"
                if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise ConfigError(f"is {kind}, not a regular file: refused", file)
    if st.st_size > limits.MAX_FILE_BYTES:
        _too_large(file, str(st.st_size))


def _too_large(file: str, size: str) -> None:
    """Raise the file-size ConfigError."""
    raise ConfigError(f"file has {size} bytes, more than the limit of {limits.MAX_FILE_BYTES} "
                      "bytes (1 MiB): refused", file)


def read_yaml(file: str) -> YamlDoc:
    """Parse a single-document YAML file."""
    return _parse(file, all_documents=False)[0]


def read_yaml_all(file: str) -> list[YamlDoc]:
    """Parse a multi-document YAML file (empty documents are dropped)."""
    return [doc for doc in _parse(file, all_documents=True) if doc.root is not None]


def _parse(file: str, all_documents: bool) -> list[YamlDoc]:
    """The documents of `file`, read and parsed within the limits; a ConfigError otherwise."""
    text = _read_text(file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReusedAnchorWarning)   # YAML allows redefining anchors
            y = _yaml()
            roots = list(y.load_all(text)) if all_documents else [y.load(text)]
    except YAMLError as exc:
        raise _yaml_error(file, exc) from None
    except (ValueError, TypeError, OverflowError) as exc:   # a constructor's, e.g. a bad date
        raise ConfigError(f"invalid YAML value: {_one_line(str(exc))}", file) from None
    return [YamlDoc(file, root) for root in roots]


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

