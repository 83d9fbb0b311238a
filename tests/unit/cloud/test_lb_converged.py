"""The cloud controller's answer to "does this load balancer send to the nodes it should"."""
from __future__ import annotations

import pytest

from emulator.cloud.vpcstate import lb_converged

pytestmark = pytest.mark.unit


def svc(policy: str = "Cluster") -> dict:
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": {"externalTrafficPolicy": policy}}


def state(*entries: tuple[str, list[str]]) -> dict:
    return {"load_balancers": [{"name": n, "backends": b, "all_backends": ["n1", "n2", "n3"]} for n, b in entries]}


def test_cluster_policy_wants_every_targeted_node_that_is_up() -> None:
    assert lb_converged(state(("default/web", ["n1", "n2", "n3"])), svc(), [], [])
    assert not lb_converged(state(("default/web", ["n1", "n2"])), svc(), [], [])
    assert lb_converged(state(("default/web", ["n1", "n2"])), svc(), [], ["n3"])


def test_local_policy_wants_the_nodes_with_a_ready_endpoint() -> None:
    assert lb_converged(state(("default/web", ["n2"])), svc("Local"), ["n2"], [])
    assert not lb_converged(state(("default/web", ["n1", "n2", "n3"])), svc("Local"), ["n2"], [])


def test_every_protocol_entry_must_agree_and_no_entry_is_not_ready() -> None:
    both = state(("default/web/tcp", ["n1", "n2", "n3"]), ("default/web/udp", ["n1"]))
    assert not lb_converged(both, svc(), [], [])
    assert not lb_converged(state(("default/other", ["n1", "n2", "n3"])), svc(), [], [])
    assert not lb_converged(None, svc(), [], [])
