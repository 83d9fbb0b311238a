"""Readiness probes, run like the kubelet does: from the node's namespace to the pod IP.

One thread per node enters the node's namespace for good and checks every due probe
(httpGet, tcpSocket, exec); a change of result is reported through a callback.

An httpGet probe of a server kubemu runs itself (an agnhost netexec container: Python in
the node host's process, shared with many nodes) keeps its timeout for the network: the
pod must accept the connection early enough for two round trips to fit in it. Its answer
may then come up to `LATE_CAP` seconds late on a busy machine (emulator/lateness.py) and
counts by its status, counted apart as late (the run reports it as load), as the load
balancer health checks do (emulator/workloads/hc_prober.py). A user's own command keeps
the exact timeout: a slow application must fail its probe.
"""
from __future__ import annotations

import http.client
import logging
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

from emulator.kernel import netns
from emulator.lateness import LATE_CAP, may_answer_late
from emulator.node.podexec import exec_in_pod
from emulator.node.sandbox import SandboxError, SandboxSpec

log = logging.getLogger(__name__)
FAILURE_LOG_EVERY = 20   # a failing probe is logged at its first failure and every this many after


class ProbeResult(NamedTuple):
    """One probe's outcome: succeeded, answered late (module docstring), and why it failed."""

    ok: bool
    late: bool = False
    error: str = ""


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
    in_process: bool = False   # the probed server is kubemu's own (netexec): late answers count


def check_probe(probe: dict, pod_ip: str, ports: dict[str, int], timeout: float,
                sandbox: SandboxSpec | None = None) -> bool:
    """Run one probe once; True on success. Exec probes run contained, in `sandbox`."""
    return run_probe(probe, pod_ip, ports, timeout, sandbox).ok


def run_probe(probe: dict, pod_ip: str, ports: dict[str, int], timeout: float,
              sandbox: SandboxSpec | None = None, late_cap: float | None = None) -> ProbeResult:
    """Run one probe once. With `late_cap`, an httpGet answer after the timeout from a pod that
    connected in time counts by its status (module docstring)."""
    def port_of(p) -> int:
        return ports[p] if isinstance(p, str) and not p.isdigit() else int(p)
    try:
        if "httpGet" in probe:
            h = probe["httpGet"]
            conn = http.client.HTTPConnection(pod_ip, port_of(h["port"]), timeout=timeout)
            try:
                t0 = time.monotonic()
                conn.connect()
                connected = time.monotonic() - t0
                may_be_late = may_answer_late(connected, timeout, late_cap)
                if may_be_late:
                    conn.sock.settimeout(max(timeout, late_cap) - connected)
                conn.request("GET", h.get("path", "/"))
                status = conn.getresponse().status
                late = may_be_late and time.monotonic() - t0 > timeout
                return ProbeResult(200 <= status < 400, late, f"HTTP status {status}")
            finally:
                conn.close()
        if "tcpSocket" in probe:
            with socket.create_connection((pod_ip, port_of(probe["tcpSocket"]["port"])), timeout=timeout):
                return ProbeResult(True)
        if "exec" in probe:
            cmd = tuple(str(a) for a in probe["exec"].get("command") or [])
            if sandbox is None or not cmd:
                return ProbeResult(False, error="no command")
            code = exec_in_pod(replace(sandbox, argv=cmd), timeout=timeout).code
            return ProbeResult(code == 0, error=f"exit code {code}")
    except (OSError, subprocess.TimeoutExpired, http.client.HTTPException, KeyError, ValueError, SandboxError) as e:
        return ProbeResult(False, error=f"{type(e).__name__}: {e}")
    return ProbeResult(True)


class ProbeRunner:
    """Checks due readiness probes from inside the node's namespace."""

    def __init__(self, node_netns: str, on_change: Callable[[str, bool], None]) -> None:
        self.node_netns, self.on_change = node_netns, on_change
        self.targets: dict[str, ProbeTarget] = {}
        self.late, self.late_passed = 0, 0   # answers late from load (module docstring)
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
                    res = run_probe(t.probe, t.pod_ip, t.ports, t.timeout, t.sandbox,
                                    LATE_CAP if t.in_process else None)
                    if res.late:
                        self.late, self.late_passed = self.late + 1, self.late_passed + res.ok
                    t.next_due = time.monotonic() + t.period
                    try:
                        self._record(t, res)
                    except Exception:  # noqa: BLE001 - one pod's report must not stop every probe here
                        log.exception("pod %s readiness not reported", t.key)
                with self._lock:
                    nxt = min((t.next_due for t in self.targets.values()), default=now + 1.0)
                self._wake.wait(max(0.02, min(1.0, nxt - time.monotonic())))
                self._wake.clear()

    def _record(self, t: ProbeTarget, res: ProbeResult) -> None:
        if res.ok:
            t.successes, t.failures = t.successes + 1, 0
            if not t.ready and t.successes >= t.success_threshold:
                t.ready = True
                log.info("pod %s ready: readiness probe passed", t.key)
                self.on_change(t.key, True)
        else:
            t.failures, t.successes = t.failures + 1, 0
            if t.failures % FAILURE_LOG_EVERY == 1:
                log.info("pod %s readiness probe failed (%d in a row): %s", t.key, t.failures, res.error)
            if t.ready and t.failures >= t.failure_threshold:
                t.ready = False
                log.info("pod %s not ready: %d readiness probes failed", t.key, t.failures)
                self.on_change(t.key, False)
