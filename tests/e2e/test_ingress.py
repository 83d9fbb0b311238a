"""Ingress end to end: scenarios/ingress.yaml through `kubemu run`, then HTTPS with a
certificate made here, Cloud Armor preview, IAP and a bad backend on a live cluster."""
from __future__ import annotations

import base64
import glob
import json
import os
import subprocess

import pytest

from conftest import cluster_from
from test_lifecycle import KUBEMU, ROOT
from emulator.config.loader import load_manifest_file
from emulator.errors import KubemuError
from emulator.runner.client import ClusterClient

pytestmark = pytest.mark.e2e
GFE_IP = "35.191.0.2"
INET_1, INET_2 = "198.51.100.2", "198.51.100.3"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, str]:
    """(results, run dir) of `kubemu run scenarios/ingress.yaml`."""
    tmp = tmp_path_factory.mktemp("ingress-run")
    res = subprocess.run([*KUBEMU, "run", os.path.join(ROOT, "scenarios", "ingress.yaml"), "--runs-dir", str(tmp)],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    path = glob.glob(str(tmp / "*" / "results.json"))[0]
    return json.load(open(path)), os.path.dirname(path)


def records(run_dir: str, flow: str) -> list[dict]:
    with open(os.path.join(run_dir, "flows", flow + ".jsonl")) as f:
        return [json.loads(x) for x in f if x.strip()]


def test_seed_ingress_routes_hosts_and_v1_behaves_the_same(run):
    results, run_dir = run
    assert results["ok"] and all(c["ok"] for s in results["steps"] if s["step"] == "assert" for c in s["checks"])
    for flow in ("seed-frontend", "v1-frontend"):
        assert {r["pod"] for r in records(run_dir, flow)} == {"frontend-a", "frontend-b"}
    for flow in ("seed-users", "v1-https-users", "new-host"):
        assert {r["pod"] for r in records(run_dir, flow)} == {"users-c"}
    for flow in ("seed-unknown-host", "v1-unknown-host"):
        assert {(r["outcome"], r["status"]) for r in records(run_dir, flow)} == {("http_error", 404)}


def test_armor_denies_inet_2_with_403_and_logs_the_rule(run):
    results, run_dir = run
    assert {r["status"] for r in records(run_dir, "armor-denied")} == {403}
    demo = results["ingresses"]["default/demo"]
    assert demo["errors"] == [] and demo["log"]["armor"]["no-inet-2 rule 1000: deny-403"] == 10
    assert demo["log"]["status"]["404"] == 10      # the unknown host
    with open(os.path.join(run_dir, "report.md")) as f:
        assert "no-inet-2 rule 1000: deny-403 10" in f.read().split("## HTTP(S) load balancers (Ingress)")[1]
    with open(os.path.join(run_dir, "logs", "gfe-access.log")) as f:
        lines = [ln for ln in f if ln.startswith(INET_2 + ":")]
    assert len(lines) == 10
    assert all(" 403 " in ln and "policy=no-inet-2 rule=1000 action=deny-403" in ln for ln in lines)


def test_neg_sends_to_pods_without_the_node_hop(run):
    _, run_dir = run
    neg, nodeport = records(run_dir, "neg-frontend"), records(run_dir, "seed-frontend")
    # NEG: the pod sees the proxy itself; NodePort: a node masqueraded the request
    assert {r["client_ip_seen"] for r in neg} == {GFE_IP}
    assert GFE_IP not in {r["client_ip_seen"] for r in nodeport}
    with open(os.path.join(run_dir, "report.md")) as f:
        report = f.read()
    assert "| neg-frontend |" in report and "0.0% (0/60)" in report.split("| neg-frontend |")[1].split("\n")[0]


def test_update_under_traffic_loses_no_request(run):
    _, run_dir = run
    recs = records(run_dir, "during-update")
    assert len(recs) > 40 and {r["outcome"] for r in recs} == {"ok"}
    with open(os.path.join(run_dir, "logs", "gfe-haproxy.log")) as f:
        assert "Reloading HAProxy" in f.read()


def test_run_leaves_no_proxy_behind(run):
    results, _ = run
    prefix = f"kubemu{results['run_id']}"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert prefix.encode() not in f.read(), f"process {pid} of the run is still there"
        except OSError:
            pass


# --- guards on a live cluster -------------------------------------------------------------

def _cert(tmp) -> tuple[str, str, str]:
    """(cert PEM, key PEM, cert path) of a self-signed certificate for secure.example.com."""
    key, crt = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=secure.example.com", "-addext", "subjectAltName=DNS:secure.example.com",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return crt.read_text(), key.read_text(), str(crt)


def _guard_objects(crt: str, key: str) -> list[dict]:
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    backend = {"service": {"name": "secure", "port": {"number": 80}}}
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secure-tls", "namespace": "default"},
         "type": "kubernetes.io/tls", "data": {"tls.crt": b64(crt), "tls.key": b64(key)}},
        {"apiVersion": "kubemu.io/v1", "kind": "SecurityPolicy", "metadata": {"name": "guard", "namespace": "default"},
         "spec": {"rules": [{"priority": 10, "action": "deny-502", "preview": True,
                             "match": {"srcIpRanges": [f"{INET_1}/32"]}},
                            {"priority": 20, "action": "deny-404", "match": {"srcIpRanges": [f"{INET_2}/32"]}}]}},
        {"apiVersion": "cloud.google.com/v1", "kind": "BackendConfig",
         "metadata": {"name": "guarded", "namespace": "default",
                      "annotations": {"kubemu.io/iap-members": "user:alice@example.com"}},
         "spec": {"securityPolicy": {"name": "guard"}, "iap": {"enabled": True}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "secure", "namespace": "default",
                      "annotations": {"cloud.google.com/backend-config": '{"default": "guarded"}'}},
         "spec": {"type": "NodePort", "selector": {"app": "demo", "component": "frontend"},
                  "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": {"name": "guarded", "namespace": "default"},
         "spec": {"tls": [{"hosts": ["secure.example.com"], "secretName": "secure-tls"}],
                  "rules": [{"host": "secure.example.com", "http": {"paths": [
                      {"path": "/", "pathType": "Prefix", "backend": backend}]}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain", "namespace": "default"},
         "spec": {"selector": {"app": "demo", "component": "frontend"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "bad", "namespace": "default"},
         "spec": {"defaultBackend": {"service": {"name": "plain", "port": {"number": 80}}}}},
    ]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A cluster with the scenario's pods and Services plus the guarded Ingress."""
    tmp = tmp_path_factory.mktemp("guards")
    crt, key, crt_path = _cert(tmp)
    with cluster_from("regional-3-lb.yaml") as c:
        objs = [mo.obj for mo in load_manifest_file(os.path.join(ROOT, "scenarios", "manifests", "ingress.yaml"))]
        c.apply(*objs, *_guard_objects(crt, key))
        for pod in ("frontend-a", "frontend-b"):
            c.wait_ready("Pod", pod)
        ClusterClient(c.cluster).wait_ingress("default", "guarded", 60)
        yield c, ClusterClient(c.cluster).ingress_ip("default", "guarded"), crt_path


def curl(c, host: str, url: str, *extra: str) -> tuple[int, str]:
    out = c.exec_in(f"host/{host}", ["curl", "-s", "-m", "5", "-w", "\n%{http_code}", *extra, url])["stdout"]
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def token(c, member: str) -> str:
    res = subprocess.run([*KUBEMU, "iap-token", "--run", c.cluster.run_id, "--member", member],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_https_with_a_test_certificate_and_iap(guarded):
    c, ip, crt = guarded
    url = "https://secure.example.com/header?key=X-Goog-Authenticated-User-Email"
    tls = ("--cacert", crt, "--resolve", f"secure.example.com:443:{ip}")
    assert curl(c, "inet-1", url, *tls)[0] == 401                                    # anonymous
    bob = token(c, "bob@example.com")
    assert curl(c, "inet-1", url, *tls, "-H", f"Authorization: Bearer {bob}")[0] == 403
    alice = token(c, "user:alice@example.com")
    assert curl(c, "inet-1", url, *tls, "-H", f"Authorization: Bearer {alice}") == (
        200, "accounts.google.com:alice@example.com")


def test_preview_rule_only_logs_and_a_deny_rule_sets_its_status(guarded):
    c, ip, crt = guarded
    alice = token(c, "alice@example.com")
    url = f"http://{ip}/hostname"
    assert curl(c, "inet-2", url, "-H", "Host: secure.example.com", "-H", f"Authorization: Bearer {alice}")[0] == 404
    code, body = curl(c, "inet-1", url, "-H", "Host: secure.example.com", "-H", f"Authorization: Bearer {alice}")
    assert code == 200 and body.startswith("frontend-")
    with open(os.path.join(c.cluster.run_dir, "logs", "gfe-access.log")) as f:
        log = [ln for ln in f if "host=secure.example.com" in ln and "path=/hostname" in ln]
    assert any(ln.startswith(INET_2 + ":") and " 404 " in ln and "rule=20 action=deny-404" in ln for ln in log)
    assert any(ln.startswith(INET_1 + ":") and " 200 " in ln and "preview_rule=10 preview_action=deny-502" in ln
               and "iap=allowed user=alice@example.com" in ln for ln in log)


def test_clusterip_backend_without_neg_is_an_error_in_status(guarded):
    c, _, _ = guarded
    c.cluster.wait_for(lambda: (c.get("Ingress", "bad").get("status") or {}).get("errors"), 30, "the error")
    with pytest.raises(KubemuError, match="is of type ClusterIP: an Ingress backend must be NodePort"):
        ClusterClient(c.cluster).wait_ingress("default", "bad", 1)
    errors = c.get("Ingress", "bad")["status"]["errors"]
    assert len(errors) == 1 and "default/plain is of type ClusterIP" in errors[0]
