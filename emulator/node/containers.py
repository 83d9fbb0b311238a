"""Container states as the kubelet reports them (pure): containerStatuses and pod conditions.

A container is waiting (ContainerCreating, RunContainerError, CrashLoopBackOff), running
or terminated. A command that cannot start gives `RunContainerError` with the message;
one that exits is restarted per the pod's restartPolicy after a back-off (10 s doubling
up to 5 min, as the kubelet's) during which it waits with `CrashLoopBackOff`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field

BACKOFF_BASE, BACKOFF_MAX = 10.0, 300.0


@dataclass
class ContainerState:
    """What the kubelet knows of one container."""

    name: str
    image: str
    state: str = "waiting"              # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    exit_code: int | None = None
    started_at: float | None = None
    restart_count: int = 0
    last_state: dict = field(default_factory=dict)
    restart_due: float | None = None    # monotonic time of the next start attempt
    failed_at: float | None = None      # monotonic time of the last start error


def backoff_seconds(failures: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> float:
    """The kubelet's back-off before attempt `failures` + 1: `base`, doubled per failure, at most
    `cap` (by default its crash-loop back-off)."""
    return min(cap, base * 2 ** max(0, failures - 1))


def should_restart(policy: str, exit_code: int) -> bool:
    """restartPolicy Always / OnFailure / Never."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def missing_command(argv: list[str], path: str) -> str | None:
    """The start error of a command whose executable does not exist (as containerd words it)."""
    if not argv:
        return None
    exe = argv[0]
    found = os.path.exists(exe) if "/" in exe else shutil.which(exe, path=path) is not None
    if found:
        return None
    return (f'failed to create containerd task: exec: "{exe}": '
            f'{"stat " + exe + ": no such file or directory" if "/" in exe else "executable file not found in $PATH"}')


def started(st: ContainerState, now: float) -> None:
    """The container runs."""
    st.state, st.reason, st.message, st.started_at, st.restart_due = "running", "", "", now, None


def start_failed(st: ContainerState, message: str, now: float, mono: float, policy: str) -> None:
    """The command could not start: RunContainerError, retried after the back-off."""
    st.state, st.reason, st.message, st.exit_code = "waiting", "RunContainerError", message, 128
    st.last_state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": message,
                                    "finishedAt": now}}
    st.restart_count += 1
    st.failed_at = mono
    st.restart_due = mono + backoff_seconds(st.restart_count) if policy != "Never" else None


def tick(st: ContainerState, mono: float, pod_name: str, shown: float = 1.0) -> bool:
    """A start error, once reported for `shown` seconds, turns into CrashLoopBackOff while
    the back-off runs (as the kubelet's next sync reports it); True when it changed."""
    if st.reason == "RunContainerError" and st.restart_due is not None and st.failed_at is not None \
            and mono - st.failed_at >= shown:
        wait = backoff_seconds(st.restart_count)
        st.reason = "CrashLoopBackOff"
        st.message = f"back-off {wait:g}s restarting failed container={st.name} pod={pod_name}"
        return True
    return False


def exited(st: ContainerState, code: int, now: float, mono: float, policy: str, pod_name: str) -> None:
    """The container's process ended with `code`: terminated, or CrashLoopBackOff until restarted."""
    term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": st.started_at, "finishedAt": now}
    if not should_restart(policy, code):
        st.state, st.reason, st.exit_code, st.restart_due = "terminated", term["reason"], code, None
        st.last_state = {}
        return
    st.restart_count += 1
    wait = backoff_seconds(st.restart_count)
    st.state, st.reason, st.exit_code = "waiting", "CrashLoopBackOff", code
    st.message = f"back-off {wait:g}s restarting failed container={st.name} pod={pod_name}"
    st.last_state = {"terminated": term}
    st.restart_due = mono + wait


def api_status(st: ContainerState, ready: bool) -> dict:
    """One entry of status.containerStatuses."""
    if st.state == "running":
        state = {"running": {"startedAt": st.started_at}}
    elif st.state == "terminated":
        state = {"terminated": {"exitCode": st.exit_code, "reason": st.reason, "startedAt": st.started_at}}
    else:
        state = {"waiting": {"reason": st.reason, **({"message": st.message} if st.message else {})}}
    # imageID is required by the API (clients such as the Python client refuse a status
    # without it): the image by a digest of its name, as a runtime reports a pulled image.
    digest = hashlib.sha256(st.image.encode()).hexdigest()
    out = {"name": st.name, "image": st.image, "imageID": f"{st.image.split(':')[0]}@sha256:{digest}",
           "ready": ready and st.state == "running",
           "restartCount": st.restart_count, "started": st.state == "running", "state": state}
    if st.last_state:
        out["lastState"] = st.last_state
    return out


def pod_conditions(states: list[ContainerState], probe_ready: bool) -> list[dict]:
    """PodScheduled, ContainersReady and Ready from the containers and the readiness probe."""
    unready = [s.name for s in states if s.state != "running"]
    ready = probe_ready and not unready
    extra = {} if ready else {"reason": "ContainersNotReady",
                              "message": f"containers with unready status: [{' '.join(unready or [s.name for s in states])}]"}
    s = "True" if ready else "False"
    return [{"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": s, **extra}, {"type": "ContainersReady", "status": s, **extra}]


def pod_state(pod: dict) -> str:
    """`Running on node-a, Ready=False (ContainersNotReady), terminating`: a pod at a glance."""
    st, meta = pod.get("status", {}), pod.get("metadata", {})
    where = pod.get("spec", {}).get("nodeName")
    ready = next((c for c in st.get("conditions", []) or [] if c.get("type") == "Ready"), None)
    text = (st.get("phase") or "Pending") + (f" on {where}" if where else ", not scheduled")
    if ready is not None:
        text += f", Ready={ready.get('status')}" + (f" ({ready['reason']})" if ready.get("reason") else "")
    if meta.get("deletionTimestamp") is not None:
        text += ", terminating"
    return text


def waiting_reasons(pod: dict) -> list[str]:
    """`container: Reason (message)` for every waiting or failed container of a pod object."""
    out = []
    for cs in pod.get("status", {}).get("containerStatuses", []) or []:
        w = (cs.get("state") or {}).get("waiting") or {}
        t = (cs.get("state") or {}).get("terminated") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if w.get("reason") and w["reason"] != "ContainerCreating":
            text = f"{cs['name']}: {w['reason']}" + (f" ({w['message']})" if w.get("message") else "")
            if w["reason"] == "CrashLoopBackOff" and last:
                text += f"; last {last.get('reason')}: " + (last.get("message") or f"exit code {last.get('exitCode')}")
            out.append(text)
        elif t and t.get("exitCode"):
            out.append(f"{cs['name']}: terminated {t.get('reason')} (exit code {t['exitCode']})")
    st = pod.get("status", {})
    if st.get("phase") == "Failed" and st.get("reason"):
        out.append(f"{st['reason']}: {st.get('message', '')}".rstrip(": "))
    return out
