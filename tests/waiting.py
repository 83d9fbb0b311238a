"""Waiting for a condition in tests of every tier (never a fixed sleep)."""
from __future__ import annotations

import time
from typing import Any, Callable


def poll(pred: Callable[[], Any], what: str, timeout: float, interval: float = 0.1) -> Any:
    """Call `pred` until it returns a true value and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = pred()
        if out:
            return out
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
