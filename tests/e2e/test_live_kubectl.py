"""Issue 14's "must show" on a real live 3-node cluster: real kubectl and the official Python client.

One `kubemu up` of the quickstart for the module; the tests run in order against it (scale
6 -> 9 -> 10, and so on) and the last one takes it down with `kubemu down` and checks that
nothing of the run is left.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
import subprocess
import threading

import pytest
import yaml

from tests.e2e.test_lifecycle import KUBEMU, QUICKSTART, ROOT, leftovers, root_namespace_state
from tests.e2e.test_live import ENV, POD_PYTHON, Lines, kubemu, wait_until

pytestmark = pytest.mark.e2e
SEED_LB = os.path.join(ROOT, "scenarios", "manifests", "seed", "seed-lb-service-local.yaml")
WEB_POD = r"web-[0-9a-f]+-[a-z0-9]{5}"
# The seed's Local Service selects app=demo,component=users: a Deployment of such pods.
USERS = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "users", "labels": {"app": "demo", "component": "users"}},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "demo", "component": "users"}},
                  "template": {"metadata": {"labels": {"app": "demo", "component": "users"}},
                               "spec": {"containers": [{
                                   "name": "netexec", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
                                   "args": ["netexec", "--http-port=8080", "--udp-port=8081"],
                                   "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                                      "periodSeconds": 1}}]}}}}
IN_POD_CLIENT = ("from kubernetes import client, config; config.load_incluster_config(); v1 = client.CoreV1Api();"
                 "v1.patch_namespaced_pod('client', 'default', {'metadata': {'labels': {'seen-by': 'incluster'}}});"
                 "print(' '.join(sorted(p.metadata.name for p in v1.list_namespaced_pod('default').items)))")
CONNECT = ("import socket, sys; s = socket.socket(); s.settimeout(2);"
           "print(s.connect_ex((sys.argv[1], int(sys.argv[2]))))")     # 0: connected, else the errno


class Live:
    """The module's live run: its id, kubeconfig, the `up` process and its output."""

    def __init__(self, proc: subprocess.Popen, out: Lines, run_id: str, kubeconfig: str, before: dict) -> None:
        self.proc, self.out, self.run_id, self.kubeconfig = proc, out, run_id, kubeconfig
        self.env = {**ENV, "KUBECONFIG": kubeconfig}
        self.before = before   # the root namespace's state before `up`

    def kubectl(self, *args: str, timeout: float = 120, ok: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        assert not ok or res.returncode == 0, f"kubectl {' '.join(args)}: {res.stdout}{res.stderr}"
        return res

    def kubectl_bg(self, *args: str) -> Lines:
        return Lines(subprocess.Popen(["kubectl", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=self.env))

    def core(self):
        from kubernetes import client, config
        return client.CoreV1Api(config.new_client_from_config(config_file=self.kubeconfig))

    def pods(self, prefix: str = "web-") -> set[str]:
        return {p.metadata.name for p in self.core().list_namespaced_pod("default").items
                if p.metadata.name.startswith(prefix) and not p.metadata.deletion_timestamp}

    def rollout(self, name: str, replicas: int) -> None:
        self.kubectl("scale", f"deployment/{name}", f"--replicas={replicas}")
        self.kubectl("rollout", "status", f"deployment/{name}", "--timeout=90s")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    runs = tmp_path_factory.mktemp("live-kubectl")
    before = root_namespace_state()
    proc = subprocess.Popen([*KUBEMU, "up", QUICKSTART, "--no-steps", "--runs-dir", str(runs)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    out = Lines(proc)
    run_id = None
    try:
        run_id = out.wait_for(r"live run kubemu([a-z0-9]{4})", 30).group(1)
        kubeconfig = out.wait_for(r"export KUBECONFIG=(\S+)", 150).group(1)
        yield Live(proc, out, run_id, kubeconfig, before)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if run_id and leftovers(run_id):   # the last test failed before or during `kubemu down`
            kubemu("clean", "--force", run_id, timeout=120)


def test_get_wide_prints_the_real_columns(live):
    wait_until(lambda: live.kubectl("get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}").stdout
               == "6", 90, "6 web pods ready")
    live.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
    out = live.kubectl("get", "nodes,pods,svc,endpointslices", "-o", "wide").stdout
    print(out)
    blocks = {b.splitlines()[1].split("/")[0]: b.splitlines() for b in out.strip().split("\n\n")}
    heads = {k: re.split(r"\s{2,}", v[0].strip()) for k, v in blocks.items()}
    assert heads == {
        "node": ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE",
                 "KERNEL-VERSION", "CONTAINER-RUNTIME"],
        "pod": ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        "service": ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"],
        "endpointslice.discovery.k8s.io": ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]}, out
    nodes = blocks["node"][1:]
    kernel = re.escape(os.uname().release)   # the nodes' kernel is this machine's
    assert len(nodes) == 3 and all(re.fullmatch(r"node/default-pool-[abc]-1\s+Ready\s+<none>\s+\S+\s+v1\.\d+\.\d+\S*"
                                                rf"\s+10\.128\.0\.\d+\s+<none>\s+\S.*\S\s+{kernel}\s+kubemu://\S+", n)
                                   for n in nodes), out
    nodes = live.core().list_node().items   # the Python client reads them too (nodeInfo's required IDs)
    assert sorted(n.metadata.name for n in nodes) == [f"default-pool-{z}-1" for z in "abc"]
    assert {n.status.node_info.kubelet_version for n in nodes} == {"v1.33.0-kubemu"}
    assert len({n.status.node_info.machine_id for n in nodes}) == 3
    pods = [ln for ln in blocks["pod"][1:] if re.match(rf"pod/({WEB_POD}|client)\s", ln)]
    assert len(pods) == 7 and all(re.search(r"\s1/1\s+Running\s+0\s+\S+\s+10\.4\.\d+\.\d+\s+default-pool-[abc]-1\s"
                                            r"+<none>\s+<none>$", p) for p in pods), out
    assert re.search(r"service/web\s+ClusterIP\s+10\.8\.\d+\.\d+\s+<none>\s+80/TCP\s+\S+\s+app=web$", out, re.M), out
    assert re.search(r"endpointslice\.discovery\.k8s\.io/web-\w+\s+IPv4\s+8080\s+10\.4\.[\d.,]+ \+ 3 more\.\.\.", out)


def test_exec_to_a_service_by_name_and_logs(live):
    res = live.kubectl("exec", "client", "--", "/usr/bin/curl", "-s", "http://web/hostname")
    backend = res.stdout.strip()
    assert re.fullmatch(WEB_POD, backend) and backend in live.pods(), res.stdout
    # a failing command's exit code comes back: curl's 7 (refused: no Service port 81) or 28 (timeout)
    res = live.kubectl("exec", "client", "--", "/usr/bin/curl", "-s", "--max-time", "2", "http://web:81/",
                       ok=False)
    assert res.returncode in (7, 28) and f"command terminated with exit code {res.returncode}" in res.stderr, res
    res = live.kubectl("exec", "client", "--", POD_PYTHON, "-c", "import sys; print('out'); sys.exit(5)", ok=False)
    assert (res.returncode, res.stdout) == (5, "out\n"), res
    logs = live.kubectl("logs", backend).stdout
    assert re.search(r"^I\d{4} [\d:.]+ +1 netexec\.go\] GET /hostname from 10\.4\.\d+\.\d+:\d+$", logs, re.M), logs


def test_load_balancer_from_the_seed_reaches_pods_from_the_internet(live, tmp_path):
    users = tmp_path / "users.yaml"
    users.write_text(yaml.safe_dump(USERS))
    assert live.kubectl("apply", "-f", str(users)).stdout.strip() == "deployment.apps/users created"
    assert live.kubectl("apply", "-f", str(users)).stdout.strip() == "deployment.apps/users unchanged"
    live.kubectl("rollout", "status", "deployment/users", "--timeout=90s")
    assert live.kubectl("apply", "-f", SEED_LB).stdout.strip() == "service/my-lb-service created"
    svc = live.kubectl("get", "svc", "my-lb-service").stdout
    assert re.search(r"my-lb-service\s+LoadBalancer\s+10\.8\.[\d.]+\s+(<pending>|203\.0\.113\.\d+)\s+80:3\d{4}/TCP",
                     svc), svc
    res = live.kubectl("wait", "--for=jsonpath={.status.loadBalancer.ingress}", "svc/my-lb-service",
                       "--timeout=60s")
    assert res.stdout.strip() == "service/my-lb-service condition met"
    lb_ip = live.kubectl("get", "svc", "my-lb-service", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}").stdout
    assert ipaddress.ip_address(lb_ip) in ipaddress.ip_network("203.0.113.0/24")
    assert re.search(rf"my-lb-service\s+LoadBalancer\s+\S+\s+{re.escape(lb_ip)}\s",
                     live.kubectl("get", "svc").stdout)
    res = kubemu("traffic", "--run", live.run_id, "--from", "host/inet-1", f"http://{lb_ip}/clientip", "--requests", "40",
                 timeout=120)
    assert res.returncode == 0 and re.search(r"adhoc-\d+ .*http .* 40 .*100\.0% .* 2 ", res.stdout), \
        res.stdout + res.stderr
    print(svc, res.stdout)
    served = set(re.findall(r"(users-[0-9a-f]+-[a-z0-9]{5}) \d+", res.stdout))
    assert served == live.pods("users-"), res.stdout
    # externalTrafficPolicy Local keeps the client's address: the pods log the internet host's
    logs = live.kubectl("logs", "-l", "app=demo,component=users", "--tail=-1").stdout
    assert len(re.findall(r"netexec\.go\] GET /clientip from 198\.51\.100\.\d+:\d+$", logs, re.M)) == 40, logs
    reasons = live.kubectl("get", "events", "--field-selector", "involvedObject.name=my-lb-service").stdout
    assert re.search(r"Normal\s+EnsuredLoadBalancer\s+service/my-lb-service\s+Ensured load balancer", reasons), reasons


def test_traffic_while_scaling_reaches_the_new_pods_without_a_failure(live):
    old = live.pods()
    assert len(old) == 6
    sample = sorted(old)[0]
    seen = live.kubectl("logs", sample).stdout.count("GET /hostname")
    proc = subprocess.Popen([*KUBEMU, "traffic", "--run", live.run_id, "--from", "pod/client", "http://web/hostname", "--rate", "20",
                             "--duration", "20"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=ENV)
    try:
        # the flow is under way (a backend logs its requests) before the backends change
        wait_until(lambda: live.kubectl("logs", sample).stdout.count("GET /hostname") > seen, 60, "traffic started")
        live.rollout("web", 9)
        now = {n.removeprefix("pod/") for n in live.kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split()}
        new = now - old
        assert len(new) == 3 and now == live.pods()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(out)
    assert proc.returncode == 0, out
    row = re.search(r"adhoc-\d+ .*http .*?(\d+) .*?([\d.]+)% .*?(\d+) ", out)
    assert row and int(row[1]) >= 300 and row[2] == "100.0" and int(row[3]) == 9, out
    served = set(re.findall(rf"({WEB_POD}) \d+", out))
    assert new <= served and served <= live.pods(), (new, out)


def test_watch_sees_a_new_pod_through_its_phases_in_order(live):
    from kubernetes import watch
    events: list[tuple[str, str, str]] = []
    core = live.core()
    rv = core.list_namespaced_pod("default").metadata.resource_version
    w = watch.Watch()

    def follow() -> None:
        try:
            for ev in w.stream(core.list_namespaced_pod, "default", label_selector="app=web", resource_version=rv,
                               timeout_seconds=120):
                events.append((ev["type"], ev["object"].metadata.name, ev["object"].status.phase))
        except Exception as e:   # noqa: BLE001 -- w.stop() shuts the socket down under the read
            events.append(("STOPPED", repr(e), ""))
    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    lines = live.kubectl_bg("get", "pods", "-w", "--output-watch-events")
    try:
        lines.wait_for(r"^ADDED\s+client\s", 30)
        old = live.pods()
        live.rollout("web", 10)
        (new,) = live.pods() - old
        lines.wait_for(rf"^MODIFIED\s+{new}\s+1/1\s+Running\s", 30)
    finally:
        lines.proc.kill()
    mine = [re.split(r"\s+", ln.strip())[:4] for ln in lines.lines if re.match(rf"\w+\s+{new}\s", ln)]
    print(mine, events)
    assert mine[0][0] == "ADDED" and mine[0][3] in ("Pending", "ContainerCreating"), lines.lines
    statuses = [m[3] for m in mine]
    order = ["Pending", "ContainerCreating", "Running"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses), statuses
    assert mine[-1][2:4] == ["1/1", "Running"], mine
    wait_until(lambda: ("ADDED", new, "Pending") in events and ("MODIFIED", new, "Running") in events, 30,
               f"the Python client's watch to see {new}")
    assert events.index(("ADDED", new, "Pending")) < events.index(("MODIFIED", new, "Running"))
    w.stop()
    follower.join(30)
    assert not follower.is_alive()


def test_label_annotate_patch_and_apply(live, tmp_path):
    live.kubectl("label", "pod", "client", "tier=front")
    live.kubectl("annotate", "pod", "client", "kubemu.io/note=hello")
    core = live.core()
    pod = core.patch_namespaced_pod("client", "default", {"metadata": {"labels": {"patched": "yes"}}})
    assert pod.metadata.labels == {"app": "client", "tier": "front", "patched": "yes"}
    assert pod.metadata.annotations["kubemu.io/note"] == "hello"
    out = live.kubectl("get", "pods", "-l", "tier=front,patched=yes", "-o", "name").stdout
    assert out.split() == ["pod/client"]
    assert "client" in {p.metadata.name for p in core.list_namespaced_pod("default", label_selector="tier=front").items}
    # server-side apply: a field manager of its own, then a second apply changes nothing
    users = tmp_path / "users.yaml"
    users.write_text(yaml.safe_dump({**USERS, "metadata": {**USERS["metadata"], "labels": {
        **USERS["metadata"]["labels"], "applied": "server-side"}}}))
    out = live.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(users)).stdout
    assert out.strip() == "deployment.apps/users serverside-applied"
    got = live.kubectl("get", "deployment", "users", "-o", "yaml", "--show-managed-fields").stdout
    dep = yaml.safe_load(got)
    assert dep["metadata"]["labels"]["applied"] == "server-side"
    assert {(m["manager"], m["operation"]) for m in dep["metadata"]["managedFields"]} >= {("kubectl", "Apply")}, got


def test_delete_pod_terminates_it_and_a_replacement_appears(live):
    victim = sorted(live.pods())[0]
    lines = live.kubectl_bg("get", "pods", "-w", "--output-watch-events")
    try:
        lines.wait_for(rf"^ADDED\s+{victim}\s", 30)
        before = live.pods()
        res = live.kubectl("delete", "pod", victim, "--wait=false")
        assert res.stdout.strip() == f'pod "{victim}" deleted'
        lines.wait_for(rf"^DELETED\s+{victim}\s", 60)
    finally:
        lines.proc.kill()
    mine = [re.split(r"\s+", ln.strip())[:4] for ln in lines.lines if re.match(rf"\w+\s+{victim}\s", ln)]
    print(mine)
    # Terminating (deletionTimestamp set, the kubelet stopping it), then gone
    assert ["MODIFIED", victim, "1/1", "Terminating"] in mine or ["MODIFIED", victim, "0/1", "Terminating"] in mine, \
        mine
    assert mine[-1][0] == "DELETED"
    assert live.kubectl("get", "pod", victim, ok=False).returncode == 1
    live.kubectl("rollout", "status", "deployment/web", "--timeout=90s")
    after = live.pods()
    assert len(after) == 10 and victim not in after and len(after - before) == 1


def test_explain_events_and_invalid_manifest(live, tmp_path):
    out = live.kubectl("explain", "service.spec").stdout
    assert re.search(r"^KIND:\s+Service\nVERSION:\s+v1\n\nFIELD: spec <ServiceSpec>", out, re.M), out
    assert re.search(r"^  externalTrafficPolicy\s+<string>", out, re.M), out
    events = live.kubectl("get", "events").stdout
    assert events.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    for reason, obj, msg in [("Scheduled", r"pod/client", "Successfully assigned default/client to default-pool-"),
                             ("ScalingReplicaSet", r"deployment/web", "Scaled up replica set web-[0-9a-f]+ to 9 from 6"),
                             ("EnsuredLoadBalancer", r"service/my-lb-service", "Ensured load balancer")]:
        assert re.search(rf"\sNormal\s+{reason}\s+{obj}\s+{msg}", events), (reason, events)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 70000}]}}))
    res = live.kubectl("apply", "-f", str(bad), ok=False)
    assert res.returncode == 1 and res.stderr.strip() == (
        'The Service "x" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, '
        "inclusive"), res.stderr
    assert live.kubectl("get", "svc", "x", ok=False).returncode == 1


