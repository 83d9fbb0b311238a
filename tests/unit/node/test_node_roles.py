"""A node's lifecycle under faults (crash, partition, recover, kube-proxy crash, stop) and the hosts' roles.

The node's components come from a recording `NodeParts`; the cable, conntrack and the
neighbour cache are the only kernel calls, recorded instead of run. What is checked is
what a fault must do: which components stop or start fresh, what the cable and the API
client do, and that another node of the same process is left alone.
"""
from __future__ import annotations

import types

import pytest

from emulator.api.apilink import ApiUnreachable
from emulator.config.timing import timing_for
from emulator.naming import RunNames
from emulator.node import chaos, emulated_host
from emulator.node.agent import NodeAgent, RoleError, host_for
from emulator.node.cluster_node import ClusterNode, NodeParts
from emulator.node.roles import ClientHost, ProberHost
from emulator.records.hosts import HostSpec

pytestmark = pytest.mark.unit
RUN = "q3zx"


class Part:
    """A component that records its lifecycle calls into the shared journal."""

    def __init__(self, journal: list, kind: str, node: str, n: int) -> None:
        self.journal, self.kind, self.node, self.id = journal, kind, node, f"{kind}{n}"
        self.synced_mark = 0

    def _note(self, what: str) -> None:
        self.journal.append((self.node, what, self.id))

    def start(self) -> "Part":
        self._note("start")
        return self

    def stop(self) -> None:
        self._note("stop")

    def pause(self) -> None:
        self._note("pause")

    def resume(self) -> None:
        self._note("resume")

    def close(self) -> None:
        self._note("close")

    def list(self, kind: str) -> list:
        return []

    def pod_netns(self, ns: str, name: str) -> str | None:
        return f"pod-{ns}-{name}" if name == "web" else None


class RecordingParts(NodeParts):
    """Builds `Part`s (numbered per kind, so a fresh one is told from the old one)."""

    def __init__(self, journal: list) -> None:
        self.journal, self.count = journal, {}

    def _new(self, kind: str, node: ClusterNode) -> Part:
        self.count[kind] = self.count.get(kind, 0) + 1
        return Part(self.journal, kind, node.name, self.count[kind])

    def workloads(self, node):
        return self._new("workloads", node)

    def kube_proxy(self, node):
        return self._new("kube-proxy", node)

    def kubelet(self, node):
        return self._new("kubelet", node)

    def policy(self, node):
        return self._new("policy", node) if node.spec.network_policy else None

    def lease(self, node):
        return self._new("lease", node)


class FakeApi:
    """An API server handle: every method is callable with `.remote`."""

    def __getattr__(self, name: str):
        return types.SimpleNamespace(remote=lambda *a, **k: None)


@pytest.fixture
def kernel(monkeypatch) -> list:
    """The kernel calls hosts make (cable, conntrack, neighbours), recorded."""
    calls: list = []
    monkeypatch.setattr(emulated_host.links, "set_link_up",
                        lambda netns, port, up: calls.append(("link", port, up)))
    monkeypatch.setattr(emulated_host.links, "neigh_flush",
                        lambda netns, *sel, check=True: calls.append(("neigh-flush", netns)))
    monkeypatch.setattr(emulated_host.conntrack, "flush", lambda netns: calls.append(("conntrack-flush", netns)))
    return calls


def node_spec(name: str, policy: bool = True) -> HostSpec:
    return HostSpec(name=name, role="node", ip="10.128.0.2", gateway="10.128.0.1", fabric_port=f"p-{name}",
                    pod_cidr="10.4.1.0/24", cluster_cidr="10.4.0.0/14", network_policy=policy)


def host_spec(name: str, kind: str = "vm") -> HostSpec:
    return HostSpec(name=name, role="host", kind=kind, ip="10.128.0.9", gateway="10.128.0.1",
                    fabric_port=f"p-{name}")


