"""NetworkPolicy end to end: the policy scenario through `kubemu run`, and both node networking
modes (GKE native `cbr0`, Calico-style per-pod routes) with the quickstart workload and the
seed's `brctl`/`ip link`/`arp` observations."""
from __future__ import annotations

import os
import re
import subprocess

import pytest
import ray

from conftest import cluster_from
from emulator.config.manifests import load_manifest_file
from emulator.naming import pod_veth_name
from emulator.runner.client import ClusterClient
from test_lifecycle import KUBEMU, ROOT
from test_vpc import run_scenario

pytestmark = pytest.mark.e2e
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


def test_network_policy_scenario_matrices_match(tmp_path):
    """Every classic policy's 9x9 matrix on 80/tcp, 81/tcp, 80/udp equals its expectation."""
    results = run_scenario("network-policy.yaml", tmp_path)
    reach = {s["name"]: s for s in results["steps"] if s["step"] == "reachability"}
    assert len(reach) == 11 and all(s["ok"] for s in reach.values()), \
        [(n, s["differences"][:3]) for n, s in reach.items() if not s["ok"]]
    pods = reach["no-policy"]["pods"]
    assert pods[:3] == ["x/a", "x/b", "x/c"]
    # Default deny ingress in x: every row blocks x's columns except a pod's own cell.
    rows = reach["default-deny-ingress"]["matrices"]["80/tcp"]["observed"]
    assert rows[3] == "XXX......" and rows[0] == ".XX......"
    # Named port: only 81/tcp reaches x.
    named = reach["named-port"]["matrices"]
    assert named["81/tcp"]["observed"][3] == "........." and named["80/tcp"]["observed"][3] == "XXX......"
    # Egress to the pod range except zone c's node range: x/a reaches all but the c pods.
    assert reach["egress-ipblock-except"]["matrices"]["80/udp"]["observed"][0] == "..X..X..X"


@pytest.mark.parametrize("topology,mode", [("regional-3.yaml", "native"), ("regional-3-netpol.yaml", "calico")])
def test_quickstart_workload_and_seed_observations(topology, mode):
    """The quickstart's Service load balancing works in both modes; nodes look as the seed says."""
    objs = [m.obj for m in load_manifest_file(os.path.join(ROOT, "scenarios", "manifests", "quickstart.yaml"))]
    with cluster_from(topology) as c:
        c.apply(*objs)
        c.wait_ready("Deployment", "web")
        c.wait_ready("Pod", "client")
        recs = c.http_load("pod/client", "http://web.default.svc.cluster.local/hostname", requests=200,
                           concurrency=8)
        assert [r["outcome"] for r in recs].count("ok") == 200
        assert len({r["pod"] for r in recs}) >= 5
        node = c.get("Pod", "client")["spec"]["nodeName"]
        pods = [o for o in ray_list(c, "Pod") if o["spec"].get("nodeName") == node
                and o["metadata"]["namespace"] == "default"]
        veths = {pod_veth_name("default", p["metadata"]["name"]) for p in pods}
        brctl = c.exec_in(f"node/{node}", ["brctl", "show"])["stdout"]
        links = c.exec_in(f"node/{node}", ["ip", "-o", "link"])["stdout"]
        routes = c.exec_in(f"node/{node}", ["ip", "route"])["stdout"]
        arp = c.exec_in(f"node/{node}", ["arp", "-n"])["stdout"]
        macs = {p["status"]["podIP"]: mac_of(c, p) for p in pods}
        if mode == "native":
            assert re.search(r"^cbr0\s", brctl, re.M)
            assert veths <= set(re.findall(r"(veth[0-9a-f]{8})", brctl))       # every pod veth on cbr0
            assert all(re.search(rf"{v}@if\d+:.* master cbr0", links) for v in veths)
        else:
            assert "cbr0" not in brctl and "cbr0" not in links
            assert all(re.search(rf"{v}@if\d+:", links) and not re.search(rf"{v}@if\d+:.* master ", links)
                       for v in veths)
            assert all(re.search(rf"^{re.escape(ip)} dev {pod_veth_name('default', p['metadata']['name'])} "
                                 r"scope link", routes, re.M)
                       for p in pods for ip in [p["status"]["podIP"]])
        for ip, mac in macs.items():          # the node learnt each local pod's MAC
            assert re.search(rf"^{re.escape(ip)}\s+ether\s+{mac}\s", arp, re.M), (ip, mac, arp)
        if mode == "calico":
            check_kubemu_reach(c)


def check_kubemu_reach(c) -> None:
    """`kubemu reach` against the running cluster: before and after a policy denying ingress to np-b."""
    for name in ("np-a", "np-b"):
        c.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                 "spec": {"containers": [{"name": "c", "image": AGNHOST, "args": ["netexec", "--http-port=80"]}]}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s-default-{name}"},
                 "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})
        c.wait_ready("Service", f"s-default-{name}")
    cmd = [*KUBEMU, "reach", "--run", c.cluster.run_id, "--pods", "default/np-a,default/np-b"]
    before = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert before.returncode == 0 and "matches the expectation" in before.stdout, before.stdout + before.stderr
    c.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny-b"},
             "spec": {"podSelector": {"matchLabels": {"app": "np-b"}}, "ingress": []}})
    ClusterClient(c.cluster).wait_policies_synced(30)
    after = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert after.returncode == 1 and "1 cells differ" in after.stdout, after.stdout + after.stderr
    expected = subprocess.run([*cmd, "--deny", "*/* -> default/np-b"], cwd=ROOT, capture_output=True, text=True)
    assert expected.returncode == 0, expected.stdout
    assert expected.stdout.splitlines()[-2].split("|")[0].split() == ["default/np-a", ".", "X"]


def ray_list(c, kind: str) -> list[dict]:
    """Every object of a kind in the cluster's API server."""
    return ray.get(c.api.list.remote(kind))[0]


def mac_of(c, pod: dict) -> str:
    """The MAC of a pod's eth0, as the pod itself sees it."""
    out = c.exec_in(f"pod/default/{pod['metadata']['name']}", ["ip", "-o", "link", "show", "eth0"])["stdout"]
    return out.split("link/ether ")[1].split()[0]
