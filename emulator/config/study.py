"""Study steps: `compare` (interleaved A/B arms over repeated trials) and `sweep` (rerun inner
compares for each value of a parameter and fit a slope).

A compare's arms are HTTP URLs sent from one source in alternation (request by request
or in short blocks, in an order drawn from the scenario's `seed`), or the same URL with
and without a link impairment (blocks only: the impairment is toggled between blocks).
Each arm's records become a flow `<compare>-<arm>` (in a sweep `<compare>-<arm>-v<i>`,
i counting the values from 1) that `assert` steps and the report treat like any flow.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, WithJsonSchema, model_validator

from emulator.config.impairments import LINK_CLASSES, MAX_DELAY_S, Impairments, parse_loss
from emulator.config.refs import TrafficSource
from emulator.config.templates import render_dummy
from emulator.config.topology import StrictModel
from emulator.config.types import DnsLabel, Duration, NoBool, parse_duration

PositiveInt = Annotated[int, NoBool, Field(ge=1)]
SweepValue = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "string", "description": "0.5ms, 5%"},
                                                      {"type": "number"}]})]
MAX_ARMS = 9


class ArmSpec(StrictModel):
    """One arm: where its requests go and, optionally, the link impairment in force for it."""

    url: str = Field(description="http:// URL; placeholders such as {lbip:web} allowed")
    impair: Impairments | None = Field(
        default=None, description="impairments applied while this arm's blocks run (needs interleave: block)")

    @model_validator(mode="after")
    def _url_ok(self) -> "ArmSpec":
        """An http(s) URL with a host."""
        parts = urlsplit(render_dummy(self.url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {self.url!r} must be http:// or https:// with a host")
        return self


class CompareSpec(StrictModel):
    """Arms sent in alternation from one source, `trials` times; `requests` per arm per trial."""

    name: DnsLabel
    from_: Annotated[str, WithJsonSchema({"type": "string", "pattern": "^(pod/([^/]+/)?[^/]+|node/[^/]+|host/[^/]+)$"})] \
        = Field(alias="from", description="pod/NAME, pod/NS/NAME, node/NAME or host/NAME")
    arms: dict[DnsLabel, ArmSpec] = Field(description=f"2 to {MAX_ARMS} named arms")
    requests: PositiveInt = Field(default=200, description="requests per arm and trial")
    trials: PositiveInt = Field(default=3, description="independent repetitions, each with its own order")
    interleave: Literal["request", "block"] = Field(
        default="request", description="alternate arms request by request or in blocks")
    block: PositiveInt = Field(default=10, description="requests per block (interleave: block)")
    concurrency: PositiveInt = Field(default=1, description="requests in flight")
    timeout: Duration = 2.0

    @model_validator(mode="after")
    def _shape(self) -> "CompareSpec":
        """2..9 arms; impairment arms only in blocks; a known source form."""
        TrafficSource.parse(self.from_)
        if not 2 <= len(self.arms) <= MAX_ARMS:
            raise ValueError(f"give 2 to {MAX_ARMS} arms, got {len(self.arms)}")
        if any(a.impair is not None for a in self.arms.values()) and self.interleave != "block":
            raise ValueError("arms with `impair` need `interleave: block` (the impairment is toggled between blocks)")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        return self

    @property
    def source(self):
        """The parsed `from`."""
        return TrafficSource.parse(self.from_)

    def flow_names(self, suffix: str = "") -> dict[str, str]:
        """arm -> the flow name of its records."""
        return {a: f"{self.name}-{a}{suffix}" for a in self.arms}


class CompareStep(StrictModel):
    """`- compare: {name: hop, from: host/inet-1, arms: {cluster: {url: ...}, local: {url: ...}}}`."""

    KIND: ClassVar[str] = "compare"
    compare: CompareSpec


_PARAM_RE = re.compile(r"^(inter_zone|inter_node|internet)\.(delay|loss)$")


class SlopeSpec(StrictModel):
    """Fit metric = slope x parameter + intercept over the sweep's values; bounds on the slope."""

    flow: DnsLabel = Field(description="an inner compare's arm flow without the -v<i> suffix, e.g. hop-cluster")
    metric: Literal["extra_hop_penalty_ms", "p50_ms", "p90_ms"] = "extra_hop_penalty_ms"
    expected: float | None = Field(default=None, description="expected slope (metric units per parameter unit)")
    between: tuple[float, float] | None = Field(default=None, description="asserted: the fitted slope lies within")
    ci_contains: float | None = Field(default=None, description="asserted: the slope's 95% interval holds this")

    @model_validator(mode="after")
    def _band(self) -> "SlopeSpec":
        """A band is [low, high] with low <= high."""
        if self.between is not None and self.between[0] > self.between[1]:
            raise ValueError(f"between: low {self.between[0]:g} is above high {self.between[1]:g}")
        return self


