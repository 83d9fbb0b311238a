"""Pod networking on real namespaces: static neighbours on both sides of each pod's veth.

The kernel keeps one ARP table for every namespace and refuses dynamic entries past
gc_thresh3 (1024) host-wide, which at 300 nodes stopped all traffic. Pods and their node
therefore know each other's MACs statically; what a user sees is traffic that flows
without a dynamic entry on the node<->pod paths, and a reused IP that reaches its new pod.
"""
import os
import shutil

import pytest

from emulator.kernel import netns as kernel_netns
from emulator.naming import RunNames, new_run_id
from emulator.node.podnet import CALICO_GATEWAY, PodNetwork, ip_mac
from tests.netns.fabric_helpers import sh

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2")]
POD_CIDR = "10.89.7.0/24"
NODE_IP = "10.88.7.5/32"


@pytest.fixture(params=["native", "calico"])
def node(request):
    """(node_ns, podnet, names): a node namespace that forwards, in either networking mode."""
    names = RunNames(new_run_id())
    node_ns = f"{names.prefix}-node"
    kernel_netns.add(node_ns)
    podnet = PodNetwork(node_ns, POD_CIDR, request.param)
    made: list[tuple[str, str]] = []
    try:
        sh("ip", "-n", node_ns, "link", "set", "lo", "up")
        sh("ip", "-n", node_ns, "addr", "add", NODE_IP, "dev", "lo")   # the node's own address (eth0's)
        sh("ip", "netns", "exec", node_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        podnet.setup_node()
        yield node_ns, podnet, names, made
    finally:
        for pod_ns, ip in made:
            podnet.remove_pod(pod_ns, ip)
        kernel_netns.delete(node_ns)


def neigh(ns: str) -> list[str]:
    return [line.strip() for line in sh("ip", "-n", ns, "neigh", "show").splitlines() if line.strip()]


def ping(ns: str, ip: str) -> str:
    return sh("ip", "netns", "exec", ns, "ping", "-c", "2", "-W", "2", ip)


def add(podnet, names, made, name):
    pod_ns = names.pod_netns("default", name)
    ip = podnet.add_pod(pod_ns, "default", name)
    made.append((pod_ns, ip))
    return pod_ns, ip


def test_pods_and_node_reach_each_other_through_static_neighbours(node):
    node_ns, podnet, names, made = node
    a_ns, a = add(podnet, names, made, "a")
    b_ns, b = add(podnet, names, made, "b")
    assert "2 received" in ping(a_ns, b)          # pod to pod on the node
    assert "2 received" in ping(node_ns, a)       # node to pod (kubelet probes, NodePort DNAT)
    gw, gw_mac = ((podnet.ipam.gateway, ip_mac(podnet.ipam.gateway)) if podnet.mode == "native"
                  else (CALICO_GATEWAY, "ee:ee:ee:ee:ee:ee"))
    assert f"{gw} dev eth0 lladdr {gw_mac} PERMANENT" in neigh(a_ns)
    node_entries = {line.split()[0]: line for line in neigh(node_ns)}
    for ip in (a, b):
        assert f"lladdr {ip_mac(ip)} PERMANENT" in node_entries[ip]
    assert all("PERMANENT" in line for line in node_entries.values()), node_entries


def test_a_reused_ip_reaches_its_new_pod_and_a_removed_one_leaves_no_entry(node):
    node_ns, podnet, names, made = node
    add(podnet, names, made, "a")
    b_ns, b = add(podnet, names, made, "b")
    podnet.remove_pod(b_ns, b)
    made.remove((b_ns, b))
    assert not [line for line in neigh(node_ns) if line.startswith(f"{b} ")]
    c_ns, c = add(podnet, names, made, "c")
    assert c == b                                  # host-local IPAM hands the freed address out again
    assert "2 received" in ping(node_ns, c)
    assert sh("ip", "-n", c_ns, "-br", "link", "show", "eth0").split()[2] == ip_mac(c)
