"""The `await` step: wait for the named background flows (or all of them)."""
from __future__ import annotations

from emulator.runner import flows
from emulator.runner.steps.registry import step


def describe(s) -> str:
    return f"await {s.await_ if s.await_ == 'all' else ', '.join(s.await_)}"


@step("await", describe)
def run_await(s, ctx) -> dict:
    return flows.run_await(s, ctx)
