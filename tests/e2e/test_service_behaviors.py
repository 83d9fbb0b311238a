"""kube-proxy behaviours of issue 3 proven with real traffic in a 3-node, 3-zone cluster (part 1).

What a user sees: which pods answer, the client address a pod sees, refusal vs
timeout, response codes and bodies. Part 2 (`test_service_behaviors_2.py`) covers
affinity, hairpin, endpoint readiness, updates under traffic and chain names.
Shared helpers live in `service_helpers.py`.
"""
from __future__ import annotations

import json

import pytest
import ray

from service_helpers import (AGNHOST, A, B, C, NODES, VM_IP, client_pods, cluster_ip, curl, failures, gateway_of,
                             netexec_pod, node_port, outcomes, pod, pod_ip, service, udp, up, wait_until)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clients(cluster):
    return client_pods(cluster)


# ---- ClusterIP -------------------------------------------------------------------

def test_clusterip_maps_port_to_numeric_target_port(cluster, clients):
    up(cluster, netexec_pod("tp-0", A, {"app": "tp"}), netexec_pod("tp-1", B, {"app": "tp"}),
       service("tp", {"app": "tp"}, [{"port": 80, "targetPort": 8080}]), pods=2)
    ip = cluster_ip(cluster, "tp")
    recs = cluster.http_load(f"pod/{clients[C]}", f"http://{ip}:80/hostname", requests=20)
    assert outcomes(recs) == {"ok": 20}, failures(recs)
    assert {r["pod"] for r in recs} == {"tp-0", "tp-1"}
    assert {(r["remote_ip"], r["remote_port"]) for r in recs} == {(ip, 80)}


def test_clusterip_named_target_port_is_resolved_per_pod(cluster, clients):
    # The port named "web" is 8080 in one pod and 9090 in the other: one Service port
    # reaches both through different container ports.
    up(cluster, netexec_pod("nt-0", A, {"app": "nt"}, http_port=8080, port_name="web"),
       netexec_pod("nt-1", B, {"app": "nt"}, http_port=9090, port_name="web"),
       service("nt", {"app": "nt"}, [{"port": 80, "targetPort": "web"}]), pods=2)
    slices, _ = ray.get(cluster.api.list.remote("EndpointSlice", "default", {"kubernetes.io/service-name": "nt"}))
    assert sorted(p["port"] for s in slices for p in s["ports"]) == [8080, 9090]
    recs = cluster.http_load(f"pod/{clients[C]}", f"http://{cluster_ip(cluster, 'nt')}/hostname", requests=20)
    assert outcomes(recs) == {"ok": 20}, failures(recs)
    assert {r["pod"] for r in recs} == {"nt-0", "nt-1"}


def test_multi_port_service_reaches_different_container_ports(cluster, clients):
    # Two containers: netexec on 8080 ("http") and a second server on 9090 ("admin")
    # that answers every request with "admin-port".
    main = {"name": "main", "image": AGNHOST,
            "args": ["netexec", "--http-port=8080", "--udp-port=8081"],
            "ports": [{"name": "http", "containerPort": 8080}]}
    admin = {"name": "admin", "image": AGNHOST,
             "args": ["netexec", "--http-port=9090", "--udp-port=-1", "--http-override=/echo?msg=admin-port"],
             "ports": [{"name": "admin", "containerPort": 9090}]}
    up(cluster, pod("mp-0", A, {"app": "mp"}, containers=[main, admin]),
       service("mp", {"app": "mp"}, [{"name": "web", "port": 80, "targetPort": "http"},
                                     {"name": "admin", "port": 81, "targetPort": "admin"}]), pods=1)
    ip = cluster_ip(cluster, "mp")
    for port, body in ((80, "mp-0"), (81, "admin-port")):
        for _ in range(3):
            status, headers, text = curl(cluster, f"pod/{clients[B]}", f"http://{ip}:{port}/hostname")
            assert (status, text) == (200, body)
            assert headers["x-kubemu-pod"] == "mp-0"


def test_udp_service_port(cluster, clients):
    up(cluster, netexec_pod("ud-0", A, {"app": "ud"}), netexec_pod("ud-1", B, {"app": "ud"}),
       service("ud", {"app": "ud"}, [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8081}]), pods=2)
    ip = cluster_ip(cluster, "ud")
    recs = udp(cluster, f"pod/{clients[C]}", ip, 53, "hostname", requests=20)
    assert outcomes(recs) == {"ok": 20}, failures(recs)
    assert {r["pod"] for r in recs} == {"ud-0", "ud-1"}
    # Pod to ClusterIP is not NATed on the way in: the backend sees the client pod.
    recs = udp(cluster, f"pod/{clients[C]}", ip, 53, "clientip", requests=5)
    assert outcomes(recs) == {"ok": 5}, failures(recs)
    assert {r["client_ip_seen"] for r in recs} == {cluster.get("Pod", clients[C])["status"]["podIP"]}


