"""What the cloud controller is told about the run: the VPC's ranges and every planned host."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from emulator.records.hosts import HostSpec


class CloudHost(HostSpec):
    """A planned host as the VPC sees it: its spec plus its MAC, its machine's bridge and extra routes."""

    mac: str | None = None
    dpid: int | None = Field(default=None, description="the bridge of the host's machine; None: the facts' dpid")
    routes: list[str] = Field(default_factory=list, description="extra prefixes routed to the host (Ingress addresses)")


class CloudFacts(BaseModel):
    """The run plan's facts the cloud controller programs the VPC from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster_name: str
    subnet: str
    pod_range: str
    external_range: str
    gateways: list[str] = Field(default_factory=list)
    hosts: list[CloudHost]
    dpid: int = Field(default=1, description="the fabric bridge of a single machine")
    state_dir: str | None = Field(default=None, description="where the IAP key lives; None: a fresh key")
    extra: dict | None = Field(default=None, description="copied into the VPC state (several machines: tunnels)")
