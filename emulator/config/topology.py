"""The topology model: VPC, cluster ranges, node pools and client hosts, with derived nodes.

A topology is pure data. `Topology.nodes()` expands node pools into named nodes; the
cross-field checks (`topology_problems`) report overlapping ranges, too-small ranges and
name clashes as (field path, message) pairs so the loader can name file and line.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emulator.config.limits import MAX_CLIENTS, MAX_NODES, MAX_NODES_PER_ZONE
from emulator.config.types import Cidr, DnsLabel, WholeNumber
from emulator.config.impairments import Impairments

ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
HOSTNAME_LABEL = "kubernetes.io/hostname"
NODEPOOL_LABEL = "cloud.google.com/gke-nodepool"
OS_LABEL = "kubernetes.io/os"
SPARE_SUBNET_ADDRESSES = 10
GCP_RESERVED_ADDRESSES = 4   # network, gateway (.1), second-to-last, broadcast

PodPrefix = Annotated[int, WholeNumber, Field(ge=24, le=28, description="per-node pod range prefix length")]
Loc = tuple[str | int, ...]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Vpc(StrictModel):
    """The VPC network: node/VM subnet and the ranges for external LB IPs and internet hosts."""

    subnet: Cidr = Field(description="node and VM IPs; .1 is the VPC gateway")
    external_range: Cidr = Field(default=ipaddress.IPv4Network("203.0.113.0/24"),
                                 description="external load balancer IPs")
    internet_range: Cidr = Field(default=ipaddress.IPv4Network("198.51.100.0/24"),
                                 description="addresses of internet client hosts")

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The VPC gateway address (first host of the subnet)."""
        return self.subnet.network_address + 1


class NodePool(StrictModel):
    """A group of identical nodes spread over zones."""

    name: DnsLabel
    zones: list[DnsLabel] = Field(min_length=1)
    nodes_per_zone: Annotated[int, WholeNumber, Field(ge=1, le=MAX_NODES_PER_ZONE)] = 1
    pod_range_per_node: PodPrefix | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    tags: list[DnsLabel] = Field(default_factory=list)


class Cluster(StrictModel):
    """The GKE cluster: its ranges, networking mode and node pools."""

    name: DnsLabel
    pod_range: Cidr = ipaddress.IPv4Network("10.4.0.0/14")
    service_range: Cidr = ipaddress.IPv4Network("10.8.0.0/20")
    pod_range_per_node: PodPrefix = 24
    network_mode: Literal["native", "calico"] = "native"
    network_policy: bool = Field(default=False, description="enforce NetworkPolicy (needs network_mode: calico)")
    node_pools: list[NodePool] = Field(min_length=1)

    def pool_prefixlen(self, pool: NodePool) -> int:
        """Per-node pod range prefix length of a pool (its override or the cluster default)."""
        return pool.pod_range_per_node or self.pod_range_per_node


class Client(StrictModel):
    """An emulated host outside the cluster: an internet client or a VM in the VPC."""

    name: DnsLabel
    kind: Literal["internet", "vm"]
    zone: DnsLabel | None = Field(default=None, description="vm only; default: the first zone")


@dataclass(frozen=True)
class NodeSpec:
    """One node derived from a node pool: name, placement, labels, tags, pod range size."""

    name: str
    pool: str
    zone: str
    index: int                      # 0-based position in Topology.nodes()
    labels: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    pod_prefixlen: int = 24


def zone_suffix(zone: str) -> str:
    """`us-central1-a` -> `a`."""
    return zone.rsplit("-", 1)[-1]


def zone_region(zone: str) -> str:
    """`us-central1-a` -> `us-central1` (the zone itself when it has no '-')."""
    return zone.rsplit("-", 1)[0]


_PORTS_RE = r"^[0-9]{1,5}(-[0-9]{1,5})?$"


