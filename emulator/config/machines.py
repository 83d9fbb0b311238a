"""The `machines:` key of a scenario: over how many machines (Ray nodes) its hosts are spread."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from emulator.config.topology import StrictModel

MAX_MACHINES = 16


class Machines(StrictModel):
    """How many machines run the scenario and how hosts are placed on them.

    Without `--address` kubemu simulates the machines on this host (one Ray node, one
    private Open vSwitch and one fabric namespace each, joined by VXLAN tunnels).
    """

    count: int = Field(1, ge=1, le=MAX_MACHINES, strict=True)
    placement: Literal["spread", "pack", "zone"] = "spread"
