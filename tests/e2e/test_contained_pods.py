"""Contained pod commands in a whole cluster: exec probes, the exec entry point, hostNetwork pods."""
from __future__ import annotations

import pytest
import ray

pytestmark = pytest.mark.e2e

CONNECT = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)"


def py_server(name: str, node: str, port: int, host_network: bool = False, run_as: int | None = None) -> dict:
    """A pod serving HTTP with `python3 -m http.server`, ready by an exec probe."""
    spec = {"nodeSelector": {"kubernetes.io/hostname": node}, "hostNetwork": host_network,
            "containers": [{"name": "c", "image": "python:3", "workingDir": "/tmp",
                            "command": ["python3", "-m", "http.server", str(port)],
                            "ports": [{"name": "http", "containerPort": port}],
                            "readinessProbe": {"exec": {"command": ["python3", "-c", CONNECT, str(port)]},
                                               "periodSeconds": 1}}]}
    if run_as is not None:
        spec["securityContext"] = {"runAsUser": run_as}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec}


def service(name: str, target: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": target}]}}


def test_contained_pods_serve_probe_and_exec(cluster):
    a, b = cluster.plan.nodes[0].name, cluster.plan.nodes[1].name
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cli"},
              "spec": {"nodeSelector": {"kubernetes.io/hostname": a},
                       "containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
                                       "args": ["pause"]}]}}
    cluster.apply(py_server("web", b, 80, run_as=1000), py_server("hostweb", b, 8099, host_network=True),
                  service("web", 80), service("hostweb", 8099), client)
    for name in ("web", "hostweb", "cli"):
        cluster.wait_ready("Pod", name)          # exec probes pass inside the sandbox

    host = cluster.get("Pod", "hostweb")["status"]
    assert host["podIP"] == host["hostIP"] == cluster.node_ip(b)
    for svc in ("web", "hostweb"):
        recs = cluster.http_load("pod/cli", f"http://{svc}.default.svc.cluster.local/", requests=10)
        assert [r["outcome"] for r in recs] == ["ok"] * 10, recs[:2]

    agent = cluster.cluster.agent_of_pod("default", "web")
    res = ray.get(agent.pod_exec.remote("default/web", ["sh", "-c", "id -u; hostname; cat; ls /root /run 2>&1"],
                                        b"from-stdin\n"))
    out = res["stdout"].decode().splitlines()
    assert res["rc"] != 0 and out[:3] == ["1000", "web", "from-stdin"], res
    assert all("No such file" in line for line in out[3:]) and len(out) == 5, res

    # deleting the hostNetwork pod stops its server and leaves the node working
    cluster.delete("Pod", "hostweb")
    cluster.cluster.wait_for(lambda: cluster.get("Pod", "hostweb") is None, 30, "hostweb deleted")
    check = ["python3", "-c", CONNECT, "8099"]
    cluster.cluster.wait_for(lambda: cluster.exec_in(f"node/{b}", check)["rc"] != 0, 30, "hostweb stopped")
    recs = cluster.http_load("pod/cli", "http://web.default.svc.cluster.local/", requests=5)
    assert [r["outcome"] for r in recs] == ["ok"] * 5
