"""The `traffic` step: start a flow on its source's agent; wait for it unless it runs in the background."""
from __future__ import annotations

from emulator.runner import flows
from emulator.runner.steps.registry import step


@step("traffic", lambda s: flows.describe(s.traffic))
def run_traffic(s, ctx) -> dict:
    return flows.run_traffic(s, ctx)
