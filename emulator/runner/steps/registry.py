"""The registry of step executors: each step kind's module registers its executor and description."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

Executor = Callable[[Any, Any], dict]


@dataclass(frozen=True)
class StepKind:
    """A step kind's executor (step, context -> results.json record) and one-line description."""

    kind: str
    run: Executor
    describe: Callable[[Any], str]
    module: str


REGISTRY: dict[str, StepKind] = {}
REGISTRATIONS: list[StepKind] = []   # every registration, duplicates included (the unit test counts them)


def step(kind: str, describe: Callable[[Any], str]) -> Callable[[Executor], Executor]:
    """Register the decorated function as the executor of `kind`, `describe` its progress line."""
    def register(run: Executor) -> Executor:
        entry = StepKind(kind, run, describe, run.__module__)
        REGISTRATIONS.append(entry)
        if kind in REGISTRY:
            raise RuntimeError(f"step kind {kind!r} registered twice ({REGISTRY[kind].module}, {entry.module})")
        REGISTRY[kind] = entry
        return run
    return register
