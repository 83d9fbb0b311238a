"""The `sleep` step: let time pass."""
from __future__ import annotations

import time

from emulator.runner.steps.registry import step


@step("sleep", lambda s: f"sleep {s.sleep:g}s")
def run_sleep(s, ctx) -> dict:
    time.sleep(s.sleep)
    return {"step": "sleep", "seconds": s.sleep}
