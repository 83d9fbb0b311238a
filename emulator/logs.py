"""Logging of actors into the run directory (`RUN_DIR/logs/<component>.log`)."""
from __future__ import annotations

import logging
import os


def setup_actor_logging(run_dir: str, component: str, level: int = logging.INFO) -> str:
    """Send this process's log records to RUN_DIR/logs/COMPONENT.log; returns the path."""
    path = os.path.join(run_dir, "logs", f"{component}.log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_kubemu", False):
            root.removeHandler(h)
    handler = logging.FileHandler(path)
    handler._kubemu = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    return path
