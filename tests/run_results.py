"""Results records for report tests: a partial results dict completed with a run's identity."""
from __future__ import annotations

from typing import Any

from emulator.records.results import Results


def results_from(partial: dict[str, Any]) -> Results:
    """`partial` (steps, topology, ...) as a Results of a synthetic run."""
    data = {"scenario": "synthetic", "run_id": "ab12", "run_dir": "/nonexistent", "started": 0.0, **partial}
    if "topology" in data:
        data["topology"] = {"clients": [], "fabric": {}, **data["topology"]}
    return Results.model_validate(data)
