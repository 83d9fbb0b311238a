"""The Ingress proxy for real: HAProxy in one namespace, clients and a netexec "node" in another.

The rendered config of `IngressCore` runs in HAProxy; requests from curl and the load
generator show host routing, the 404 default backend, X-Forwarded-For, TLS with the
Secret's certificate, Cloud Armor deny/preview with the rule in the access log, IAP,
and a reload under traffic without a failed request.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emulator.cloud import iap
from emulator.workloads.gfe_proxy import HaproxyRunner
from emulator.cloud.haproxy_cfg import ProxySettings
from emulator.cloud.ingress import IngressCore
from emulator.naming import new_run_id
from emulator.runner.cleanup import run_processes, state_dir
from emulator.traffic.launch import http_load_argv, in_netns
from emulator.workloads.agnhost import parse_netexec_args
from emulator.workloads.host import WorkloadHost

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("haproxy") is None,
                                 reason="needs root and haproxy (./scripts/setup.sh)")]
REPO = Path(__file__).resolve().parents[2]
GFE_IP, NODE_IP, OTHER_IP, LB_IP = "10.77.2.1", "10.77.2.2", "10.77.2.3", "203.0.113.254"
KEY = "test-key-0123456789"


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def svc(name, port, annotations=None):
    return {"metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
            "spec": {"type": "NodePort", "ports": [{"port": port, "nodePort": 8080, "targetPort": 8080}]}}


def ingress(hosts: dict[str, tuple[str, int]]):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "demo", "namespace": "default", "resourceVersion": "1"},
            "spec": {"tls": [{"hosts": ["demo.example.com"], "secretName": "demo-tls"}],
                     "rules": [{"host": h, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                         "service": {"name": s, "port": {"number": p}}}}]}} for h, (s, p) in hosts.items()]}}


@pytest.fixture
def net(tmp_path):
    """(gfe netns, client netns, runner, objects) with a netexec server as the only node."""
    run_id = new_run_id()
    prefix = f"kubemu{run_id}"
    gfe, client = f"{prefix}-host-gfe", f"{prefix}-host-client"
    runner = None
    try:
        sh("ip", "netns", "add", gfe)
        sh("ip", "netns", "add", client)
        sh("ip", "link", "add", f"{prefix}ga", "netns", gfe, "type", "veth", "peer", "name", f"{prefix}gb",
           "netns", client)
        sh("ip", "-n", gfe, "addr", "add", f"{GFE_IP}/24", "dev", f"{prefix}ga")
        for ip in (NODE_IP, OTHER_IP):
            sh("ip", "-n", client, "addr", "add", f"{ip}/24", "dev", f"{prefix}gb")
        for ns, dev in ((gfe, f"{prefix}ga"), (client, f"{prefix}gb")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", client, "route", "add", "203.0.113.0/24", "via", GFE_IP)
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=demo.example.com",
           "-addext", "subjectAltName=DNS:demo.example.com",
           "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"))
        runner = HaproxyRunner(gfe, os.path.join(state_dir(run_id), "gfe"), str(tmp_path / "logs"), run_id)
        objs = {"Service": [svc("frontend", 80), svc("users", 8080),
                            svc("secure", 80, {"cloud.google.com/backend-config": '{"default": "guarded"}'})],
                "BackendConfig": [{"metadata": {"name": "guarded", "namespace": "default",
                                                "annotations": {"kubemu.io/iap-members": "user:alice@example.com"}},
                                   "spec": {"securityPolicy": {"name": "armor"}, "iap": {"enabled": True}}}],
                "SecurityPolicy": [{"metadata": {"name": "armor"}, "spec": {"rules": [
                    {"priority": 100, "action": "deny-403", "match": {"srcIpRanges": [f"{OTHER_IP}/32"]}},
                    {"priority": 50, "action": "deny-502", "preview": True,
                     "match": {"srcIpRanges": [f"{NODE_IP}/32"]}}]}}],
                "Secret": [{"metadata": {"name": "demo-tls", "namespace": "default"}, "type": "kubernetes.io/tls",
                            "stringData": {"tls.crt": (tmp_path / "cert.pem").read_text(),
                                           "tls.key": (tmp_path / "key.pem").read_text()}}]}
        with WorkloadHost() as host:
            host.add_pod_server(client, "web-0", "node-a", parse_netexec_args(["netexec"]))
            yield gfe, client, runner, objs, tmp_path
    finally:
        if runner is not None:
            runner.stop()
        shutil.rmtree(state_dir(run_id), ignore_errors=True)
        for ns in (client, gfe):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def apply(runner, objs, hosts) -> IngressCore:
    core = IngressCore("203.0.113.0/24", "demo", ProxySettings(iap_key=KEY, check_interval_ms=200))
    plan = core.sync({**objs, "Ingress": [ingress(hosts)]}, {"n1": NODE_IP}, set())
    assert plan.errors == {"default/demo": []} and plan.addresses == [LB_IP]
    runner.apply(plan.config, plan.files, plan.addresses)
    return core


def curl(ns, url, host=None, src=NODE_IP, extra=()):
    """(status, body) of one request from the client namespace."""
    argv = ["curl", "-s", "-m", "5", "--interface", src, "-w", "\n%{http_code}", *extra]
    if host:
        argv += ["-H", f"Host: {host}"]
    out = subprocess.run(["ip", "netns", "exec", ns, *argv, url], capture_output=True, text=True).stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def wait_up(runner, backends):
    t0 = time.time()
    while time.time() - t0 < 20:
        states = runner.server_states()
        if all(any(s.startswith("UP") for s in states.get(b, {}).values()) for b in backends):
            return
        time.sleep(0.1)
    raise AssertionError(f"backends not healthy: {runner.server_states()}")


HOSTS = {"demo.example.com": ("frontend", 80), "demo-backend.example.com": ("users", 8080),
         "secure.example.com": ("secure", 80)}


def test_routing_tls_armor_iap_and_log(net):
    gfe, client, runner, objs, tmp = net
    apply(runner, objs, HOSTS)
    wait_up(runner, ["be_default_frontend_80", "be_default_users_8080", "be_default_secure_80"])
    assert runner.proc.pid in run_processes(runner.run_id)     # `kubemu clean` finds it after a crash
    base = f"http://{LB_IP}"
    assert curl(client, f"{base}/hostname", "demo.example.com") == (200, "web-0")
    assert curl(client, f"{base}/hostname", "demo-backend.example.com") == (200, "web-0")
    assert curl(client, f"{base}/hostname", "unknown.example.com") == (404, "default backend - 404")
    # GFE's X-Forwarded-For: client, load balancer; the backend sees the proxy's address
    assert curl(client, f"{base}/header?key=X-Forwarded-For", "demo.example.com") == (200, f"{NODE_IP},{LB_IP}")
    assert curl(client, f"{base}/clientip", "demo.example.com")[1].startswith(GFE_IP + ":")
    # TLS with the Secret's certificate, verified by name
    code, body = curl(client, "https://demo.example.com/hostname", extra=(
        "--cacert", str(tmp / "cert.pem"), "--resolve", f"demo.example.com:443:{LB_IP}"))
    assert (code, body) == (200, "web-0")
    # Cloud Armor: rule 100 denies OTHER_IP with 403; rule 50 (preview) only logs NODE_IP
    assert curl(client, f"{base}/hostname", "secure.example.com", src=OTHER_IP)[0] == 403
    # IAP: anonymous 401, a forged token 401, a non-member 403, a member passes with the header
    assert curl(client, f"{base}/hostname", "secure.example.com")[0] == 401
    forged = iap.issue_token("other-key", "alice@example.com")
    bearer = lambda tok: ("-H", f"Authorization: Bearer {tok}")  # noqa: E731
    assert curl(client, f"{base}/hostname", "secure.example.com", extra=bearer(forged))[0] == 401
    bob = iap.issue_token(KEY, "bob@example.com")
    assert curl(client, f"{base}/hostname", "secure.example.com", extra=bearer(bob))[0] == 403
    expired = iap.issue_token(KEY, "alice@example.com", ttl=-10)
    assert curl(client, f"{base}/hostname", "secure.example.com", extra=bearer(expired))[0] == 401
    alice = iap.issue_token(KEY, "user:alice@example.com")
    assert curl(client, f"{base}/header?key=X-Goog-Authenticated-User-Email", "secure.example.com",
                extra=("-H", f"Authorization: Bearer {alice}",
                       "-H", "X-Goog-Authenticated-User-Email: accounts.google.com:mallory@example.com")) == (
        200, "accounts.google.com:alice@example.com")
    log = _log_lines(tmp, lambda ln: "host=secure.example.com" in ln)
    denied = [ln for ln in log if ln.startswith(OTHER_IP + ":")]
    assert len(denied) == 1 and " 403 " in denied[0] and "policy=armor rule=100 action=deny-403" in denied[0]
    previewed = [ln for ln in log if ln.startswith(NODE_IP + ":")]
    assert len(previewed) == 5 and all("rule=default action=allow preview_rule=50 preview_action=deny-502" in ln
                                       for ln in previewed)
    assert [ln.split(" iap=")[1].split()[0] for ln in previewed] == ["anonymous", "invalid", "denied", "expired",
                                                                     "allowed"]


def _log_lines(tmp, keep):
    path = tmp / "logs" / "gfe-access.log"
    t0 = time.time()
    while True:   # HAProxy writes the line when the request ends
        lines = [ln for ln in path.read_text().splitlines() if keep(ln)] if path.exists() else []
        if lines or time.time() - t0 > 5:
            return lines
        time.sleep(0.1)


def test_reload_under_traffic_loses_nothing(net):
    gfe, client, runner, objs, tmp = net
    apply(runner, objs, {"demo.example.com": ("frontend", 80)})
    wait_up(runner, ["be_default_frontend_80"])
    out = tmp / "load.jsonl"
    argv = http_load_argv(f"http://{LB_IP}/hostname", str(out), duration=4.0, rate=40, timeout=3.0,
                          headers={"Host": "demo.example.com"}, python=sys.executable)
    result = {}
    t = threading.Thread(target=lambda: result.update(p=subprocess.run(in_netns(client, argv), cwd=REPO,
                                                                       capture_output=True, text=True)))
    t.start()
    time.sleep(1.0)
    assert curl(client, f"http://{LB_IP}/hostname", "new.example.com")[0] == 404
    apply(runner, objs, {"demo.example.com": ("frontend", 80), "new.example.com": ("users", 8080)})
    t0 = time.time()
    while curl(client, f"http://{LB_IP}/hostname", "new.example.com")[0] != 200:
        assert time.time() - t0 < 10, "the new host never started working"
        time.sleep(0.1)
    t.join(30)
    assert result["p"].returncode == 0, result["p"].stderr
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) > 50 and runner.reloads == 1
    assert {(r["outcome"], r["status"]) for r in recs} == {("ok", 200)}
    runner.apply("", {}, [])   # no Ingress left: no proxy, no address
    assert not runner.running() and LB_IP not in sh("ip", "-n", gfe, "addr", "show", "dev", "lo")
    assert curl(client, f"http://{LB_IP}/hostname", "demo.example.com")[0] == 0


def test_back_to_back_reloads_all_take_effect(net):
    """Three configurations applied at once (as concurrent Ingress syncs do): HAProxy's
    master re-executes on each SIGUSR2 and drops a signal that arrives meanwhile, so every
    reload must be confirmed; the last configuration is the one that serves."""
    gfe, client, runner, objs, tmp = net
    apply(runner, objs, {"demo.example.com": ("frontend", 80)})
    wait_up(runner, ["be_default_frontend_80"])
    hosts = {"demo.example.com": ("frontend", 80)}
    for i in range(3):
        hosts[f"h{i}.example.com"] = ("users", 8080)
        apply(runner, objs, dict(hosts))
    assert runner.reloads == 3
    wait_up(runner, ["be_default_users_8080"])
    t0 = time.time()
    while curl(client, f"http://{LB_IP}/hostname", "h2.example.com")[0] != 200:
        assert time.time() - t0 < 10, f"the last host never started working: {runner.server_states()}"
        time.sleep(0.1)
