"""A live run from a user's shell: `kubemu up`, then ls, exec, logs, traffic, Events, kubectl, and `kubemu down`."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import warnings

import pytest

from emulator.live.control import request
from emulator.live.registry import control_path
from tests.e2e import service_helpers
from tests.e2e.test_lifecycle import KUBEMU, QUICKSTART, ROOT, leftovers, root_namespace_state

pytestmark = pytest.mark.e2e
HAS_KUBEAPI = importlib.util.find_spec("emulator.kubeapi") is not None
ENV = {**os.environ, "COLUMNS": "200"}
IN_POD_GET = ("import sys, urllib.request; r = urllib.request.urlopen(sys.argv[1], timeout=5);"
              "sys.stdout.write(r.read().decode())")
POD_PYTHON = "/usr/bin/python3"      # pods see the host's /usr, not kubemu's virtualenv
SA = "/var/run/secrets/kubernetes.io/serviceaccount"
IN_POD_CLIENT = ("from kubernetes import client, config; config.load_incluster_config();"
                 "print(len(client.CoreV1Api().list_namespaced_pod('default').items))")
IN_POD_API = ("import json, ssl, sys, urllib.request; d = sys.argv[1];"
              "ctx = ssl.create_default_context(cafile=d + '/ca.crt');"
              "req = urllib.request.Request('https://kubernetes.default.svc/api/v1/namespaces/default/pods',"
              " headers={'Authorization': 'Bearer ' + open(d + '/token').read()});"
              "print(len(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))['items']))")


class Lines:
    """The output of a background process, read as it comes."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None and not self.lines[-1:]:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r}; got:\n{''.join(self.lines)}")


def kubemu(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*KUBEMU, *args], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=timeout)


def wait_until(check, timeout: float, what: str) -> None:
    """Until `check()` is true (service_helpers' poll loop)."""
    service_helpers.wait_until(check, bool, timeout, what, interval=0.2)