def on_fabric(host, journal: list):
    """The host as if `create` had built its namespace and link (the fabric end's name is what is used)."""
    host.fabric = types.SimpleNamespace(fabric_netns="fabric", fabric_port=host.spec.fabric_port,
                                        destroy=lambda: journal.append((host.name, "destroy", "netns")))
    return host


def started_node(name: str, journal: list, policy: bool = True) -> ClusterNode:
    node = on_fabric(ClusterNode(RunNames(RUN), node_spec(name, policy), "/nonexistent", RecordingParts(journal)),
                     journal)
    node.start(FakeApi(), timing_for("fast"), dns=None)
    return node


def of(journal: list, node: str) -> list:
    return [(what, part) for n, what, part in journal if n == node]


def test_start_boots_every_component_once_in_order(kernel) -> None:
    journal: list = []
    node = started_node("n1", journal)
    assert of(journal, "n1") == [("start", "kube-proxy1"), ("start", "policy1"), ("start", "kubelet1"),
                                 ("start", "lease1")]
    assert node.api.reachable and node.fault_state is None and kernel == []
    plain = started_node("n2", journal, policy=False)
    assert plain.policy is None and ("start", "kubelet1") in of(journal, "n2")


def test_crash_stops_every_process_unplugs_and_forgets_kernel_state_of_that_node_only(kernel) -> None:
    journal: list = []
    n1, n2 = started_node("n1", journal), started_node("n2", journal)
    journal.clear()
    rec = n1.crash()
    assert rec["action"] == "crash" and n1.fault_state == "crashed"
    assert sorted(of(journal, "n1")) == [("stop", "kube-proxy1"), ("stop", "kubelet1"), ("stop", "lease1"),
                                         ("stop", "policy1")]
    assert n1.kubelet is None and n1.lease is None and n1.policy is None
    assert kernel == [("link", "p-n1", False), ("conntrack-flush", n1.netns), ("neigh-flush", n1.netns)]
    with pytest.raises(ApiUnreachable):
        n1.api.get.remote("Node", "", "n1")
    assert of(journal, "n2") == [] and n2.api.reachable and n2.fault_state is None


def test_recover_after_a_crash_boots_fresh_components(kernel) -> None:
    journal: list = []
    n1, n2 = started_node("n1", journal), started_node("n2", journal)
    n1.crash()
    journal.clear()
    kernel.clear()
    rec = n1.recover()
    assert rec == {"t": rec["t"], "action": "recover", "from": "crashed"}
    assert of(journal, "n1") == [("start", "kube-proxy1"), ("start", "policy2"), ("start", "kubelet2"),
                                 ("start", "lease2")]
    assert n1.kube_proxy.id == "kube-proxy1"     # one kube-proxy object, restarted (a fresh process inside)
    assert kernel == [("link", "p-n1", True)] and n1.api.reachable and n1.fault_state is None
    assert of(journal, "n2") == []


def test_partition_only_cuts_the_cable_and_recover_reconnects_the_running_parts(kernel) -> None:
    journal: list = []
    n1 = started_node("n1", journal)
    journal.clear()
    assert n1.partition()["action"] == "partition" and n1.fault_state == "partitioned"
    assert of(journal, "n1") == [("pause", "lease1")] and kernel == [("link", "p-n1", False)]
    assert not n1.api.reachable and n1.kubelet.id == "kubelet1"
    assert n1.recover()["from"] == "partitioned"
    assert of(journal, "n1") == [("pause", "lease1"), ("resume", "lease1")]
    assert kernel[-1] == ("link", "p-n1", True) and n1.api.reachable


def test_kube_proxy_crash_restarts_kube_proxy_alone(kernel) -> None:
    journal: list = []
    n1 = started_node("n1", journal)
    journal.clear()
    rec = n1.kube_proxy_crash(down=0)
    assert rec["action"] == "kube_proxy_crash" and rec["restarted"] >= rec["t"]
    assert of(journal, "n1") == [("stop", "kube-proxy1"), ("start", "kube-proxy1")] and kernel == []


