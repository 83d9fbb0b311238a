"""Every step kind the scenario schema accepts has exactly one registered executor, and vice versa."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from emulator.config.loader import load_scenario
from emulator.config.scenario import STEP_KINDS
from emulator.runner import steps
from emulator.runner.steps.registry import REGISTRATIONS, StepKind, step

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


def test_each_schema_step_kind_has_exactly_one_executor_and_no_other_is_registered() -> None:
    registry = steps.executors()
    counts = Counter(r.kind for r in REGISTRATIONS)
    assert sorted(registry) == sorted(STEP_KINDS)
    assert {k: n for k, n in counts.items() if n != 1} == {}
    assert all(isinstance(e, StepKind) and e.module.startswith("emulator.runner.steps.") for e in registry.values())


def test_each_step_kind_lives_in_its_own_module() -> None:
    modules = Counter(e.module for e in steps.executors().values())
    assert [m for m, n in modules.items() if n > 1] == []


def test_registering_a_kind_twice_fails() -> None:
    kind = next(iter(steps.executors()))
    with pytest.raises(RuntimeError, match="registered twice"):
        step(kind, lambda s: kind)(lambda s, ctx: {})
    REGISTRATIONS.pop()   # the failed attempt is recorded; the registry kept the first


def test_every_scenario_step_is_described_by_its_kind() -> None:
    """The progress line of each step of the shipped scenarios comes from its kind's registration."""
    seen = set()
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        for s in load_scenario(path).steps:
            seen.add(s.KIND)
            assert steps.describe(s).split()[0] == s.KIND, (path.name, steps.describe(s))
    assert seen == set(STEP_KINDS)
