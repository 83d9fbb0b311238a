"""Readiness probes, run like the kubelet does: from the node's namespace to the pod IP.

One thread per node enters the node's namespace for good and checks every due probe
(httpGet, tcpSocket, exec); a change of result is reported through a callback.
"""
from __future__ import annotations

import http.client
import logging
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from emulator.kernel import netns
from emulator.node.podexec import exec_in_pod
from emulator.node.sandbox import SandboxError, SandboxSpec

log = logging.getLogger(__name__)


@dataclass
class ProbeTarget:
    """One pod's readiness probe (None probe: ready as soon as started)."""

    key: str
    pod_ip: str
    pod_netns: str
    probe: dict
    ports: dict[str, int]
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int
    next_due: float = 0.0
    ready: bool = False
    successes: int = 0
    failures: int = 0
    sandbox: SandboxSpec | None = None   # where exec probes run: the probing container's sandbox


def check_probe(probe: dict, pod_ip: str, ports: dict[str, int], timeout: float,
                sandbox: SandboxSpec | None = None) -> bool:
    """Run one probe once; True on success. Exec probes run contained, in `sandbox`."""
    def port_of(p) -> int:
        return ports[p] if isinstance(p, str) and not p.isdigit() else int(p)
    try:
        if "httpGet" in probe:
            h = probe["httpGet"]
            conn = http.client.HTTPConnection(pod_ip, port_of(h["port"]), timeout=timeout)
            try:
                conn.request("GET", h.get("path", "/"))
                return 200 <= conn.getresponse().status < 400
            finally:
                conn.close()
        if "tcpSocket" in probe:
            with socket.create_connection((pod_ip, port_of(probe["tcpSocket"]["port"])), timeout=timeout):
                return True
        if "exec" in probe:
            cmd = tuple(str(a) for a in probe["exec"].get("command") or [])
            if sandbox is None or not cmd:
                return False
            return exec_in_pod(replace(sandbox, argv=cmd), timeout=timeout).code == 0
    except (OSError, subprocess.TimeoutExpired, http.client.HTTPException, KeyError, ValueError, SandboxError):
        return False
    return True


class ProbeRunner:
    """Checks due readiness probes from inside the node's namespace."""

    def __init__(self, node_netns: str, on_change: Callable[[str, bool], None]) -> None:
        self.node_netns, self.on_change = node_netns, on_change
        self.targets: dict[str, ProbeTarget] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def add(self, target: ProbeTarget) -> None:
        with self._lock:
            self.targets[target.key] = target
        self._wake.set()

    def remove(self, key: str) -> None:
        with self._lock:
            self.targets.pop(key, None)

    def _run(self) -> None:
        with netns.entered(self.node_netns):
            while not self._stop.is_set():
                now = time.monotonic()
                with self._lock:
                    due = [t for t in self.targets.values() if t.next_due <= now]
                for t in due:
                    ok = check_probe(t.probe, t.pod_ip, t.ports, t.timeout, t.sandbox)
                    t.next_due = time.monotonic() + t.period
                    self._record(t, ok)
                with self._lock:
                    nxt = min((t.next_due for t in self.targets.values()), default=now + 1.0)
                self._wake.wait(max(0.02, min(1.0, nxt - time.monotonic())))
                self._wake.clear()

    def _record(self, t: ProbeTarget, ok: bool) -> None:
        if ok:
            t.successes, t.failures = t.successes + 1, 0
            if not t.ready and t.successes >= t.success_threshold:
                t.ready = True
                self.on_change(t.key, True)
        else:
            t.failures, t.successes = t.failures + 1, 0
            if t.ready and t.failures >= t.failure_threshold:
                t.ready = False
                self.on_change(t.key, False)