class FirewallProtocol(StrictModel):
    """One protocol (and optional ports or port ranges) a firewall rule matches."""

    protocol: Literal["tcp", "udp", "icmp", "all"]
    ports: list[Annotated[str, Field(pattern=_PORTS_RE)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ports_valid(self) -> "FirewallProtocol":
        """Ports only for tcp/udp; each in 1-65535, ranges low-high."""
        if self.ports and self.protocol not in ("tcp", "udp"):
            raise ValueError(f"ports apply to tcp and udp only, not {self.protocol}")
        for p in self.ports:
            lo, _, hi = p.partition("-")
            lo_i, hi_i = int(lo), int(hi or lo)
            if not 1 <= lo_i <= hi_i <= 65535:
                raise ValueError(f"port range {p!r} is not within 1-65535 (low-high)")
        return self


class FirewallRule(StrictModel):
    """A VPC firewall rule, as in GCP: evaluated in the fabric, stateful."""

    name: DnsLabel
    direction: Literal["ingress", "egress"] = "ingress"
    action: Literal["allow", "deny"]
    priority: Annotated[int, WholeNumber, Field(ge=0, le=65535)] = 1000
    source_ranges: list[Cidr] = Field(default_factory=list)
    destination_ranges: list[Cidr] = Field(default_factory=list)
    target_tags: list[DnsLabel] = Field(default_factory=list, description="instances the rule applies to")
    protocols: list[FirewallProtocol] = Field(min_length=1)

    @model_validator(mode="after")
    def _ranges_for_direction(self) -> "FirewallRule":
        """Ingress rules name their sources; egress rules their destinations (GCP's rule)."""
        if self.direction == "ingress" and not self.source_ranges:
            raise ValueError("an ingress rule needs source_ranges")
        if self.direction == "egress" and not self.destination_ranges:
            raise ValueError("an egress rule needs destination_ranges")
        return self

    def to_state(self) -> dict:
        """The dict the SDN controller's state takes."""
        return {"name": self.name, "direction": self.direction, "action": self.action,
                "priority": self.priority, "source_ranges": [str(r) for r in self.source_ranges],
                "destination_ranges": [str(r) for r in self.destination_ranges],
                "target_tags": list(self.target_tags),
                "protocols": [{"protocol": p.protocol, "ports": list(p.ports)} for p in self.protocols]}


class Topology(StrictModel):
    """A VPC with one GKE cluster and optional client hosts."""

    name: DnsLabel
    vpc: Vpc
    cluster: Cluster
    clients: list[Client] = Field(default_factory=list, max_length=MAX_CLIENTS)
    firewall: list[FirewallRule] = Field(default_factory=list, description="VPC firewall rules")
    impairments: Impairments = Field(default_factory=Impairments,
                                     description="delay, jitter, loss, rate per link class")

    def nodes(self) -> list[NodeSpec]:
        """All nodes: for each pool, for each zone in order, n = 1..nodes_per_zone."""
        out: list[NodeSpec] = []
        for pool in self.cluster.node_pools:
            for zone in pool.zones:
                for n in range(1, pool.nodes_per_zone + 1):
                    name = f"{pool.name}-{zone_suffix(zone)}-{n}"
                    labels = {**pool.labels, ZONE_LABEL: zone, REGION_LABEL: zone_region(zone),
                              HOSTNAME_LABEL: name, NODEPOOL_LABEL: pool.name, OS_LABEL: "linux"}
                    out.append(NodeSpec(name, pool.name, zone, len(out), labels, tuple(pool.tags),
                                        self.cluster.pool_prefixlen(pool)))
        return out

    def zones(self) -> list[str]:
        """Distinct zones of all node pools, in first-seen order."""
        return list(dict.fromkeys(z for p in self.cluster.node_pools for z in p.zones))

    def node(self, name: str) -> NodeSpec | None:
        """The node called `name`, if any."""
        return next((n for n in self.nodes() if n.name == name), None)

    def client_zone(self, client: Client) -> str | None:
        """Zone of a client host: its own, the first zone for a vm, None for internet hosts."""
        if client.kind == "internet":
            return None
        return client.zone or self.zones()[0]

    def client(self, name: str) -> Client | None:
        """The client host called `name`, if any."""
        return next((c for c in self.clients if c.name == name), None)

    def ranges(self) -> dict[str, ipaddress.IPv4Network]:
        """Every address range by field path, for overlap checks and IPAM."""
        return {"vpc.subnet": self.vpc.subnet, "cluster.pod_range": self.cluster.pod_range,
                "cluster.service_range": self.cluster.service_range,
                "vpc.external_range": self.vpc.external_range,
                "vpc.internet_range": self.vpc.internet_range}


def _loc(dotted: str) -> Loc:
    """`cluster.pod_range` -> ("cluster", "pod_range")."""
    return tuple(dotted.split("."))


def _written(topo: Topology, path: str) -> bool:
    """True when the field at dotted `path` was given in the file (not a default)."""
    section, name = path.split(".")
    return name in getattr(topo, section).model_fields_set


def topology_problems(topo: Topology) -> list[tuple[Loc, str]]:
    """Cross-field errors of a topology as (field path, message), in file order where possible."""
    nodes = sum(len(pool.zones) * pool.nodes_per_zone for pool in topo.cluster.node_pools)
    if nodes > MAX_NODES:
        return [(("cluster", "node_pools"), f"{nodes} nodes, more than the limit of {MAX_NODES} (MAX_NODES)")]
    problems: list[tuple[Loc, str]] = []
    ranges = topo.ranges()
    paths = list(ranges)
    for j, path in enumerate(paths):
        for other in paths[:j]:
            if ranges[path].overlaps(ranges[other]):
                if not _written(topo, path) and _written(topo, other):
                    path, other = other, path   # blame the range the file wrote, not a default
                problems.append((_loc(path), f"{ranges[path]} overlaps {other} ({ranges[other]})"))
    if topo.cluster.network_policy and topo.cluster.network_mode != "calico":
        problems.append((("cluster", "network_policy"), "network policy needs network_mode: calico "
                         "(GKE enforces it with Calico's data plane)"))
    problems += _pool_problems(topo)
    problems += _capacity_problems(topo)
    problems += _client_problems(topo)
    names = [r.name for r in topo.firewall]
    for i, n in enumerate(names):
        if n in names[:i]:
            problems.append((("firewall", i, "name"), f"duplicate firewall rule name {n!r}"))
    return problems


def _pool_problems(topo: Topology) -> list[tuple[Loc, str]]:
    """Duplicate pool names or zones, and node names that collide or are too long."""
    problems: list[tuple[Loc, str]] = []
    names: set[str] = set()
    for i, pool in enumerate(topo.cluster.node_pools):
        if pool.name in names:
            problems.append((("cluster", "node_pools", i, "name"), f"duplicate node pool {pool.name!r}"))
        names.add(pool.name)
        for j, zone in enumerate(pool.zones):
            if zone in pool.zones[:j]:
                problems.append((("cluster", "node_pools", i, "zones", j), f"duplicate zone {zone!r}"))
    node_names: set[str] = set()
    for node in topo.nodes():
        i = next(i for i, p in enumerate(topo.cluster.node_pools) if p.name == node.pool)
        if node.name in node_names:
            problems.append((("cluster", "node_pools", i, "zones"),
                             f"node name {node.name!r} is derived twice (zones end in the same letter?)"))
        elif len(node.name) > 63:
            problems.append((("cluster", "node_pools", i, "name"),
                             f"node name {node.name!r} is longer than 63 characters"))
        node_names.add(node.name)
    return problems


def _capacity_problems(topo: Topology) -> list[tuple[Loc, str]]:
    """Pod range too small for all node ranges; subnet too small for nodes and clients."""
    problems: list[tuple[Loc, str]] = []
    cluster = topo.cluster
    needed = 0
    for i, pool in enumerate(cluster.node_pools):
        prefix = cluster.pool_prefixlen(pool)
        if prefix <= cluster.pod_range.prefixlen:
            where = (("cluster", "node_pools", i, "pod_range_per_node") if pool.pod_range_per_node
                     else ("cluster", "pod_range_per_node"))
            problems.append((where, f"/{prefix} must be longer than the pod range "
                                    f"{cluster.pod_range} (/{cluster.pod_range.prefixlen})"))
            return problems
        needed += len(pool.zones) * pool.nodes_per_zone * 2 ** (32 - prefix)
    if needed > cluster.pod_range.num_addresses:
        problems.append((("cluster", "pod_range"),
                         f"{cluster.pod_range} is too small: the nodes' pod ranges need {needed} "
                         f"addresses, it has {cluster.pod_range.num_addresses}"))
    hosts = len(topo.nodes()) + len(topo.clients) + SPARE_SUBNET_ADDRESSES
    usable = topo.vpc.subnet.num_addresses - GCP_RESERVED_ADDRESSES
    if hosts > usable:
        problems.append((("vpc", "subnet"),
                         f"{topo.vpc.subnet} is too small: {len(topo.nodes())} nodes + "
                         f"{len(topo.clients)} clients + {SPARE_SUBNET_ADDRESSES} spare need "
                         f"{hosts} addresses, it has {max(usable, 0)} usable"))
    return problems


def _client_problems(topo: Topology) -> list[tuple[Loc, str]]:
    """Duplicate client names, clients named like nodes, vm zones that no pool has."""
    problems: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    node_names = {n.name for n in topo.nodes()}
    zones = topo.zones()
    for i, client in enumerate(topo.clients):
        if client.name in seen:
            problems.append((("clients", i, "name"), f"duplicate client {client.name!r}"))
        elif client.name in node_names:
            problems.append((("clients", i, "name"), f"{client.name!r} is also a node name"))
        seen.add(client.name)
        if client.kind == "internet" and client.zone is not None:
            problems.append((("clients", i, "zone"), "only a vm client has a zone"))
        elif client.zone is not None and client.zone not in zones:
            problems.append((("clients", i, "zone"),
                             f"zone {client.zone!r} is not a zone of any node pool ({', '.join(zones)})"))
    return problems
