"""kube-proxy behaviours of issue 3 proven with real traffic (part 2): pod IP reuse,
session affinity, hairpin, Services without (ready) endpoints, updates under traffic,
stale UDP flows, chain names."""
from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from emulator.kubeproxy import names
from service_helpers import (A, B, C, NODES, client_pods, cluster_ip, deployment, endpoints, failures,
                             gateway_of, is_ready, netexec_pod, node_port, outcomes, pod_ip, service, up,
                             wait_endpoints, wait_running, wait_until)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clients(cluster):
    return client_pods(cluster)


def test_replacement_pod_reusing_an_ip_is_served_at_once(cluster, clients):
    """Scale-down then up on one node: the new pod gets the freed IP (kubemu's IPAM hands
    out the lowest free address) and the Service reaches it right away, although the
    node had just been sending to the old pod's MAC for that IP."""
    up(cluster, netexec_pod("ipr-0", B, {"app": "ipr"}),
       service("ipr", {"app": "ipr"}, [{"port": 80, "targetPort": 8080}]))
    url, old_ip = f"http://{cluster_ip(cluster, 'ipr')}/hostname", pod_ip(cluster, "ipr-0")
    recs = cluster.http_load(f"pod/{clients[A]}", url, requests=5)
    assert outcomes(recs) == {"ok": 5}, failures(recs)
    cluster.delete("Pod", "ipr-0")
    wait_endpoints(cluster, "ipr", 0)
    up(cluster, netexec_pod("ipr-1", B, {"app": "ipr"}))
    wait_endpoints(cluster, "ipr", 1)
    assert pod_ip(cluster, "ipr-1") == old_ip
    recs = cluster.http_load(f"pod/{clients[A]}", url, requests=10)
    assert outcomes(recs) == {"ok": 10} and {r["pod"] for r in recs} == {"ipr-1"}, failures(recs)