# ---- NodePort and externalTrafficPolicy -------------------------------------------

def test_nodeport_reachable_on_every_node_from_nodes_and_vpc_vm(cluster, clients):
    up(cluster, netexec_pod("np-0", A, {"app": "np"}), netexec_pod("np-1", B, {"app": "np"}),
       service("np", {"app": "np"}, [{"port": 80, "targetPort": 8080}], type="NodePort"), pods=2)
    port = node_port(cluster, "np")
    assert 30000 <= port <= 32767
    answered = set()
    for i, node in enumerate(NODES):
        other = NODES[(i + 1) % 3]
        for source in (f"node/{other}", "host/vm-1"):
            recs = cluster.http_load(source, f"http://{cluster.node_ip(node)}:{port}/hostname", requests=6)
            assert outcomes(recs) == {"ok": 6}, (source, node, failures(recs))
            assert {r["pod"] for r in recs} <= {"np-0", "np-1"}
            answered |= {r["pod"] for r in recs}
    assert answered == {"np-0", "np-1"}
    # From the internet the VPC firewall drops it first, as on GKE: GCP's implied
    # deny-ingress rule, and GKE opens no firewall rule for node ports.
    recs = cluster.http_load("host/inet-1", f"http://{cluster.node_ip(A)}:{port}/hostname", requests=1,
                             timeout=1.0)
    assert outcomes(recs) == {"timeout": 1}, failures(recs)


def test_external_traffic_policy_cluster_then_local(cluster, clients):
    """Cluster: SNAT (the pod sees a node address), every node answers; Local: the pod
    sees vm-1's address and nodes without a local endpoint drop the traffic."""
    svc = service("etp", {"app": "etp"}, [{"port": 80, "targetPort": 8080}], type="NodePort",
                  externalTrafficPolicy="Cluster")
    up(cluster, netexec_pod("etp-0", A, {"app": "etp"}), svc, pods=1)
    port = node_port(cluster, "etp")
    seen = {}
    for node in NODES:
        recs = cluster.http_load("host/vm-1", f"http://{cluster.node_ip(node)}:{port}/clientip", requests=5)
        assert outcomes(recs) == {"ok": 5}, failures(recs)
        assert {r["pod"] for r in recs} == {"etp-0"}
        seen[node] = {r["client_ip_seen"] for r in recs}
    # Extra hop from B and C: masqueraded to the forwarding node's own IP. On A, the
    # masquerade address is the one of the interface towards the pod: cbr0's.
    assert seen == {A: {gateway_of(cluster, A)}, B: {cluster.node_ip(B)}, C: {cluster.node_ip(C)}}

    svc["spec"]["externalTrafficPolicy"] = "Local"
    cluster.apply(svc)
    cluster.synced()
    assert node_port(cluster, "etp") == port
    recs = cluster.http_load("host/vm-1", f"http://{cluster.node_ip(A)}:{port}/clientip", requests=5)
    assert outcomes(recs) == {"ok": 5}, failures(recs)
    assert {r["client_ip_seen"] for r in recs} == {VM_IP}
    for node in (B, C):
        recs = cluster.http_load("host/vm-1", f"http://{cluster.node_ip(node)}:{port}/clientip",
                                 requests=2, timeout=1.0)
        assert outcomes(recs) == {"timeout": 2}, (node, failures(recs))     # dropped, not refused
    # Traffic from a pod or from the node itself is short-circuited to every endpoint,
    # even on a node without one (KUBE-EXT's pod-range and --src-type LOCAL rules).
    for source in (f"pod/{clients[B]}", f"node/{B}"):
        recs = cluster.http_load(source, f"http://{cluster.node_ip(B)}:{port}/hostname", requests=3)
        assert outcomes(recs) == {"ok": 3} and {r["pod"] for r in recs} == {"etp-0"}, (source, failures(recs))


