"""Live runs' pure parts: kubeconfig naming, the `kubernetes` Service, exec argv, logs, traffic options."""
from __future__ import annotations

import datetime
import os
from dataclasses import replace

import pytest

from emulator.config import load_topology
from emulator.errors import KubemuError
from emulator.live.commands import traffic_spec
from emulator.live.driver import (CONTROL_PLANE, LiveRun, in_cluster_sans, kubeconfig_for_run, kubernetes_objects,
                                  kubernetes_service_ip)
from emulator.live.podexec import PodNotFound, pod_exec_spec, pod_log_path, select_since
from emulator.node import serviceaccount
from emulator.node.podexec import save_sandboxes
from emulator.node.sandbox import SandboxSpec
from emulator.naming import RunNames
from emulator.node.serviceaccount import pod_serviceaccount_dir, service_env
from emulator.runner.plan import make_plan
from emulator.workloads.netexec import klog_line

pytestmark = pytest.mark.unit
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_kubeconfig_names_cluster_user_and_context_after_the_run():
    cfg = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "certificate-authority-data": "x"}}],
           "users": [{"name": "u", "user": {"token": "t"}}],
           "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "default"}}]}
    out = kubeconfig_for_run(cfg, "kubemu-quickstart-ab12")
    assert out["current-context"] == "kubemu-quickstart-ab12"
    assert out["clusters"][0] == {"name": "kubemu-quickstart-ab12", "cluster": cfg["clusters"][0]["cluster"]}
    assert out["users"][0] == {"name": "kubemu-quickstart-ab12", "user": {"token": "t"}}
    assert out["contexts"][0]["context"] == {"cluster": "kubemu-quickstart-ab12", "user": "kubemu-quickstart-ab12",
                                             "namespace": "default"}


def test_kubernetes_service_takes_the_first_service_address_and_points_at_the_control_plane():
    assert kubernetes_service_ip("10.8.0.0/20") == "10.8.0.1"
    svc, eps = kubernetes_objects("10.8.0.0/20")
    assert svc["spec"]["clusterIP"] == "10.8.0.1" and "selector" not in svc["spec"]
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}]
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert eps["endpoints"] == [{"addresses": [CONTROL_PLANE["ip"]], "conditions": {"ready": True}}]
    assert in_cluster_sans("10.8.0.0/20")[:2] == ["10.8.0.1", CONTROL_PLANE["ip"]]
    assert "kubernetes.default.svc.cluster.local" in in_cluster_sans("10.8.0.0/20")


def test_pods_get_the_kubernetes_service_environment():
    svc = kubernetes_objects("10.8.0.0/20")[0]
    env = service_env([svc])
    assert env["KUBERNETES_SERVICE_HOST"] == "10.8.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.8.0.1:443"
    assert service_env([]) == {}
    assert pod_serviceaccount_dir("ab12", "shop", "web").endswith("/kubemuab12/pods/shop_web/serviceaccount")


class _Scenario:
    name, file = "quickstart", "x.yaml"


def test_the_control_plane_host_joins_the_plan_outside_the_vpc():
    plan = make_plan(load_topology(os.path.join(ROOT, "topologies", "regional-3.yaml")), RunNames("ab12"))
    n = len(plan.hosts)
    LiveRun(_Scenario(), "ab12").extend_plan(plan)
    cp = plan.hosts[-1]
    assert len(plan.hosts) == n + 1 and plan.probers[0].name == "gcp-prober"
    assert (cp.name, cp.ip, cp.kind) == ("gke-control-plane", "172.16.0.2", "prober")
    assert cp.fabric_port == RunNames("ab12").fabric_port(n)
    assert len({h.fabric_port for h in plan.hosts}) == len(plan.hosts)


def test_a_topology_overlapping_the_control_plane_range_is_refused():
    plan = make_plan(load_topology(os.path.join(ROOT, "topologies", "regional-3.yaml")), RunNames("ab12"))
    plan.subnet = "172.16.0.0/12"
    with pytest.raises(KubemuError, match="overlaps the control plane"):
        LiveRun(_Scenario(), "ab12").extend_plan(plan)


def test_exec_runs_the_command_in_the_containers_recorded_sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(serviceaccount, "state_dir", lambda run_id: str(tmp_path / run_id))
    box = SandboxSpec(netns_path="/run/netns/kubemuab12-pod-default.client", argv=("sleep", "inf"),
                      hostname="client", uid=1000, gid=1000, env=(("PATH", "/usr/bin"),),
                      data_files=(("/x/token", "/var/run/secrets/kubernetes.io/serviceaccount/token"),))
    save_sandboxes(serviceaccount.pod_state_dir("ab12", "default", "client"), {"c": box})
    spec = pod_exec_spec(RunNames("ab12"), "default", "client", None, ["wget", "-qO-", "http://web"])
    assert spec == replace(box, argv=("wget", "-qO-", "http://web"))     # as the container runs
    assert pod_exec_spec(RunNames("ab12"), "default", "client", "c", ["sh"], tty=True).tty
    with pytest.raises(PodNotFound, match="container 'x' not found"):
        pod_exec_spec(RunNames("ab12"), "default", "client", "x", ["sh"])
    with pytest.raises(PodNotFound):
        pod_exec_spec(RunNames("ab12"), "default", "gone", None, ["sh"])


def test_pod_log_path_picks_the_named_or_only_container(tmp_path):
    d = tmp_path / "pods" / "default_web"
    d.mkdir(parents=True)
    (d / "netexec.log").write_text("x\n")
    assert pod_log_path(str(tmp_path), "default", "web", None) == str(d / "netexec.log")
    assert pod_log_path(str(tmp_path), "default", "web", "side") == str(d / "side.log")
    assert pod_log_path(str(tmp_path), "default", "nope", None) is None


def test_since_keeps_lines_from_the_first_stamped_one_after_the_cutoff():
    t = datetime.datetime(2026, 12, 4, 15, 0, 0)
    lines = [klog_line("GET /a", t).encode(), klog_line("GET /b", t + datetime.timedelta(seconds=30)).encode(),
             b"unstamped\n"]
    assert lines[0].startswith(b"I1204 15:00:00.000000") and lines[0].endswith(b"netexec.go] GET /a\n")
    assert select_since(lines, t + datetime.timedelta(seconds=10)) == lines[1:]
    assert select_since(lines, t + datetime.timedelta(minutes=5)) == []


def test_traffic_options_become_the_traffic_steps_spec():
    assert traffic_spec("pod/client", "http://web/hostname", "http", 50, 4, None, None, 2.0) == {
        "from": "pod/client", "http": {"url": "http://web/hostname", "requests": 50, "concurrency": 4, "timeout": 2.0}}
    assert traffic_spec("pod/client", "web:81", "udp", None, None, 20.0, 3.0, 1.0) == {
        "from": "pod/client", "udp": {"target": "web:81", "rate": 20.0, "duration": 3.0, "timeout": 1.0}}
    assert traffic_spec("host/inet-1", "10.0.0.1", "ping", 5, None, None, None, 2.0) == {
        "from": "host/inet-1", "ping": {"host": "10.0.0.1", "count": 5}}
