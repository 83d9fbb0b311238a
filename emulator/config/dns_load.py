"""The `dns` traffic kind's settings: questions asked with `dig` from the source's namespace.

    dns: {name: db.default.svc.cluster.local, type: A, expect: ["{pod:db-0}"], within: 10s}

Without `expect`: `count` questions, `interval` apart. With `expect`: the question is
repeated every `interval` until the answer set equals `expect` (order ignored, names
without the final dot) or `within` has passed; the answer then is what the flow's last
record holds. `search: true` (the default) lets a short name use the pod's search path
(`dig +search`), as an application's resolver would.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from emulator.config.limits import MAX_PING_COUNT, MAX_TARGET_CHARS
from emulator.config.templates import render_dummy
from emulator.config.topology import StrictModel
from emulator.config.types import Duration, WholeNumber

_NAME_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$")


class DnsLoad(StrictModel):
    """DNS questions with the real `dig` (bind9-dnsutils) through the source's resolv.conf."""

    name: str = Field(description="the name asked (placeholders allowed); for PTR an IP address or a reverse name")
    type: Literal["A", "AAAA", "SRV", "CNAME", "PTR", "TXT"] = "A"
    expect: list[str] | None = Field(default=None, description="repeat until the answers are exactly these")
    within: Duration = Field(default=10.0, description="with expect: how long to keep asking")
    count: Annotated[int, WholeNumber, Field(ge=1, le=MAX_PING_COUNT)] = Field(
        default=1, description="without expect: how many questions")
    interval: Duration = Field(default=0.2, description="between questions")
    timeout: Duration = Field(default=2.0, description="per question (dig +time)")
    search: bool = Field(default=True, description="use the resolv.conf search path (dig +search)")

    @model_validator(mode="after")
    def _name_ok(self) -> "DnsLoad":
        """A DNS name (or an IP for PTR) that cannot be read as an option; positive times."""
        name = render_dummy(self.name)
        is_ip = True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            is_ip = False
        if len(self.name) > MAX_TARGET_CHARS or not (is_ip or _NAME_RE.match(name)):
            raise ValueError(f"name {self.name!r} is not a DNS name, an IP address or a placeholder")
        if is_ip and self.type != "PTR":
            raise ValueError(f"name {self.name!r} is an IP address: ask type PTR for it")
        if min(self.timeout, self.within) <= 0 or self.interval < 0:
            raise ValueError("timeout and within must be > 0, interval >= 0")
        return self