def test_session_affinity_client_ip_holds_and_can_be_switched_off(cluster, clients):
    svc = service("sa", {"app": "sa"}, [{"port": 80, "targetPort": 8080}], sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    up(cluster, *[netexec_pod(f"sa-{i}", node, {"app": "sa"}) for i, node in enumerate(NODES)], svc)
    url = f"http://{cluster_ip(cluster, 'sa')}/hostname"
    for node in (A, C):
        recs = cluster.http_load(f"pod/{clients[node]}", url, requests=15)
        assert outcomes(recs) == {"ok": 15}, failures(recs)
        assert len({r["pod"] for r in recs}) == 1, node      # every new connection, same pod
    svc["spec"]["sessionAffinity"] = "None"
    del svc["spec"]["sessionAffinityConfig"]
    cluster.apply(svc)
    cluster.synced()
    recs = cluster.http_load(f"pod/{clients[A]}", url, requests=30)
    assert outcomes(recs) == {"ok": 30}, failures(recs)
    assert len({r["pod"] for r in recs}) > 1                   # spread again


def test_hairpin_pod_reaches_itself_through_its_service(cluster, clients):
    up(cluster, netexec_pod("hp-0", B, {"app": "hp"}),
       service("hp", {"app": "hp"}, [{"port": 80, "targetPort": 8080}]))
    recs = cluster.http_load("pod/hp-0", f"http://{cluster_ip(cluster, 'hp')}/clientip", requests=10)
    assert outcomes(recs) == {"ok": 10}, failures(recs)
    assert {r["pod"] for r in recs} == {"hp-0"}
    # Hairpin traffic is masqueraded (KUBE-SEP's `-s <endpoint> -j KUBE-MARK-MASQ`): the
    # pod sees the address of the bridge it hangs off, cbr0, not its own IP.
    assert {r["client_ip_seen"] for r in recs} == {gateway_of(cluster, B)}
    assert pod_ip(cluster, "hp-0") != gateway_of(cluster, B)


def test_service_without_endpoints_refuses_at_once(cluster, clients):
    up(cluster, service("noep", {"app": "nothing"}, [{"port": 80, "targetPort": 8080}], type="NodePort"))
    timeout = 3.0
    recs = cluster.http_load(f"pod/{clients[A]}", f"http://{cluster_ip(cluster, 'noep')}/", requests=5,
                             timeout=timeout)
    assert outcomes(recs) == {"refused": 5}, failures(recs)
    assert all(r["errno"] == "ECONNREFUSED" and r["total_ms"] < timeout * 1000 / 3 for r in recs)
    # Its NodePort too (KUBE-EXTERNAL-SERVICES REJECT), seen from the VPC VM.
    recs = cluster.http_load("host/vm-1", f"http://{cluster.node_ip(B)}:{node_port(cluster, 'noep')}/",
                             requests=5, timeout=timeout)
    assert outcomes(recs) == {"refused": 5}, failures(recs)
    assert all(r["total_ms"] < timeout * 1000 / 3 for r in recs)


def test_publish_not_ready_addresses(cluster, clients):
    never_ready = {"httpGet": {"path": "/healthz", "port": 9999}, "periodSeconds": 1}
    cluster.apply(netexec_pod("nr-0", A, {"app": "nr"}, readiness=never_ready),
                  service("nr-pub", {"app": "nr"}, [{"port": 80, "targetPort": 8080}],
                          publishNotReadyAddresses=True),
                  service("nr-hidden", {"app": "nr"}, [{"port": 80, "targetPort": 8080}]))
    wait_running(cluster, "nr-0")
    wait_endpoints(cluster, "nr-pub", 1)
    wait_endpoints(cluster, "nr-hidden", 1, ready=False)
    assert not is_ready(cluster, "nr-0")
    assert [e["conditions"]["ready"] for e in endpoints(cluster, "nr-hidden")] == [False]
    recs = cluster.http_load(f"pod/{clients[B]}", f"http://{cluster_ip(cluster, 'nr-pub')}/hostname", requests=10)
    assert outcomes(recs) == {"ok": 10}, failures(recs)
    assert {r["pod"] for r in recs} == {"nr-0"}
    recs = cluster.http_load(f"pod/{clients[B]}", f"http://{cluster_ip(cluster, 'nr-hidden')}/hostname",
                             requests=5)
    assert outcomes(recs) == {"refused": 5}, failures(recs)


def _slice(name: str, svc: str, eps: list[tuple[str, str, dict]]) -> dict:
    """A hand-written EndpointSlice for a selector-less Service: (ip, node, conditions)."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": cond} for ip, node, cond in eps]}


def test_terminating_endpoints_serve_only_when_none_is_ready(cluster, clients):
    up(cluster, netexec_pod("tf-0", A, {"app": "tf"}), netexec_pod("tf-1", B, {"app": "tf"}))
    terminating = {"ready": False, "serving": True, "terminating": True}
    ready = {"ready": True, "serving": True, "terminating": False}
    t0, t1 = (pod_ip(cluster, "tf-0"), A), (pod_ip(cluster, "tf-1"), B)
    cluster.apply(service("tf", None, [{"port": 80, "targetPort": 8080}]),
                  _slice("tf-manual", "tf", [(*t0, terminating)]))
    cluster.synced()
    url = f"http://{cluster_ip(cluster, 'tf')}/hostname"
    src = f"pod/{clients[C]}"

    recs = cluster.http_load(src, url, requests=10)               # only a serving terminating one
    assert outcomes(recs) == {"ok": 10} and {r["pod"] for r in recs} == {"tf-0"}, failures(recs)
    cluster.apply(_slice("tf-manual", "tf", [(*t0, terminating), (*t1, ready)]))
    cluster.synced()
    recs = cluster.http_load(src, url, requests=10)               # a ready one wins
    assert outcomes(recs) == {"ok": 10} and {r["pod"] for r in recs} == {"tf-1"}, failures(recs)
    cluster.apply(_slice("tf-manual", "tf", [(*t0, {"ready": False, "serving": False, "terminating": True})]))
    cluster.synced()
    recs = cluster.http_load(src, url, requests=5)                # not serving: no endpoint at all
    assert outcomes(recs) == {"refused": 5}, failures(recs)
    cluster.delete("Service", "tf")
    cluster.delete("EndpointSlice", "tf-manual")


class BackgroundLoad:
    """HTTP requests to one URL from one source, in batches, until stopped."""

    def __init__(self, cluster, source: str, url: str) -> None:
        self.cluster, self.source, self.url = cluster, source, url
        self.records: list[dict] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.records += self.cluster.http_load(self.source, self.url, requests=5, timeout=2.0)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def __enter__(self) -> "BackgroundLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def test_updates_while_traffic_runs(cluster, clients):
    up(cluster, netexec_pod("steady-0", A, {"app": "steady"}), netexec_pod("steady-1", C, {"app": "steady"}),
       service("steady", {"app": "steady"}, [{"port": 80, "targetPort": 8080}]))
    cluster.apply(deployment("scale", 2, {"app": "scale"}), service("scale", {"app": "scale"},
                                                                      [{"port": 80, "targetPort": 8080}]))
    cluster.wait_ready("Deployment", "scale")
    wait_endpoints(cluster, "scale", 2)
    ip = cluster_ip(cluster, "scale")
    src = f"pod/{clients[A]}"
    with BackgroundLoad(cluster, f"pod/{clients[B]}", f"http://{cluster_ip(cluster, 'steady')}/hostname") as bg:
        recs = cluster.http_load(src, f"http://{ip}/hostname", requests=20)
        assert outcomes(recs) == {"ok": 20} and len({r["pod"] for r in recs}) == 2, failures(recs)

        # Scale 2 -> 4: four distinct pods answer.
        cluster.apply(deployment("scale", 4, {"app": "scale"}))
        cluster.wait_ready("Deployment", "scale")
        wait_endpoints(cluster, "scale", 4)
        recs = cluster.http_load(src, f"http://{ip}/hostname", requests=40)
        assert outcomes(recs) == {"ok": 40} and len({r["pod"] for r in recs}) == 4, failures(recs)

        # Change the port 80 -> 8888: the new port answers, the old one no longer does.
        # As with the real kube-proxy in iptables mode, nothing is left that matches the
        # old ClusterIP:port (REJECT rules exist only for Services without endpoints), so
        # the SYN goes un-NATed to the node's default route and the VPC drops it: a
        # timeout, not a refusal. The same holds once the Service is deleted.
        cluster.apply(service("scale", {"app": "scale"}, [{"port": 8888, "targetPort": 8080}]))
        cluster.synced()
        recs = cluster.http_load(src, f"http://{ip}:8888/hostname", requests=10)
        assert outcomes(recs) == {"ok": 10}, failures(recs)
        old = cluster.http_load(src, f"http://{ip}:80/hostname", requests=2, timeout=1.0)
        assert outcomes(old) == {"timeout": 2}, failures(old)

        # Delete the Service: its ClusterIP no longer answers.
        chain = names.svc_chain("default/scale", "tcp")
        cluster.delete("Service", "scale")
        cluster.synced()
        assert all(chain not in cluster.iptables_save(node) for node in NODES)
        gone = cluster.http_load(src, f"http://{ip}:8888/hostname", requests=2, timeout=1.0)
        assert outcomes(gone) == {"timeout": 2}, failures(gone)
    cluster.delete("Deployment", "scale")
    assert bg.error is None, bg.error
    assert len(bg.records) >= 10
    assert outcomes(bg.records) == {"ok": len(bg.records)}, failures(bg.records)
    assert {r["pod"] for r in bg.records} == {"steady-0", "steady-1"}


def test_udp_flow_moves_when_its_endpoint_goes_away(cluster, clients):
    """A UDP client keeping one socket (one conntrack entry) stays on its pod while the pod
    lives, and reaches another pod once it is deleted: kube-proxy deletes the stale
    conntrack entries after the sync that removed the endpoint."""
    up(cluster, netexec_pod("uf-0", A, {"app": "uf"}),
       service("uf", {"app": "uf"}, [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8081}]))
    ip, out = cluster_ip(cluster, "uf"), {}
    argv = [sys.executable, "-m", "emulator.traffic.udp_probe", "--host", ip, "--port", "53", "--message", "kubemu",
            "--duration", "7", "--rate", "5", "--timeout", "0.5", "--reuse-socket", "--out", "-"]
    probe = threading.Thread(target=lambda: out.update(cluster.exec_in(f"pod/{clients[C]}", argv, timeout=60)))
    probe.start()
    # The flow exists (DNATed to uf-0 on C, the client's node) before a second pod does.
    wait_until(lambda: cluster.exec_in(f"node/{C}", ["conntrack", "-L", "-p", "udp", "--orig-dst", ip])["stdout"],
               lambda text: "dport=53" in text, 10, "the UDP flow's conntrack entry")
    up(cluster, netexec_pod("uf-1", B, {"app": "uf"}))
    wait_endpoints(cluster, "uf", 2)
    both_at = time.time()
    time.sleep(1.0)               # five requests while both pods serve: all stay on uf-0
    deleted_at = time.time()
    cluster.delete("Pod", "uf-0")
    wait_endpoints(cluster, "uf", 1)
    switched_at = time.time()
    probe.join(60)
    recs = [json.loads(line) for line in out["stdout"].splitlines() if line.strip()]
    before = [r for r in recs if r["t_start"] < deleted_at]
    both = [r for r in before if r["t_start"] > both_at]
    after = [r for r in recs if r["t_start"] > switched_at + 0.5]
    assert len(both) >= 3 and len(after) >= 5, (len(both), len(after))
    assert {(r["outcome"], r["pod"]) for r in before} == {("ok", "uf-0")}     # sticks to its pod
    assert {(r["outcome"], r["pod"]) for r in after} == {("ok", "uf-1")}      # then moves


def test_chain_names_and_probabilities_read_like_a_gke_node(cluster, clients):
    up(cluster, netexec_pod("cn-0", A, {"app": "cn"}), netexec_pod("cn-1", B, {"app": "cn"}),
       service("cn", {"app": "cn"}, [{"port": 80, "targetPort": 8080}]))
    ip = cluster_ip(cluster, "cn")
    svc_chain = names.svc_chain("default/cn", "tcp")
    seps = sorted(names.sep_chain("default/cn", "tcp", f"{pod_ip(cluster, p)}:8080") for p in ("cn-0", "cn-1"))
    assert len(svc_chain) == len("KUBE-SVC-") + 16
    for node in NODES:
        lines = cluster.iptables_save(node).splitlines()
        assert any(line.startswith(f":{svc_chain} ") for line in lines)
        assert any(line.startswith("-A KUBE-SERVICES ") and f"-d {ip}/32" in line
                   and line.endswith(f"-j {svc_chain}") for line in lines)
        svc_rules = [line for line in lines if line.startswith(f"-A {svc_chain} ")]
        jumps = [line for line in svc_rules if "-j KUBE-SEP-" in line]
        assert len(jumps) == 2
        assert "-m statistic --mode random --probability 0.5000000000" in jumps[0]
        assert "statistic" not in jumps[1]
        assert sorted(line.rsplit("-j ", 1)[1] for line in jumps) == seps
        for sep in seps:
            assert any(line.startswith(f"-A {sep} ") and "-j DNAT" in line for line in lines)
    recs = cluster.http_load(f"pod/{clients[C]}", f"http://{ip}/hostname", requests=20)
    assert outcomes(recs) == {"ok": 20} and {r["pod"] for r in recs} == {"cn-0", "cn-1"}, failures(recs)
