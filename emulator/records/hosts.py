"""The spec of one planned host (a node or a client host), handed to its node agent."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class HostSpec(BaseModel):
    """A host of the run plan: its fabric port and addresses; nodes also carry their pod range and settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Literal["node", "host"] = Field(description="node: a cluster node; host: a VM, internet or prober host")
    ip: str
    gateway: str
    gateway_mac: str | None = Field(default=None, description="the VPC router's MAC, a static neighbour "
                                    "entry for the gateway (None: learnt by ARP)")
    fabric_port: str = Field(description="the host's port name on the fabric bridge")
    zone: str | None = None
    kind: str | None = Field(default=None, description="hosts only: vm | internet | prober")
    # --- nodes only ---
    pod_cidr: str | None = None
    pool: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    cluster_cidr: str | None = None
    network_mode: str = "native"
    iptables_backend: str = "auto"
    network_policy: bool = False

    @property
    def is_node(self) -> bool:
        """True for a cluster node."""
        return self.role == "node"


class HostInfo(BaseModel):
    """What a node agent reports once it built its host: its MAC, namespace and where it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    mac: str
    netns: str
    fabric_port: str
    seconds: float = Field(description="how long building the host took")
    hostname: str = Field(description="the machine the agent runs on")
    ray_node_id: str | None = Field(description="the Ray node the agent runs on; None outside Ray")
    node_info: dict[str, str] = Field(description="status.nodeInfo as a kubelet reports it")
