"""Link impairments: delay, jitter, loss and rate per link class.

Link classes: `inter_zone` (node <-> node in different zones), `inter_node` (any two
different nodes; `inter_zone` wins where both apply) and `internet` (internet client
hosts <-> the VPC). A topology may set them; a scenario's `impairments:` replaces the
topology's value per class, and an `impair:` step changes them while the cluster runs.
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator

from emulator.config.types import Duration

LINK_CLASSES = ("inter_zone", "inter_node", "internet")
MAX_DELAY_S = 10.0
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)\s*$", re.I)
_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9,
               "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}   # tc's units: bps = bytes/s


def parse_loss(value: Any) -> float:
    """`5%` or a ratio such as 0.05 -> 0.05 (a ratio in [0, 1))."""
    if isinstance(value, bool):
        raise ValueError(f"invalid loss {value!r}: use a percentage like 5% or a ratio like 0.05")
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            ratio = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"invalid loss {value!r}: use a percentage like 5% or a ratio like 0.05") from None
    elif isinstance(value, (int, float, str)):
        try:
            ratio = float(value)
        except ValueError:
            raise ValueError(f"invalid loss {value!r}: use a percentage like 5% or a ratio like 0.05") from None
    else:
        raise ValueError(f"invalid loss {value!r}: use a percentage like 5% or a ratio like 0.05")
    if not 0 <= ratio < 1:
        raise ValueError(f"loss {value!r} is out of range: 0 <= loss < 100% (ratio < 1)")
    return ratio


def parse_rate(value: Any) -> int:
    """`10mbit`, `1gbit`, `500kbit`, `2mbps` (bytes/s, as tc) -> bits per second (> 0)."""
    m = _RATE_RE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"invalid rate {value!r}: use e.g. 100kbit, 10mbit, 1gbit (or kbps/mbps for bytes/s)")
    bits = int(float(m.group(1)) * _RATE_UNITS[m.group(2).lower()])
    if not 8000 <= bits <= 100_000_000_000:
        raise ValueError(f"rate {value!r} is out of range: between 8kbit and 100gbit")
    return bits


Loss = Annotated[float, BeforeValidator(parse_loss),
                 WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d*)?%$"},
                                           {"type": "number", "minimum": 0, "exclusiveMaximum": 1}]})]
Rate = Annotated[int, BeforeValidator(parse_rate),
                 WithJsonSchema({"type": "string", "description": "e.g. 10mbit, 1gbit"})]


class _Strict(BaseModel):
    """Unknown keys are errors, values immutable (as topology.StrictModel, which imports this module)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LinkImpairment(_Strict):
    """What one link class does to packets, in each direction (one-way values)."""

    delay: Duration = Field(default=0.0, description="one-way delay added on each side's egress")
    jitter: Duration = Field(default=0.0, description="delay varies uniformly within delay ± jitter")
    loss: Loss = Field(default=0.0, description="share of packets dropped per direction: 5% or 0.05")
    rate: Rate | None = Field(default=None, description="egress rate limit per host and class")

    @field_validator("delay")
    @classmethod
    def _delay_bound(cls, v: float) -> float:
        """At most 10 s."""
        if v > MAX_DELAY_S:
            raise ValueError(f"delay {v:g}s is longer than {MAX_DELAY_S:g}s")
        return v

    @field_validator("jitter")
    @classmethod
    def _jitter_bound(cls, v: float, info: ValidationInfo) -> float:
        """No larger than the delay (a packet is never sent before it left)."""
        delay = info.data.get("delay", 0.0)
        if v > delay:
            raise ValueError(f"jitter ({v * 1000:g}ms) must not exceed the delay ({delay * 1000:g}ms)")
        return v

    @property
    def empty(self) -> bool:
        """True when the class does nothing."""
        return not (self.delay or self.loss or self.rate)

    def describe(self) -> str:
        """`delay 1ms ±0.2ms, loss 1%, rate 10mbit` (or `none`)."""
        parts = []
        if self.delay:
            parts.append(f"delay {self.delay * 1000:g}ms" + (f" ±{self.jitter * 1000:g}ms" if self.jitter else ""))
        if self.loss:
            parts.append(f"loss {self.loss * 100:g}%")
        if self.rate:
            parts.append(f"rate {self.rate / 1e6:g}mbit")
        return ", ".join(parts) or "none"


class Impairments(_Strict):
    """Impairments per link class; a class left out is not impaired."""

    inter_zone: LinkImpairment | None = Field(default=None, description="node <-> node in different zones")
    inter_node: LinkImpairment | None = Field(default=None, description="any two different nodes")
    internet: LinkImpairment | None = Field(default=None, description="internet client hosts <-> the VPC")

    def merged(self, override: "Impairments | None") -> "Impairments":
        """This with each class that `override` writes replaced (null there removes the class)."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})

    def active(self) -> dict[str, LinkImpairment]:
        """Classes that do something, in precedence order."""
        return {k: v for k in LINK_CLASSES if (v := getattr(self, k)) is not None and not v.empty}

