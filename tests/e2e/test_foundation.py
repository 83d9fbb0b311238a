"""The foundation end to end: pods, cross-node traffic over the OVS fabric, DNS, ClusterIP."""
from __future__ import annotations

import ipaddress
import subprocess
import sys
import time

import pytest
import ray

pytestmark = pytest.mark.e2e

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


def pod(name: str, node: str, labels: dict | None = None, args=("netexec", "--http-port=8080")) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                     "containers": [{"name": "c", "image": AGNHOST, "args": list(args),
                                     "ports": [{"name": "http", "containerPort": 8080}]}]}}


def route_flow_packets(cluster, dst_cidr: str) -> int:
    """Packets counted by the SDN controller's route flow towards a destination range."""
    stats = ray.get(cluster.cluster.sdn.flow_stats.remote(cluster.cluster.fabric_info["dpid"]))
    return sum(f["packets"] for f in stats if f["note"].startswith(f"route {dst_cidr} "))


def test_cross_node_pod_traffic_crosses_the_fabric(cluster):
    a, b = cluster.plan.nodes[0], cluster.plan.nodes[1]
    cluster.apply(pod("srv", b.name), pod("cli", a.name, args=("pause",)))
    cluster.wait_ready("Pod", "srv")
    cluster.wait_ready("Pod", "cli")
    srv_ip = cluster.get("Pod", "srv")["status"]["podIP"]
    assert ipaddress.ip_address(srv_ip) in ipaddress.ip_network(b.pod_cidr)
    before = route_flow_packets(cluster, b.pod_cidr)
    recs = cluster.http_load("pod/cli", f"http://{srv_ip}:8080/clientip", requests=20)
    assert [r["outcome"] for r in recs] == ["ok"] * 20
    cli_ip = cluster.get("Pod", "cli")["status"]["podIP"]
    assert {r["client_ip_seen"] for r in recs} == {cli_ip}      # no NAT pod to pod
    assert {r["node"] for r in recs} == {b.name}
    deadline = time.time() + 5
    while route_flow_packets(cluster, b.pod_cidr) - before < 20 and time.time() < deadline:
        time.sleep(0.3)  # OVS refreshes flow counters about once a second
    assert route_flow_packets(cluster, b.pod_cidr) - before >= 20


def test_clusterip_by_dns_name_balances_over_pods(cluster):
    cluster.apply(*[pod(f"web{i}", n.name, {"app": "web"}) for i, n in enumerate(cluster.plan.nodes)],
                  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}},
                  pod("client", cluster.plan.nodes[0].name, args=("pause",)))
    for name in ("web0", "web1", "web2", "client"):
        cluster.wait_ready("Pod", name)
    cluster.synced()
    recs = cluster.http_load("pod/client", "http://web.default.svc.cluster.local/hostname", requests=60)
    assert all(r["outcome"] == "ok" for r in recs)
    assert {r["pod"] for r in recs} == {"web0", "web1", "web2"}
    svc_ip = cluster.get("Service", "web")["spec"]["clusterIP"]
    assert {r["remote_ip"] for r in recs} == {svc_ip}
    # requests DNATed to pods on nodes b and c crossed the fabric (route flows counted them)
    for n in cluster.plan.nodes[1:]:
        deadline = time.time() + 5
        while route_flow_packets(cluster, n.pod_cidr) == 0 and time.time() < deadline:
            time.sleep(0.3)
        assert route_flow_packets(cluster, n.pod_cidr) > 0


def test_kubemu_iptables_prints_the_nodes_rules(cluster):
    node = cluster.plan.nodes[0].name
    prefix = cluster.cluster.names.prefix
    res = subprocess.run([sys.executable, "-m", "emulator.cli", "iptables", node, "--run", prefix[len("kubemu"):]],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "*nat" in res.stdout and ":KUBE-SERVICES - [0:0]" in res.stdout
    assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in res.stdout


def test_pod_sees_pod_ip_gateway_and_dns_config(cluster):
    cluster.apply(pod("probe", cluster.plan.nodes[2].name, args=("pause",)))
    cluster.wait_ready("Pod", "probe")
    out = cluster.exec_in("pod/probe", ["cat", "/etc/resolv.conf"])["stdout"]
    assert f"nameserver {cluster.plan.dns_ip}" in out and "default.svc.cluster.local" in out
    route = cluster.exec_in("pod/probe", ["ip", "route"])["stdout"]
    gw = str(ipaddress.ip_network(cluster.plan.nodes[2].pod_cidr).network_address + 1)
    assert f"default via {gw}" in route
    missing = cluster.exec_in("pod/probe", ["getent", "hosts", "nope.default.svc.cluster.local"])
    assert missing["rc"] != 0
