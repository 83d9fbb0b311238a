"""The Kubernetes API endpoint in front of the ApiServer as a Ray actor (as live runs use it)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import ray

from emulator.api.server import ApiServer
from emulator.kubeapi.endpoint import KubeApiEndpoint
from emulator.naming import new_run_id
from emulator.paths import ray_temp_dir
from emulator.runner import ray_local

pytestmark = pytest.mark.e2e
KUBECTL = "/usr/bin/kubectl"
SEED = os.path.join(os.path.dirname(__file__), "../../scenarios/manifests/seed/seed-lb-service-local.yaml")


def test_kubectl_through_a_ray_actor(tmp_path):
    if not os.path.exists(KUBECTL):
        pytest.skip("needs kubectl")
    started = not ray.is_initialized()
    temp = ray_temp_dir(new_run_id())
    if started:   # on loopback, as kubemu starts Ray (a plain ray.init listens on every address)
        ray_local.init(None, temp, num_cpus=1, include_dashboard=False, log_to_driver=False)
    actor = ray.remote(ApiServer).remote("10.96.0.0/16")
    ep = KubeApiEndpoint(actor, run_id="e2e", state_dir=str(tmp_path / "state"))
    try:
        ep.start()
        kc = tmp_path / "kubeconfig"
        kc.write_text(json.dumps(ep.kubeconfig("kubemu-e2e")))

        def kubectl(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([KUBECTL, "--kubeconfig", str(kc), *args], capture_output=True, text=True,
                                  timeout=60)
        assert kubectl("create", "namespace", "default").returncode == 0
        again = kubectl("create", "namespace", "default")      # ApiError crosses Ray as a 409
        assert again.returncode != 0 and 'namespaces "default" already exists' in again.stderr
        p = kubectl("apply", "-f", SEED)
        assert p.returncode == 0, p.stderr
        assert "unchanged" in kubectl("apply", "-f", SEED).stdout
        p = kubectl("get", "svc", "-w", "--request-timeout=3s", "--output-watch-events")
        assert "ADDED" in p.stdout and "my-lb-service" in p.stdout, (p.stdout, p.stderr)
        assert kubectl("delete", "svc", "my-lb-service").returncode == 0
        assert "my-lb-service" not in kubectl("get", "svc").stdout
    finally:
        ep.stop()
        ray.kill(actor)
        if started:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