def test_python_client_inside_a_pod_with_in_cluster_config(live):
    res = live.kubectl("exec", "client", "--", POD_PYTHON, "-c", IN_POD_CLIENT)
    assert set(res.stdout.split()) == {"client"} | live.pods() | live.pods("users-"), res.stdout
    assert live.core().read_namespaced_pod("client", "default").metadata.labels["seen-by"] == "incluster"


def test_endpoint_is_authenticated_and_loopback_only(live):
    server = live.kubectl("config", "view", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
    token = live.kubectl("config", "view", "--raw", "-o", "jsonpath={.users[0].user.token}").stdout
    host, port = re.fullmatch(r"https://(127\.0\.0\.1):(\d+)", server).groups()
    for headers, code in (([], "401"), (["-H", "Authorization: Bearer not-the-token"], "401"),
                          (["-H", f"Authorization: Bearer {token}"], "200")):
        res = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", *headers,
                              f"{server}/api/v1/namespaces/default/pods"], capture_output=True, text=True, timeout=30)
        assert res.stdout == code, (headers[:1], res)
    listening = subprocess.run(["ss", "-Hlntp", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert [ln.split()[3] for ln in listening.splitlines()] == [f"{host}:{port}"], listening
    addrs = [a.split()[3].split("/")[0] for a in subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                                                                capture_output=True, text=True).stdout.splitlines()]
    assert addrs, "no non-loopback address to try"
    with socket.socket() as s:
        assert s.connect_ex((host, int(port))) == 0
    for addr in addrs:   # the host's own non-loopback addresses: refused
        with socket.socket() as s:
            s.settimeout(5)
            assert s.connect_ex((addr, int(port))) != 0, addr
        # and from a pod: nothing reaches the host's endpoint either
        res = live.kubectl("exec", "client", "--", POD_PYTHON, "-c", CONNECT, addr, port)
        assert int(res.stdout) != 0, (addr, res)
    # ...while the pod does reach the API through the `kubernetes` Service
    res = live.kubectl("exec", "client", "--", POD_PYTHON, "-c", CONNECT, "kubernetes.default.svc", "443")
    assert res.stdout.strip() == "0", res


def test_kubemu_down_leaves_nothing(live):
    res = kubemu("down", live.run_id, timeout=180)
    assert res.returncode == 0 and f"kubemu{live.run_id}: down" in res.stdout, res.stdout + res.stderr
    live.proc.wait(60)
    assert live.proc.returncode == 0, "".join(live.out.lines)
    output = "".join(live.out.lines)
    assert "torn down" in output and "Traceback" not in output, output
    assert live.run_id not in kubemu("ls").stdout
    wait_until(lambda: leftovers(live.run_id) == [], 30, f"nothing left of kubemu{live.run_id}")
    assert root_namespace_state() == live.before