def _sweep_value(value: Any, field: str) -> float:
    """A delay (`0.5ms`, at most 10 s) or a loss (`5%` or a ratio)."""
    if field == "loss":
        return parse_loss(value)
    seconds = parse_duration(value)
    if seconds > MAX_DELAY_S:
        raise ValueError(f"delay {seconds:g}s is longer than {MAX_DELAY_S:g}s")
    return seconds


class SweepSpec(StrictModel):
    """Rerun `steps` (compares) once per value of one parameter, on the same cluster."""

    name: DnsLabel
    impair: str | None = Field(default=None, description="CLASS.FIELD, e.g. inter_node.delay (values: 0.5ms, ...)")
    scale: str | None = Field(default=None, description="deployment/NAME: values are replica counts")
    values: list[SweepValue] = Field(min_length=2, description="the parameter's values, in the order run")
    calibrate: bool = Field(default=False, description="impair sweeps: first measure the delay path with ~0 delay")
    steps: list[CompareStep] = Field(min_length=1)
    slope: SlopeSpec | None = None

    @model_validator(mode="after")
    def _parameter(self) -> "SweepSpec":
        """Exactly one parameter; values of its kind; distinct."""
        if (self.impair is None) == (self.scale is None):
            raise ValueError("give exactly one parameter: impair (CLASS.delay or CLASS.loss) or scale (deployment/NAME)")
        if self.impair is not None:
            if not _PARAM_RE.match(self.impair):
                raise ValueError(f"impair {self.impair!r}: write CLASS.delay or CLASS.loss with CLASS one of "
                                 + ", ".join(LINK_CLASSES))
            try:
                vals = [_sweep_value(v, self.impair.split(".")[1]) for v in self.values]
            except ValueError as e:
                raise ValueError(f"values: {e}") from None
        else:
            kind, _, name = self.scale.partition("/")
            if kind != "deployment" or not name:
                raise ValueError(f"scale {self.scale!r}: write deployment/NAME")
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in self.values):
                raise ValueError("values: replica counts (integers >= 0)")
            vals = [float(v) for v in self.values]
            if self.calibrate:
                raise ValueError("calibrate applies to impair sweeps only")
        if len(set(vals)) != len(vals):
            raise ValueError("values: each value once")
        object.__setattr__(self, "values", vals)
        names = [s.compare.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError("inner compares need distinct names")
        return self

    @property
    def unit(self) -> str:
        """The x axis unit: ms (delays), % (loss) or replicas."""
        if self.scale:
            return "replicas"
        return "ms" if self.impair.endswith(".delay") else "%"

    def shown(self, value: float) -> float:
        """A value in its axis unit (seconds -> ms, ratio -> %)."""
        return value if self.scale else value * (1000 if self.impair.endswith(".delay") else 100)

    def flows(self) -> dict[str, str]:
        """Every flow the sweep produces -> its base flow (`hop-cluster-v2` -> `hop-cluster`)."""
        out = {}
        suffixes = [f"-v{i + 1}" for i in range(len(self.values))] + (["-cal"] if self.calibrate else [])
        for s in self.steps:
            for base in s.compare.flow_names().values():
                out.update({base + sfx: base for sfx in suffixes})
        return out


class SweepStep(StrictModel):
    """`- sweep: {name: delay, impair: inter_node.delay, values: [0, 1ms], steps: [{compare: ...}]}`."""

    KIND: ClassVar[str] = "sweep"
    sweep: SweepSpec
