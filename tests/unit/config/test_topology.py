"""Topology files: defaults, derived nodes, the shipped topologies."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from emulator.config import Topology, check, load_topology

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"


def test_regional_3_nodes_are_zone_major_with_gke_labels() -> None:
    """One node per zone, named <pool>-<zone suffix>-<n>, labelled like GKE nodes."""
    topo = load_topology(REPO / "topologies" / "regional-3.yaml")
    nodes = topo.nodes()
    assert [n.name for n in nodes] == ["default-pool-a-1", "default-pool-b-1", "default-pool-c-1"]
    assert [n.index for n in nodes] == [0, 1, 2]
    first = nodes[0]
    assert (first.pool, first.zone, first.pod_prefixlen) == ("default-pool", "us-central1-a", 24)
    assert first.labels == {
        "topology.kubernetes.io/zone": "us-central1-a", "topology.kubernetes.io/region": "us-central1",
        "kubernetes.io/hostname": "default-pool-a-1", "cloud.google.com/gke-nodepool": "default-pool",
        "kubernetes.io/os": "linux"}
    assert [(c.name, c.kind) for c in topo.clients] == [("inet-1", "internet"), ("vm-1", "vm")]
    assert topo.vpc.gateway == ipaddress.IPv4Address("10.128.0.1")


def test_regional_3x2_has_two_nodes_per_zone() -> None:
    """n counts within each zone."""
    topo = load_topology(REPO / "topologies" / "regional-3x2.yaml")
    assert [n.name for n in topo.nodes()] == [
        "default-pool-a-1", "default-pool-a-2", "default-pool-b-1", "default-pool-b-2",
        "default-pool-c-1", "default-pool-c-2"]
    assert check(REPO / "topologies" / "regional-3x2.yaml").startswith("topology regional-3x2: ok: 6 nodes")


def test_defaults_fill_optional_ranges() -> None:
    """GKE-like defaults for every range not written."""
    topo = load_topology(FIXTURES / "good" / "topology-3x2.yaml")
    assert {k: str(v) for k, v in topo.ranges().items()} == {
        "vpc.subnet": "10.128.0.0/28", "cluster.pod_range": "10.4.0.0/14",
        "cluster.service_range": "10.8.0.0/20", "vpc.external_range": "203.0.113.0/24",
        "vpc.internet_range": "198.51.100.0/24"}
    assert topo.cluster.network_mode == "native"
    assert topo.clients == []


def test_pool_overrides_pod_prefix_and_labels() -> None:
    """A pool's pod_range_per_node, labels and tags reach its nodes."""
    topo = Topology.model_validate({
        "name": "t", "vpc": {"subnet": "10.0.0.0/24"},
        "cluster": {"name": "c", "pod_range": "10.20.0.0/22", "pod_range_per_node": 25, "node_pools": [
            {"name": "small", "zones": ["eu-b"], "pod_range_per_node": 28},
            {"name": "big", "zones": ["eu-b"], "labels": {"tier": "big"}, "tags": ["web"]}]},
        "clients": [{"name": "vm-1", "kind": "vm"}]})
    small, big = topo.nodes()
    assert (small.name, small.pod_prefixlen, small.tags) == ("small-b-1", 28, ())
    assert (big.name, big.pod_prefixlen, big.tags, big.labels["tier"]) == ("big-b-1", 25, ("web",), "big")
    assert topo.client_zone(topo.clients[0]) == "eu-b"
    assert topo.node("big-b-1") == big and topo.node("nope") is None


def test_json_schema_of_topology() -> None:
    """pydantic gives a JSON Schema; CIDRs are strings there."""
    schema = Topology.model_json_schema()
    assert schema["$defs"]["Vpc"]["properties"]["subnet"]["type"] == "string"
    assert schema["additionalProperties"] is False
