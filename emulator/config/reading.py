"""Reading YAML files from strangers, bounded in size, depth, alias expansion and time.

Only regular files are read (FIFOs, devices and directories are refused from their
stat, never opened for a blocking read), at most MAX_FILE_BYTES each. The composer
refuses nesting deeper than MAX_YAML_DEPTH, recursive aliases and more than
MAX_YAML_NODES nodes with aliases expanded ("billion laughs"), and stops at a deadline.
Within `reading_budget()` (one scenario with every file it names) the files share one
byte budget (MAX_TOTAL_BYTES) and one deadline (MAX_PARSE_SECONDS). Limits:
`emulator.config.limits`.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import stat
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning, YAMLError
from ruamel.yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent

from emulator.config import limits
from emulator.errors import ConfigError


@dataclass
class _Budget:
    """What the files read so far may still use: bytes and time."""

    bytes_left: int
    deadline: float


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("kubemu_reading_budget", default=None)


@contextlib.contextmanager
def reading_budget() -> Iterator[None]:
    """Files read inside share MAX_TOTAL_BYTES and one MAX_PARSE_SECONDS deadline (nested: the outer)."""
    if _BUDGET.get() is not None:
        yield
        return
    token = _BUDGET.set(_Budget(limits.MAX_TOTAL_BYTES, time.monotonic() + limits.MAX_PARSE_SECONDS))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _deadline() -> float:
    """When parsing must stop: the shared deadline, else MAX_PARSE_SECONDS from now."""
    budget = _BUDGET.get()
    return budget.deadline if budget is not None else time.monotonic() + limits.MAX_PARSE_SECONDS


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
        self.deadline = _deadline()

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
            raise _LimitError(f"reading took longer than {limits.MAX_PARSE_SECONDS:g} s "
                              "(MAX_PARSE_SECONDS, for a scenario and all its files): refused",
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
    budget = _BUDGET.get()
    if budget is not None:
        budget.bytes_left -= len(data)
        if budget.bytes_left < 0:
            raise ConfigError(f"the scenario and the files it names hold more than {limits.MAX_TOTAL_BYTES} "
                              "bytes (MAX_TOTAL_BYTES): refused", file)
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


def parse_file(file: str, all_documents: bool) -> list[Any]:
    """The round-trip root nodes of `file`'s documents, read and parsed within the limits.

    A ConfigError (one line, with the line number where known) for anything else.
    """
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
    return roots
