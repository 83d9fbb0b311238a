"""The VPC side end to end: load balancer and firewall scenarios, and an SDN controller
restart under steady traffic."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import threading
import time

import pytest
import ray

from conftest import cluster_from
from test_lifecycle import KUBEMU, ROOT

pytestmark = pytest.mark.e2e


def run_scenario(name: str, tmp_path) -> dict:
    res = subprocess.run([*KUBEMU, "run", os.path.join(ROOT, "scenarios", name), "--runs-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.load(open(glob.glob(str(tmp_path / "*" / "results.json"))[0]))


def test_load_balancers_scenario(tmp_path):
    results = run_scenario("load-balancers.yaml", tmp_path)
    checks = {(s["flow"], c["metric"]): c for s in results["steps"] if s["step"] == "assert" for c in s["checks"]}
    assert all(c["ok"] for c in checks.values())
    assert checks[("lb-cluster", "entered_nodes")]["actual"] == ["default-pool-a-1", "default-pool-b-1",
                                                                 "default-pool-c-1"]
    assert checks[("lb-local", "client_ips_seen")]["actual"] == ["198.51.100.2"]
    assert checks[("internal-from-internet", "timeout_ratio")]["actual"] == 1


def test_firewall_egress_deny_scenario(tmp_path):
    results = run_scenario("firewall.yaml", tmp_path)
    assert results["ok"]


AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


def test_sdn_controller_restart_during_traffic():
    with cluster_from("regional-3-lb.yaml") as c:
        pods = [{"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": f"u{i}", "labels": {"app": "u"}},
                 "spec": {"nodeSelector": {"kubernetes.io/hostname": n["name"]},
                          "containers": [{"name": "c", "image": AGNHOST, "args": ["netexec", "--http-port=8080"]}]}}
                for i, n in enumerate(c.plan.nodes[:2])]
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "u"},
               "spec": {"type": "LoadBalancer", "selector": {"app": "u"}, "ports": [{"port": 80, "targetPort": 8080}]}}
        c.apply(*pods, svc)
        c.wait_ready("Service", "u")
        ip = c.get("Service", "u")["status"]["loadBalancer"]["ingress"][0]["ip"]
        out: list[dict] = []
        t = threading.Thread(target=lambda: out.extend(
            c.http_load("host/inet-1", f"http://{ip}/hostname", requests=None, concurrency=None, rate=100,
                        duration=14, timeout=1.0)))
        t.start()
        time.sleep(1.0)
        restart_at = time.time()
        c.cluster.restart_sdn_controller()
        # the new controller takes the switch over again and gets the desired state
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if ray.get(c.cluster.sdn.connected_datapaths.remote(), timeout=5):
                    break
            except Exception:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the restarted SDN controller did not take the bridge over")
        t.join(120)
        assert out, "no records"
        after = [r for r in out if r["t_start"] > restart_at + 5]
        assert after and all(r["outcome"] == "ok" for r in after)     # back to 100%
        lost = [r for r in out if r["outcome"] != "ok"]
        print(f"\nSDN controller restart: {len(lost)} of {len(out)} requests failed "
              f"({100 * len(lost) / len(out):.2f}%), {len(after)} requests after recovery all ok")
