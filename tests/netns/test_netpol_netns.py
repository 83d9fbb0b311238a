"""The enforcer on a real node namespace with Calico-style pods: real connects are blocked and
allowed again, established connections survive, and the FORWARD hook stays first."""
from __future__ import annotations

import socket
import subprocess
from typing import Iterator

import pytest

from emulator.kernel.iptables import IptablesRunner
from emulator.naming import RunNames, new_run_id
from emulator.kernel.netns import socket_in
from emulator.netpol.enforcer import PolicyEnforcer
from emulator.netpol.render import FORWARD_CHAIN, HOOK
from emulator.kernel import links
from emulator.node.podnet import PodNetwork
from fabric_helpers import sh

pytestmark = pytest.mark.netns


def _pod(name: str, ip: str, labels: dict) -> dict:
    return {"metadata": {"name": name, "namespace": "x", "labels": labels},
            "spec": {"nodeName": "n1", "containers": []}, "status": {"podIP": ip}}


class World:
    """A node namespace with two pods; `objects` is what the enforcer's informer would hold."""

    def __init__(self, prefix: str) -> None:
        self.node = f"{prefix}-node-n1"
        self.names = RunNames(prefix[len("kubemu"):])
        self.pods: list[dict] = []
        self.policies: list[dict] = []
        self.net = PodNetwork(self.node, "10.4.0.0/24", "calico")

    def snapshot(self):
        return self.pods, [], self.policies


@pytest.fixture
def world() -> Iterator[World]:
    prefix = f"kubemu{new_run_id()}"
    w = World(prefix)
    sh("ip", "netns", "add", w.node)
    netns = []
    try:
        sh("ip", "netns", "exec", w.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # A node NIC with the default route: proxy ARP answers for the pods' gateway only
        # when the node can route to it (as a real node, whose default route is on eth0).
        links.ip_batch(w.node, ["link set lo up", "link add eth0 type veth peer name eth0p", "link set eth0p up", "addr add 10.128.0.2/32 dev eth0",
                                 "link set eth0 up", "route add default dev eth0"])
        for name, labels in (("a", {"pod": "a"}), ("b", {"pod": "b"})):
            ns = w.names.pod_netns("x", name)
            netns.append(ns)
            ip = w.net.add_pod(ns, "x", name)
            w.pods.append(_pod(name, ip, labels))
        yield w
    finally:
        for ns in netns:
            w.net.remove_pod(ns, None)
        sh("ip", "netns", "del", w.node)


def connects(src_ns: str, ip: str, port: int, timeout: float = 0.5) -> str:
    sock = socket_in(src_ns, listen=None)
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
        return "ok"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    finally:
        sock.close()


def test_policy_blocks_and_allows_real_connections(world):
    a, b = world.pods
    server = socket_in(world.names.pod_netns("x", "b"), bind=("0.0.0.0", 8080))
    runner = IptablesRunner(["ip", "netns", "exec", world.node])
    enf = PolicyEnforcer("n1", world.node, runner, world.snapshot)
    a_ns, b_ip = world.names.pod_netns("x", "a"), b["status"]["podIP"]
    try:
        enf.sync()
        assert connects(a_ns, b_ip, 8080) == "ok"
        established = socket_in(a_ns, listen=None)
        established.settimeout(2)
        established.connect((b_ip, 8080))
        server.settimeout(2)
        server.accept()[0].close()                          # the probe's connection
        peer, _ = server.accept()
        peer.settimeout(2)
        # Deny ingress to b except from pods labelled pod=c: a's new connections time out.
        world.policies = [{"metadata": {"name": "only-c", "namespace": "x"},
                           "spec": {"podSelector": {"matchLabels": {"pod": "b"}},
                                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}]}]}}]
        assert enf.sync() is True
        assert connects(a_ns, b_ip, 8080) == "timeout"
        established.sendall(b"still here")                 # replies of allowed connections pass
        assert peer.recv(100) == b"still here"
        # A label change makes a an allowed peer.
        a["metadata"]["labels"] = {"pod": "c"}
        enf.sync()
        assert connects(a_ns, b_ip, 8080) == "ok"
        # A kube-proxy-like rule inserted first: the next periodic sync puts our hook back in front.
        sh("ip", "netns", "exec", world.node, "iptables-legacy", "-I", "FORWARD", "1", "-j", "ACCEPT")
        assert enf.sync() is False                          # an event-driven sync with no change: no kernel call
        enf.check_canary()
        assert enf.sync() is True
        assert connects(a_ns, b_ip, 8080) == "ok"
        forward = [ln for ln in runner.save(("filter",)).splitlines() if ln.startswith("-A FORWARD")]
        assert forward[0] == HOOK and forward.count(HOOK) == 1
        enf.check_canary()
        assert enf.sync() is False                          # hook first, rules in place: nothing to apply
        # Policy gone: chains and sets of b go too.
        world.policies = []
        enf.sync()
        saved = runner.save(("filter",))
        assert [ln for ln in saved.splitlines() if ln.startswith(":cali-")] == [f":{FORWARD_CHAIN} - [0:0]"]
        sets = subprocess.run(["ip", "netns", "exec", world.node, "ipset", "list", "-n"],
                              capture_output=True, text=True).stdout.split()
        assert sets == []
        established.close()
        peer.close()
    finally:
        server.close()
