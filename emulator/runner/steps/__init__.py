"""Scenario steps against a running cluster: one module per step kind, each registering its executor.

An executor takes the step model and the `StepContext`, does real work through the
context's `ClusterClient` and returns a JSON-able record for results.json. A new step
kind is one new module here with a `@step(KIND, describe)` executor (and its model in
emulator/config/scenario.py); the modules are found by walking this package.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from emulator.runner.steps.context import StepContext
from emulator.runner.steps.registry import REGISTRY, StepKind

__all__ = ["StepContext", "REGISTRY", "StepKind", "executors", "run_step", "describe"]


@functools.cache
def _import_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def executors() -> dict[str, StepKind]:
    """Every registered step kind (each module of this package imported once)."""
    _import_all()
    return REGISTRY


def run_step(step: Any, ctx: StepContext) -> dict:
    """Run a step with its kind's executor; its results.json record."""
    return executors()[step.KIND].run(step, ctx)


def describe(step: Any) -> str:
    """A one-line description of a step for progress output."""
    entry = executors().get(step.KIND)
    return entry.describe(step) if entry is not None else step.KIND
