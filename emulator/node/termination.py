"""Graceful pod termination, as the kubelet does it once a pod has a deletionTimestamp.

In order, within the pod's grace period (`deletionGracePeriodSeconds`): every
container's `preStop` hook (exec in the container's sandbox, httpGet to the pod, or
sleep), then SIGTERM to the pod's processes and to its built-in servers (a netexec with
`--delay-shutdown=N` keeps serving N seconds with /readyz failing), then waiting for
them to end; whatever is left when the grace period is over gets SIGKILL. Readiness
probes keep running meanwhile, so the EndpointSlice's `serving` follows them.
"""
from __future__ import annotations

import http.client
import logging
import threading
import time
from dataclasses import dataclass, replace

from emulator.kernel import netns
from emulator.node.podexec import exec_in_pod
from emulator.node.sandbox import SandboxError, SandboxSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hook:
    """One container's preStop hook: kind exec | httpGet | sleep."""

    container: str
    kind: str
    command: tuple[str, ...] = ()
    host: str | None = None
    port: int | str = 0
    path: str = "/"
    seconds: float = 0.0


def grace_seconds(pod: dict) -> float:
    """The grace period the kubelet gives a terminating pod (deletionGracePeriodSeconds)."""
    meta = pod.get("metadata", {})
    g = meta.get("deletionGracePeriodSeconds")
    if g is None:
        g = pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
    return max(0.0, float(g))


def prestop_hooks(pod: dict) -> list[Hook]:
    """The pod's preStop hooks, container by container."""
    out = []
    for c in pod.get("spec", {}).get("containers", []) or []:
        h = ((c.get("lifecycle") or {}).get("preStop")) or {}
        name = c.get("name", "c")
        if "exec" in h:
            out.append(Hook(name, "exec", command=tuple(str(a) for a in h["exec"].get("command") or [])))
        elif "httpGet" in h:
            g = h["httpGet"]
            out.append(Hook(name, "httpGet", host=g.get("host"), port=g.get("port", 80),
                            path=g.get("path", "/")))
        elif "sleep" in h:
            out.append(Hook(name, "sleep", seconds=float(h["sleep"].get("seconds", 0))))
    return out


def container_ports(pod: dict) -> dict[str, int]:
    """Named container ports of the pod."""
    return {p["name"]: p["containerPort"] for c in pod.get("spec", {}).get("containers", []) or []
            for p in c.get("ports", []) or [] if p.get("name")}


def run_hook(hook: Hook, pod_ip: str, ports: dict[str, int], node_netns: str,
             sandbox: SandboxSpec | None, timeout: float, stop: threading.Event) -> str:
    """Run one hook to completion (or `timeout`); a one-word outcome for the log."""
    if timeout <= 0:
        return "no time left"
    if hook.kind == "sleep":
        stop.wait(min(hook.seconds, timeout))
        return "slept"
    if hook.kind == "exec":
        if sandbox is None or not hook.command:
            return "no command"
        try:
            return f"exit {exec_in_pod(replace(sandbox, argv=hook.command), timeout=timeout).code}"
        except (OSError, SandboxError) as e:
            return f"failed: {e}"
    port = ports.get(hook.port, 0) if isinstance(hook.port, str) and not hook.port.isdigit() else int(hook.port)
    try:
        sock = netns.socket_in(node_netns, listen=None, reuse=False)
        sock.setblocking(True)
        sock.settimeout(timeout)
        sock.connect((hook.host or pod_ip, port))
        conn = http.client.HTTPConnection(hook.host or pod_ip, port, timeout=timeout)
        conn.sock = sock
        try:
            conn.request("GET", hook.path)
            return f"HTTP {conn.getresponse().status}"
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        return f"failed: {e}"


def wait_until(deadline, done, wake: threading.Event, step: float = 0.1) -> bool:
    """Wait until `done()` or the monotonic time `deadline()` (re-read when `wake` is set:
    a shorter grace period); True when done."""
    while True:
        if done():
            return True
        left = deadline() - time.monotonic()
        if left <= 0:
            return done()
        if wake.wait(min(step, left)):
            wake.clear()

