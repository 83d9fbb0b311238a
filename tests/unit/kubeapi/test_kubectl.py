"""The real kubectl against the endpoint (HTTPS on loopback, local ApiServer, no cluster)."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time

import pytest

from .conftest import KUBECTL
from tests.waiting import poll

pytestmark = pytest.mark.unit
SEED_SERVICE = os.path.join(os.path.dirname(__file__), "../../../scenarios/manifests/seed/seed-lb-service-local.yaml")
DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
"""


def wait_for(pred, what: str, timeout: float = 20.0):
    """Poll `pred` until it returns a true value (tests/waiting.py)."""
    return poll(pred, what, timeout, interval=0.05)


class Lines:
    """Lines of a process's stdout, read in a thread so that a test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.queue.put(line) for line in proc.stdout], daemon=True).start()

    def next(self, timeout: float = 30.0) -> str:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f"no output in {timeout} s; stderr: {self.proc.stderr.read()}") from None


def test_version_discovery_and_short_names(kubectl):
    out = kubectl("version").stdout
    assert "Server Version: v1.33.0-kubemu" in out
    res = kubectl("api-resources").stdout
    rows = {line.split()[0]: line.split() for line in res.splitlines()[1:]}
    for plural, short in (("pods", "po"), ("services", "svc"), ("nodes", "no"), ("deployments", "deploy"),
                          ("replicasets", "rs"), ("namespaces", "ns"), ("networkpolicies", "netpol"),
                          ("ingresses", "ing"), ("events", "ev")):
        assert short in rows[plural], rows.get(plural)
    p = kubectl("get", "all")
    assert p.stderr == "" or "No resources found" in p.stderr


def test_get_namespaces_and_services_wide(kubectl):
    kubectl("apply", "-f", SEED_SERVICE)
    out = kubectl("get", "ns,svc", "-o", "wide").stdout
    assert "namespace/default" in out and "Active" in out
    header = next(line for line in out.splitlines() if line.startswith("NAME") and "CLUSTER-IP" in line)
    assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    row = next(line for line in out.splitlines() if "my-lb-service" in line).split()
    assert row[1] == "LoadBalancer" and row[2].startswith("10.96.") and row[3] == "<pending>"
    assert row[4].startswith("80:3") and row[4].endswith("/TCP") and row[6] == "app=demo,component=users"


def test_apply_twice_is_unchanged_and_errors_read_like_kubernetes(kubectl, tmp_path):
    assert "service/my-lb-service created" in kubectl("apply", "-f", SEED_SERVICE).stdout
    assert "service/my-lb-service unchanged" in kubectl("apply", "-f", SEED_SERVICE).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports:\n  - port: 0\n")
    p = kubectl("apply", "-f", str(bad), check=False)
    assert p.returncode != 0
    assert ('The Service "x" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, '
            "inclusive") in p.stderr
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: z}\nspec:\n  portz: 1\n  ports:\n  - port: 80\n")
    p = kubectl("apply", "-f", str(unknown), check=False)
    assert p.returncode != 0 and 'unknown field "spec.portz"' in p.stderr
    assert kubectl("get", "svc", "z", check=False).returncode != 0
    assert 'services "z" not found' in kubectl("get", "svc", "z", check=False).stderr


def test_label_annotate_and_three_patch_types(kubectl):
    kubectl("apply", "-f", SEED_SERVICE)
    kubectl("label", "svc", "my-lb-service", "tier=web")
    kubectl("annotate", "svc", "my-lb-service", "note=hello")
    assert "my-lb-service" in kubectl("get", "svc", "-l", "tier=web").stdout
    assert "my-lb-service" not in kubectl("get", "svc", "-l", "tier notin (web)", "--ignore-not-found").stdout
    kubectl("patch", "svc", "my-lb-service", "--type=json",
            "-p", '[{"op": "replace", "path": "/spec/ports/0/targetPort", "value": 9090}]')
    kubectl("patch", "svc", "my-lb-service", "--type=merge", "-p", '{"metadata": {"labels": {"m": "1"}}}')
    kubectl("patch", "svc", "my-lb-service", "--type=strategic",
            "-p", '{"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 81, "name": "b", "targetPort": 81}]}}')
    svc = json.loads(kubectl("get", "svc", "my-lb-service", "-o", "json").stdout)
    assert svc["metadata"]["labels"] == {"tier": "web", "m": "1"}
    assert svc["metadata"]["annotations"]["note"] == "hello"
    ports = {p["port"]: p for p in svc["spec"]["ports"]}
    assert ports[80]["targetPort"] == 9090 and ports[80]["name"] == "http"      # merged by port, kept
    assert ports[81]["nodePort"] >= 30000                                        # admission allocated it
    kubectl("label", "svc", "my-lb-service", "tier-")
    assert "tier" not in json.loads(kubectl("get", "svc", "my-lb-service", "-o", "json").stdout)["metadata"]["labels"]


def test_server_side_apply_conflicts_and_scale(kubectl, tmp_path):
    f = tmp_path / "dep.yaml"
    f.write_text(DEPLOYMENT)
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(f)).stdout
    assert "deployment.apps/web scaled" in kubectl("scale", "deployment", "web", "--replicas=5").stdout
    dep = json.loads(kubectl("get", "deploy", "web", "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 5
    scale = json.loads(kubectl("get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale").stdout)
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 5 and scale["status"]["selector"] == "app=web"
    p = kubectl("apply", "--server-side", "-f", str(f), check=False)
    assert p.returncode != 0 and "Apply failed with 1 conflict" in p.stderr and ".spec.replicas" in p.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
    dep = json.loads(kubectl("get", "deploy", "web", "-o", "json", "--show-managed-fields").stdout)
    assert dep["spec"]["replicas"] == 2
    owners = {m["manager"]: m for m in dep["metadata"]["managedFields"]}
    assert "f:replicas" in owners["kubectl"]["fieldsV1"]["f:spec"] and owners["kubectl"]["operation"] == "Apply"
    # Dropping a field from the applied config removes it.
    f.write_text(DEPLOYMENT.replace("        ports:\n        - containerPort: 80\n", ""))
    kubectl("apply", "--server-side", "-f", str(f))
    dep = json.loads(kubectl("get", "deploy", "web", "-o", "json").stdout)
    assert "ports" not in dep["spec"]["template"]["spec"]["containers"][0]
    out = kubectl("get", "deploy", "-o", "wide").stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert out[1].split()[:2] == ["web", "0/2"]


def test_delete_cascades_and_bound_pod_terminates(endpoint, kubectl, tmp_path):
    f = tmp_path / "dep.yaml"
    f.write_text(DEPLOYMENT)
    kubectl("apply", "-f", str(f))
    dep = json.loads(kubectl("get", "deploy", "web", "-o", "json").stdout)
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": dep["metadata"]["uid"]}
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "web-1", "namespace": "default", "ownerReferences": [owner], "labels": {"app": "web"}},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web"}]}}}}
    rs = endpoint.run(endpoint.local_api.create(rs))
    pod_owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": rs["metadata"]["uid"]}
    endpoint.run(endpoint.local_api.create({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1-a", "namespace": "default",
                                                        "ownerReferences": [pod_owner]},
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "nginx"}]}}))
    kubectl("delete", "deployment", "web", "--wait=false")
    assert "web-1" not in kubectl("get", "rs").stdout
    # The bound Pod is left Terminating for its kubelet (none runs here).
    pods = kubectl("get", "pods").stdout
    assert "web-1-a" in pods and "Terminating" in pods
    kubectl("delete", "pod", "web-1-a", "--grace-period=0", "--force")
    assert "web-1-a" not in kubectl("get", "pods").stdout
    # Deleting a namespace deletes what is in it.
    kubectl("create", "namespace", "team-b")
    kubectl("run", "p2", "--image=busybox", "-n", "team-b")
    kubectl("delete", "namespace", "team-b")
    assert "p2" not in kubectl("get", "pods", "-A").stdout


def test_get_watch_sees_events_in_order(kubectl, endpoint):
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", endpoint.kubeconfig_path, "get", "pods", "-w",
                             "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        wait_for(lambda: endpoint._app.active_watches, "kubectl's watch")
        kubectl("run", "p1", "--image=busybox")
        kubectl("label", "pod", "p1", "x=y")
        kubectl("delete", "pod", "p1")
        seen = []
        deadline = time.monotonic() + 60
        while len([s for s in seen if "p1" in s]) < 3 and time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        events = [s.split()[0] for s in seen if "p1" in s]
        if events != ["ADDED", "MODIFIED", "DELETED"]:
            proc.kill()
            raise AssertionError(f"events {seen}; kubectl stderr: {proc.stderr.read()}")
    finally:
        proc.kill()
        proc.wait()


def test_explain_uses_the_bundled_schemas(kubectl):
    out = kubectl("explain", "service.spec").stdout
    assert "FIELD: spec <ServiceSpec>" in out and "clusterIP\t<string>" in out
    out = kubectl("explain", "deployment.spec.template.spec.containers.ports").stdout
    assert "containerPort\t<integer> -required-" in out


def test_exec_and_logs_through_local_backends(kubectl, endpoint):
    kubectl("run", "p1", "--image=busybox")
    p = kubectl("exec", "p1", "--", "sh", "-c", "echo hi; echo err >&2; exit 3", check=False)
    assert p.returncode == 3 and p.stdout == "hi\n" and "err" in p.stderr, (p.stdout, p.stderr)
    p = kubectl("exec", "-i", "p1", "--", "sh", "-c", "tr a-z A-Z", stdin="hello\n")
    assert p.stdout == "HELLO\n"
    assert endpoint.exec_backend.calls[0][:4] == ("default", "p1", "p1", ["sh", "-c", "echo hi; echo err >&2; exit 3"])
    endpoint.logs_backend.lines["default/p1"] = ["one", "two", "three"]
    assert kubectl("logs", "p1").stdout == "one\ntwo\nthree\n"
    assert kubectl("logs", "p1", "--tail=1").stdout == "three\n"
    p = kubectl("logs", "nope", check=False)
    assert p.returncode != 0 and 'pods "nope" not found' in p.stderr


def test_create_generators_send_protobuf(kubectl):
    kubectl("create", "deployment", "d1", "--image=nginx", "--replicas=2", "--port=80")
    kubectl("create", "service", "nodeport", "s1", "--tcp=80:8080")
    kubectl("create", "secret", "generic", "sec1", "--from-literal=a=b")
    kubectl("create", "namespace", "team-a")
    dep = json.loads(kubectl("get", "deploy", "d1", "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["selector"] == {"matchLabels": {"app": "d1"}}
    assert dep["spec"]["template"]["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]
    svc = json.loads(kubectl("get", "svc", "s1", "-o", "json").stdout)
    assert svc["spec"]["ports"][0]["targetPort"] == 8080 and svc["spec"]["ports"][0]["nodePort"] >= 30000
    assert json.loads(kubectl("get", "secret", "sec1", "-o", "json").stdout)["data"] == {"a": "Yg=="}
    assert "team-a" in kubectl("get", "ns").stdout


def test_logs_follow_streams_until_the_backend_ends(kubectl, endpoint):
    import asyncio
    kubectl("run", "p1", "--image=busybox")
    logs = endpoint.logs_backend
    logs.lines["default/p1"] = ["first"]

    async def make_queue():
        logs.more = asyncio.Queue()
    endpoint.run(make_queue())
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", endpoint.kubeconfig_path, "logs", "-f", "p1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = Lines(proc)
        assert out.next() == "first\n"
        endpoint.run(logs.more.put("second"))
        assert out.next() == "second\n"
        endpoint.run(logs.more.put(None))
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_backendconfig_applies_and_validates_with_kubemus_model(kubectl, tmp_path):
    f = tmp_path / "bc.yaml"
    f.write_text("apiVersion: cloud.google.com/v1\nkind: BackendConfig\nmetadata: {name: bc1}\nspec:\n  timeoutSec: 40\n")
    assert "created" in kubectl("apply", "-f", str(f)).stdout
    assert "unchanged" in kubectl("apply", "-f", str(f)).stdout
    f.write_text(f.read_text().replace("40", "50"))
    assert "configured" in kubectl("apply", "-f", str(f)).stdout
    assert json.loads(kubectl("get", "bc", "bc1", "-o", "json").stdout)["spec"] == {"timeoutSec": 50}
    f.write_text(f.read_text().replace("timeoutSec:", "timeoutSecs:"))
    p = kubectl("apply", "-f", str(f), check=False)
    assert p.returncode != 0 and 'unknown field "spec.timeoutSecs"' in p.stderr
    assert "FIELD: spec <BackendConfigSpec>" in kubectl("explain", "backendconfig.spec").stdout


def test_endpoints_are_a_read_only_view_of_endpointslices(kubectl, endpoint):
    def slice_(ips, ready=True):
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-abcde", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "web", "app": "web"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}, "nodeName": "n1"} for ip in ips]}
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", endpoint.kubeconfig_path, "get", "ep", "-w",
                             "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: endpoint._app.active_watches, "kubectl's watch")
        out = Lines(proc)
        endpoint.run(endpoint.local_api.create(slice_(["10.0.0.5", "10.0.0.6"])))
        first = out.next()
        assert first.split()[:3] == ["EVENT", "NAME", "ENDPOINTS"], first
        line = out.next().split()
        assert line[:3] == ["ADDED", "web", "10.0.0.5:8080,10.0.0.6:8080"], line
        endpoint.run(endpoint.local_api.apply(slice_(["10.0.0.5"])))
        assert out.next().split()[:3] == ["MODIFIED", "web", "10.0.0.5:8080"]
    finally:
        proc.kill()
        proc.wait()
    ep = json.loads(kubectl("get", "endpoints", "web", "-o", "json").stdout)
    assert ep["subsets"] == [{"addresses": [{"ip": "10.0.0.5", "nodeName": "n1"}],
                              "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
    assert ep["metadata"]["labels"] == {"app": "web"}
    p = kubectl("delete", "ep", "web", check=False)
    assert p.returncode != 0 and "MethodNotAllowed" in p.stderr