def test_live_run_serves_exec_logs_traffic_events_until_kubemu_down(tmp_path):
    before = root_namespace_state()
    proc = subprocess.Popen([*KUBEMU, "up", QUICKSTART, "--no-steps", "--runs-dir", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    out = Lines(proc)
    try:
        run_id = out.wait_for(r"live run kubemu([a-z0-9]{4})", 30).group(1)
        out.wait_for(r"live run kubemu\w+ is up", 120)
        ls = kubemu("ls")
        assert ls.returncode == 0 and re.search(rf"{run_id}\s.*quickstart\s.*ready\s.*\s3\s", ls.stdout), ls.stdout
        sock = control_path(run_id)

        def ready(kind: str, name: str) -> bool:
            items = request(sock, "list", kind=kind, namespace="default")["items"]
            obj = next((o for o in items if o["metadata"]["name"] == name), {})
            if kind == "Deployment":
                return obj.get("status", {}).get("readyReplicas", 0) == 6
            return any(c["type"] == "Ready" and c["status"] == "True"
                       for c in obj.get("status", {}).get("conditions", []))
        wait_until(lambda: ready("Deployment", "web") and ready("Pod", "client"), 60, "web and client ready")

        # exec: the client pod asks the Service by its DNS name; stdout and the exit code come back
        res = kubemu("exec", "--run", run_id, "client", "--", POD_PYTHON, "-c", IN_POD_GET,
                     "http://web.default.svc.cluster.local/hostname")
        assert res.returncode == 0, res.stderr
        backend = res.stdout.strip()
        assert re.fullmatch(r"web-[0-9a-f]+-[a-z0-9]{5}", backend), res.stdout
        assert kubemu("exec", "--run", run_id, "client", "--", "sh", "-c", "echo err >&2; exit 7").returncode == 7

        # logs: the netexec pod that answered logged the request
        res = kubemu("logs", "--run", run_id, backend)
        assert res.returncode == 0 and re.search(r"^I\d{4} [\d:.]+ +1 netexec.go\] GET /hostname from 10\.",
                                                 res.stdout, re.M), res.stdout

        # traffic: an ad hoc flow run by the live driver, the scenario step's summary
        res = kubemu("traffic", "--run", run_id, "--from", "pod/client", "http://web.default.svc.cluster.local/hostname",
                     "--requests", "200", "--concurrency", "4", timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        assert re.search(r"adhoc-1 .*http .*200 .*100\.0% .*6 ", res.stdout), res.stdout

        # Events, as `kubectl get events` lists them
        events = request(sock, "list", kind="Event")["items"]
        reasons = {e["reason"] for e in events}
        assert {"Scheduled", "ScalingReplicaSet", "SuccessfulCreate", "Pulled", "Created", "Started"} <= reasons
        scaled = [e for e in events if e["reason"] == "ScalingReplicaSet" and e["involvedObject"]["name"] == "web"]
        assert scaled and re.fullmatch(r"Scaled up replica set web-[0-9a-f]+ to 6 from 0", scaled[0]["message"])
        assert all(e["metadata"]["namespace"] == e["involvedObject"].get("namespace", "default") for e in events)

        if HAS_KUBEAPI:
            _check_kubectl(tmp_path, run_id, backend)
        else:
            warnings.warn("kubectl and in-cluster client checks skipped: emulator.kubeapi (the HTTPS API "
                          "endpoint) is not in this build")

        res = kubemu("down", run_id, timeout=180)
        assert res.returncode == 0 and f"kubemu{run_id}: down" in res.stdout, res.stdout + res.stderr
        proc.wait(30)
        assert proc.returncode == 0, "".join(out.lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
            kubemu("clean", "--force", run_id, timeout=120)
    assert "torn down" in "".join(out.lines)
    results = json.load(open(next(tmp_path.glob("*/results.json"))))
    assert results["flows"]["adhoc-1"]["success_ratio"] == 1.0
    assert run_id not in kubemu("ls").stdout   # (another live run on the machine may be listed)
    assert leftovers(run_id) == []
    assert root_namespace_state() == before


def _check_kubectl(tmp_path, run_id: str, backend: str) -> None:
    """kubectl against the run's endpoint, and a client inside a pod through the `kubernetes` Service."""
    kubeconfig = next(tmp_path.glob("*/kubeconfig"))
    assert stat.S_IMODE(os.stat(kubeconfig).st_mode) == 0o600
    env = {**ENV, "KUBECONFIG": str(kubeconfig)}

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, timeout=60)
    res = kubectl("config", "current-context")
    assert res.stdout.strip() == f"kubemu-quickstart-{run_id}"
    res = kubectl("get", "pods", "-o", "wide")
    assert res.returncode == 0 and "client" in res.stdout and backend in res.stdout, res.stderr
    res = kubectl("exec", "client", "--", POD_PYTHON, "-c", IN_POD_GET, "http://web/hostname")
    assert res.returncode == 0 and res.stdout.startswith("web-"), res.stderr
    res = kubectl("logs", backend)
    assert res.returncode == 0 and "GET /hostname" in res.stdout, res.stderr
    res = kubectl("get", "events")
    assert res.returncode == 0 and "ScalingReplicaSet" in res.stdout, res.stderr
    if importlib.util.find_spec("kubernetes") is not None:   # the Python client library, with the kubeconfig
        res = subprocess.run([sys.executable, "-c", "from kubernetes import client, config; config.load_kube_config();"
                              "print(len(client.CoreV1Api().list_node().items))"],
                             capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 0 and res.stdout.strip() == "3", res.stderr
    # in-cluster clients: the token and CA at the usual path, the `kubernetes` Service
    res = kubemu("exec", "--run", run_id, "client", "--", POD_PYTHON, "-c", IN_POD_API, SA)
    assert res.returncode == 0 and int(res.stdout) >= 7, res.stdout + res.stderr
    res = kubemu("exec", "--run", run_id, "client", "--", POD_PYTHON, "-c", IN_POD_CLIENT)   # the official client
    assert res.returncode == 0 and int(res.stdout) >= 7, res.stdout + res.stderr