def test_link_flap_takes_the_cable_out_and_back(kernel) -> None:
    n1 = started_node("n1", [])
    rec = chaos.run(n1, "link_flap", down=0)
    assert rec["up"] >= rec["t"] and kernel == [("link", "p-n1", False), ("link", "p-n1", True)]
    assert n1.api.reachable


def test_stop_ends_everything_even_when_a_part_fails(kernel) -> None:
    journal: list = []
    n1 = started_node("n1", journal)
    journal.clear()

    def broken() -> None:
        raise RuntimeError("lease thread gone")
    n1.lease.stop = broken
    n1.stop()
    assert sorted(of(journal, "n1")) == [("close", "workloads1"), ("destroy", "netns"), ("stop", "kube-proxy1"),
                                         ("stop", "kubelet1"), ("stop", "policy1")]


def test_chaos_refuses_what_a_host_cannot_do(kernel) -> None:
    vm = on_fabric(ClientHost(RunNames(RUN), host_spec("vm1"), "/nonexistent", "ns-vm1"), [])
    with pytest.raises(chaos.ChaosError, match="'kube_proxy_crash' on host vm1"):
        chaos.run(vm, "kube_proxy_crash")
    with pytest.raises(chaos.ChaosError, match="no chaos action 'stop'"):
        chaos.run(vm, "stop")


def test_a_client_host_crash_unplugs_and_forgets_and_recover_plugs_back(kernel) -> None:
    vm = on_fabric(ClientHost(RunNames(RUN), host_spec("vm1"), "/nonexistent", "ns-vm1"), [])
    chaos.run(vm, "crash")
    assert kernel == [("link", "p-vm1", False), ("conntrack-flush", "ns-vm1"), ("neigh-flush", "ns-vm1")]
    assert chaos.run(vm, "recover")["from"] == "crashed" and kernel[-1] == ("link", "p-vm1", True)


def test_the_agent_picks_each_hosts_role_and_answers_for_roles_it_lacks() -> None:
    names = RunNames(RUN)
    assert type(host_for(names, node_spec("n1"), "/x")) is ClusterNode
    assert type(host_for(names, host_spec("gcp-prober", "prober"), "/x")) is ProberHost
    assert type(host_for(names, host_spec("inet", "internet"), "/x")) is ClientHost
    vm = NodeAgent(RUN, host_spec("vm1"), "/x")
    assert vm.netns == names.host_netns("vm1") and vm.start(None, None, None) is True
    assert (vm.proxy_synced_rv(), vm.netpol_synced_rv(), vm.iptables_save(), vm.iptables_backend()) == (0, 0, "", None)
    assert vm.proxy_servers() == {} and vm.ping() == "vm1"
    with pytest.raises(KeyError, match="pod default/web is not running on vm1"):
        vm.pod_exec("default/web", ["true"])
    with pytest.raises(KeyError, match="not running on vm1"):
        vm.host.netns_of("default/web")
    with pytest.raises(RoleError, match="vm1 is a host, not the prober host"):
        vm.http_probes([], 1.0)
    prober = NodeAgent(RUN, host_spec("gcp-prober", "prober"), "/x")
    assert prober.proxy_servers() == {}    # no Ingress proxy until the first config
    node = NodeAgent(RUN, node_spec("n1"), "/x")
    assert node.netns == names.node_netns("n1") and node.proxy_synced_rv() == 0


def test_a_node_finds_its_pods_namespaces(kernel) -> None:
    n1 = started_node("n1", [])
    assert n1.netns_of("") == n1.netns and n1.netns_of("default/web") == "pod-default-web"
    with pytest.raises(KeyError, match="pod default/db is not running on n1"):
        n1.netns_of("default/db")
    n1.crash()
    with pytest.raises(KeyError, match="not running on n1"):    # a crashed node runs no pods
        n1.netns_of("default/web")