def test_health_check_node_port_of_local_load_balancer(cluster, clients):
    up(cluster, netexec_pod("hc-0", A, {"app": "hc"}),
       service("hc", {"app": "hc"}, [{"port": 80, "targetPort": 8080}], type="LoadBalancer",
               externalTrafficPolicy="Local"), pods=1)
    spec = cluster.get("Service", "hc")["spec"]
    hc = spec["healthCheckNodePort"]
    assert 30000 <= hc <= 32767 and hc != spec["ports"][0]["nodePort"]
    for node, count in ((A, 1), (B, 0), (C, 0)):
        url = f"http://{cluster.node_ip(node)}:{hc}/any/path"
        # The per-Service server opens right after the sync that learned the port.
        status, headers, body = wait_until(lambda: curl(cluster, "host/vm-1", url), lambda r: r[0] is not None,
                                           10, f"health check server on {node}")
        assert status == (200 if count else 503), node
        assert headers["x-load-balancing-endpoint-weight"] == str(count)
        assert headers["content-type"] == "application/json"
        doc = json.loads(body)
        assert doc == {"service": {"namespace": "default", "name": "hc"}, "localEndpoints": count,
                       "serviceProxyHealthy": True}
    for node in NODES:
        status, _, body = curl(cluster, "host/vm-1", f"http://{cluster.node_ip(node)}:10256/healthz")
        assert status == 200, body
        doc = json.loads(body)
        assert doc["nodeEligible"] is True and {"lastUpdated", "currentTime"} <= set(doc)


# ---- externalIPs and LoadBalancer ingress IPs --------------------------------------

def test_external_ip_and_load_balancer_ip_are_dnated_on_the_node(cluster, clients):
    """Traffic from a pod (routed to its node first) or from a node to a Service's
    external IP or load balancer IP is DNATed by that node's KUBE-SERVICES: it never
    needs the VPC (an external IP has no VPC route at all)."""
    ext_ip = "203.0.113.200"      # far above the load balancer IPs handed out from .1 up
    up(cluster, netexec_pod("ex-0", A, {"app": "ex"}), netexec_pod("ex-1", B, {"app": "ex"}),
       service("ex", {"app": "ex"}, [{"port": 80, "targetPort": 8080}], externalIPs=[ext_ip]),
       service("exlb", {"app": "ex"}, [{"port": 8000, "targetPort": 8080}], type="LoadBalancer"), pods=2)
    # The address GKE's service controller (kubemu's cloud controller) gives the Service.
    lb_ip = wait_until(lambda: cluster.get("Service", "exlb").get("status", {}).get("loadBalancer", {}),
                       lambda lb: bool(lb.get("ingress")), 30, "a load balancer IP")["ingress"][0]["ip"]
    cluster.synced()
    backends = {pod_ip(cluster, "ex-0"), pod_ip(cluster, "ex-1")}
    for source in (f"pod/{clients[C]}", f"pod/{clients[A]}", f"node/{C}"):
        for ip, port in ((ext_ip, 80), (lb_ip, 8000)):
            recs = cluster.http_load(source, f"http://{ip}:{port}/hostname", requests=10)
            assert outcomes(recs) == {"ok": 10}, (source, ip, failures(recs))
            assert {r["pod"] for r in recs} <= {"ex-0", "ex-1"}
            assert {(r["remote_ip"], r["remote_port"]) for r in recs} == {(ip, port)}
    # The client's node holds the translation: its conntrack entries for the load
    # balancer IP have a backend pod as the reply source.
    flows = cluster.exec_in(f"node/{C}", ["conntrack", "-L", "-p", "tcp", "--orig-dst", lb_ip])["stdout"]
    assert {f.split(" src=")[2].split()[0] for f in flows.splitlines() if f.count(" src=") == 2} <= backends
    assert any(f" src={ip} " in flows for ip in backends)
    rules = cluster.iptables_save(C).splitlines()
    assert any(f"-d {lb_ip}/32" in line and "loadbalancer IP" in line for line in rules)
    assert any(f"-d {ext_ip}/32" in line and "external IP" in line for line in rules)


# ---- internalTrafficPolicy Local --------------------------------------------------

def test_internal_traffic_policy_local(cluster, clients):
    up(cluster, netexec_pod("itp-0", A, {"app": "itp"}), netexec_pod("itp-1", B, {"app": "itp"}),
       service("itp", {"app": "itp"}, [{"port": 80, "targetPort": 8080}], internalTrafficPolicy="Local"), pods=2)
    url = f"http://{cluster_ip(cluster, 'itp')}/hostname"
    for node, expected in ((A, "itp-0"), (B, "itp-1")):
        recs = cluster.http_load(f"pod/{clients[node]}", url, requests=15)
        assert outcomes(recs) == {"ok": 15}, failures(recs)
        assert {r["pod"] for r in recs} == {expected}
    # No endpoint on C: dropped there (not sent to A or B).
    recs = cluster.http_load(f"pod/{clients[C]}", url, requests=2, timeout=1.0)
    assert outcomes(recs) == {"timeout": 2}, failures(recs)
