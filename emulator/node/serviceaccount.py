"""Service account files and the `kubernetes` Service's environment for pods of a live run.

Real pods find `/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`
and `KUBERNETES_SERVICE_HOST/PORT`. The live driver writes the run's credentials once
(`write_run_credentials`); the kubelet then writes each pod's directory
(`pod_serviceaccount_dir`) when it starts the pod, for a sandbox to bind-mount at
SERVICEACCOUNT_MOUNT. The token is the run's bearer token (the API endpoint's).
"""
from __future__ import annotations

import os
import shutil

from emulator.paths import state_dir

SERVICEACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def run_credentials_dir(run_id: str) -> str:
    return os.path.join(state_dir(run_id), "serviceaccount")


def pod_state_dir(run_id: str, namespace: str, pod: str) -> str:
    """The kubelet's per-pod state (service account files, the containers' sandboxes)."""
    return os.path.join(state_dir(run_id), "pods", f"{namespace}_{pod}")


def pod_serviceaccount_dir(run_id: str, namespace: str, pod: str) -> str:
    """The pod's service account directory (its files are copied into the pod's sandbox)."""
    return os.path.join(pod_state_dir(run_id, namespace, pod), "serviceaccount")


def _write(path: str, text: str, mode: int) -> None:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(text)


def write_run_credentials(run_id: str, token: str, ca_pem: str) -> str:
    """The run's token and CA, from which every pod's files are made."""
    d = run_credentials_dir(run_id)
    os.makedirs(d, mode=0o700, exist_ok=True)
    _write(os.path.join(d, "token"), token, 0o600)
    _write(os.path.join(d, "ca.crt"), ca_pem, 0o644)
    return d


def write_pod_serviceaccount(run_id: str, namespace: str, pod: str) -> str | None:
    """token, ca.crt and namespace for one pod; None when the run has no credentials (not live)."""
    src = run_credentials_dir(run_id)
    if not os.path.exists(os.path.join(src, "token")):
        return None
    d = pod_serviceaccount_dir(run_id, namespace, pod)
    os.makedirs(d, mode=0o700, exist_ok=True)
    for name in ("token", "ca.crt"):
        shutil.copyfile(os.path.join(src, name), os.path.join(d, name))
    os.chmod(os.path.join(d, "token"), 0o600)
    _write(os.path.join(d, "namespace"), namespace, 0o644)
    return d


def mounted_files(sa_dir: str | None) -> tuple[tuple[str, str], ...]:
    """(host file, path in the pod) of a pod's service account files; () when there are none."""
    if not sa_dir:
        return ()
    return tuple((os.path.join(sa_dir, f), f"{SERVICEACCOUNT_MOUNT}/{f}")
                 for f in ("token", "ca.crt", "namespace") if os.path.isfile(os.path.join(sa_dir, f)))


def remove_pod_serviceaccount(run_id: str, namespace: str, pod: str) -> None:
    shutil.rmtree(pod_state_dir(run_id, namespace, pod), ignore_errors=True)


def service_env(services: list[dict]) -> dict[str, str]:
    """KUBERNETES_SERVICE_HOST/PORT (and the docker-link style variables) of default/kubernetes."""
    svc = next((s for s in services if s["metadata"]["name"] == "kubernetes"
                and s["metadata"].get("namespace", "default") == "default"), None)
    ip = (svc or {}).get("spec", {}).get("clusterIP")
    ports = (svc or {}).get("spec", {}).get("ports") or []
    if not ip or not ports:
        return {}
    port = str(ports[0]["port"])
    return {"KUBERNETES_SERVICE_HOST": ip, "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": f"tcp://{ip}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{ip}:{port}", f"KUBERNETES_PORT_{port}_TCP_ADDR": ip,
            f"KUBERNETES_PORT_{port}_TCP_PORT": port, f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp"}
