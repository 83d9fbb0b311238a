"""results.json as a model: written by the runner, read back by `kubemu report` and `kubemu compare`.

Keys are written in the order declared here, and only those a run set (a run that
failed early has no topology; one that was interrupted says so). Steps are a typed
envelope, `StepResult`: the step kind plus the kind's own fields, kept as they were
recorded (each kind's executor owns its record). Flow summaries, machines, Ingresses
and impairment classes are free-form dicts for the same reason. docs/schemas/results.schema.json
is generated from `Results` (emulator.config.write_json_schemas).
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from emulator.records.timing import Timing, TimingName

SCHEMA_VERSION = 1


class StepResult(BaseModel):
    """One step's record: its kind (`step`) and the kind's fields (`fields`), as one flat JSON object."""

    model_config = ConfigDict(extra="allow")

    step: str = Field(description="the step kind: wait, traffic, assert, fault, availability, ...")

    @property
    def fields(self) -> dict[str, Any]:
        """The kind's own fields (everything but `step`)."""
        return self.model_extra or {}

    @property
    def ok(self) -> bool:
        """False only when the step recorded a failed check."""
        return bool(self.fields.get("ok", True))


class _Profile(BaseModel):
    profile: TimingName


class RunTiming(Timing, _Profile):   # bases in this order: `profile` comes first, as results.json always had it
    """The timing profile the run used, by name, and its intervals."""


class TopologyNode(BaseModel):
    """A cluster node of the run: where requests can enter (hop attribution)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    zone: str | None
    ip: str
    pod_cidr: str


class TopologyClient(BaseModel):
    """A client host of the run (VM or internet host)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str
    ip: str


class RunTopology(BaseModel):
    """The hosts the run planned, and the fabric (first machine's bridge) it ran on."""

    model_config = ConfigDict(extra="forbid")

    nodes: list[TopologyNode]
    clients: list[TopologyClient]
    fabric: dict[str, Any] = Field(description="the first machine's bridge: name, dpid, namespace, ...")


class ImpairmentsRecord(BaseModel):
    """Link impairments in force: the mechanism and, per class, its config and what enforced it."""

    model_config = ConfigDict(extra="forbid")

    mechanism: str | None
    classes: dict[str, dict[str, Any]]


class Results(BaseModel):
    """A run's results.json."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    scenario: str
    scenario_file: str | None = None
    run_id: str
    run_dir: str
    started: float = Field(description="epoch seconds")
    steps: list[StepResult] = Field(default_factory=list)
    flows: dict[str, dict[str, Any]] = Field(default_factory=dict, description="flow name -> summary")
    ok: bool = False
    timing: RunTiming | None = None
    impairments: ImpairmentsRecord | None = None
    topology: RunTopology | None = None
    machines: dict[str, Any] | None = Field(default=None, description="placement: machines, hosts, tunnels")
    timeline: dict[str, float] | None = Field(default=None, description="bring-up milestone -> seconds")
    ingresses: dict[str, dict[str, Any]] | None = None
    iptables_backend: str | None = None
    load: dict[str, Any] | None = Field(default=None, description="leases that lapsed with no fault: "
                                        "the machine did not keep up with the timing (emulator/report/load_lapses.py)")
    kernel_limits: dict[str, Any] | None = Field(default=None, description="host-wide kernel tables that were "
                                                 "full during the run (emulator/report/kernel_limits.py)")
    interrupted: bool | None = None
    error: str | None = None
    seconds: float | None = None
    _step_records: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    def record_step(self, rec: dict[str, Any]) -> None:
        """Keep a step's record as its executor returned it (a background flow completes it when it ends)."""
        self._step_records.append(rec)

    def seal_steps(self) -> None:
        """The recorded steps, as they are now, into `steps` (before the verdict and the write)."""
        self.steps = [StepResult.model_validate(r) for r in self._step_records]

    @property
    def nodes(self) -> list[TopologyNode]:
        """The run's nodes (none when it failed before the cluster was up)."""
        return list(self.topology.nodes) if self.topology else []

    def steps_of(self, kind: str) -> list[StepResult]:
        """The steps of one kind, in run order."""
        return [s for s in self.steps if s.step == kind]

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to results.json: only what the run set, in declared order."""
        return self.model_dump(exclude_unset=True)

    def write(self, path: str) -> None:
        """Write results.json."""
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=2, default=str)
