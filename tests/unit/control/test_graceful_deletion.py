"""Graceful deletion (API server), the kubelet's termination plan, container states and
the EndpointSlice conditions of terminating pods: pure functions."""
import pytest

from emulator.api.deletion import graceful_delete, kubectl_grace, requested_grace
from emulator.control.endpointslices import desired_slices
from emulator.node import containers
from emulator.node.termination import Hook, grace_seconds, prestop_hooks

pytestmark = pytest.mark.unit


def a_pod(node="n1", grace=None, phase="Running", ready=True, **meta):
    spec = {"nodeName": node, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"kind": "Pod", "metadata": {"name": "p", "namespace": "default", "labels": {"app": "w"}, **meta},
            "spec": spec, "status": {"phase": phase, "podIP": "10.4.0.5", "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize("pod_grace, option, want", [(None, None, 30), (600, None, 600), (600, 5, 5), (None, 0, 0)])
def test_grace_period_from_options_then_pod_then_30(pod_grace, option, want):
    assert requested_grace(a_pod(grace=pod_grace), option) == want


def test_bound_pod_is_kept_terminating():
    out = graceful_delete(a_pod(grace=600), None, now=1000.0)
    assert out["metadata"]["deletionTimestamp"] == 1600.0 and out["metadata"]["deletionGracePeriodSeconds"] == 600


@pytest.mark.parametrize("pod, option", [(a_pod(), 0), (a_pod(node=None), None), (a_pod(phase="Succeeded"), None),
                                         (a_pod(phase="Failed"), 10)])
def test_removed_at_once(pod, option):
    assert graceful_delete(pod, option, now=1.0) is None


def test_second_delete_only_shortens():
    first = graceful_delete(a_pod(grace=600), None, now=1000.0)
    assert graceful_delete(first, 900, now=1010.0) == first              # longer: no change
    shorter = graceful_delete(first, 5, now=1010.0)
    assert shorter["metadata"]["deletionTimestamp"] == 1015.0
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 5
    assert graceful_delete(first, 0, now=1010.0) is None                 # force


@pytest.mark.parametrize("grace, force, want", [(None, False, None), (0, False, 1), (0, True, 0), (None, True, 0),
                                                 (7, False, 7), (7, True, 7)])
def test_kubectl_grace_and_force(grace, force, want):
    assert kubectl_grace(grace, force) == want


def test_kubelet_grace_and_prestop_hooks():
    pod = a_pod(grace=600)
    assert grace_seconds(pod) == 600
    pod["metadata"]["deletionGracePeriodSeconds"] = 5
    assert grace_seconds(pod) == 5
    pod["spec"]["containers"] = [
        {"name": "a", "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1"]}}}},
        {"name": "b", "lifecycle": {"preStop": {"httpGet": {"path": "/drain", "port": "http"}}}},
        {"name": "c", "lifecycle": {"preStop": {"sleep": {"seconds": 3}}}},
        {"name": "d"}]
    assert prestop_hooks(pod) == [Hook("a", "exec", command=("sh", "-c", "sleep 1")),
                                  Hook("b", "httpGet", port="http", path="/drain"),
                                  Hook("c", "sleep", seconds=3.0)]


@pytest.mark.parametrize("ready, terminating, publish, want", [
    (True, False, False, {"ready": True, "serving": True, "terminating": False}),
    (True, True, False, {"ready": False, "serving": True, "terminating": True}),
    (False, True, False, {"ready": False, "serving": False, "terminating": True}),
    (False, True, True, {"ready": True, "serving": True, "terminating": True}),
])
def test_slice_conditions_of_terminating_pods(ready, terminating, publish, want):
    pod = a_pod(ready=ready, **({"deletionTimestamp": 5.0} if terminating else {}))
    svc = {"kind": "Service", "metadata": {"name": "w", "namespace": "default", "uid": "u"},
           "spec": {"selector": {"app": "w"}, "publishNotReadyAddresses": publish,
                    "ports": [{"port": 80, "targetPort": "http"}]}}
    [s] = desired_slices(svc, [pod])
    assert s["endpoints"][0]["conditions"] == want


def test_container_start_error_then_crash_loop_then_running():
    st = containers.ContainerState("c", "busybox")
    assert containers.missing_command(["/no/such/binary"], "/usr/bin") is not None
    assert containers.missing_command(["sh"], "/usr/bin:/bin") is None
    containers.start_failed(st, "exec: no such file", now=1.0, mono=100.0, policy="Always")
    status = containers.api_status(st, ready=True)
    assert status["state"] == {"waiting": {"reason": "RunContainerError", "message": "exec: no such file"}}
    assert status["restartCount"] == 1 and not status["ready"] and not status["started"]
    assert status["imageID"].startswith("busybox@sha256:")   # required by the API's clients
    assert not containers.tick(st, 100.5, "p") and containers.tick(st, 101.0, "p")
    assert st.reason == "CrashLoopBackOff" and "back-off 10s" in st.message and st.restart_due == 110.0
    containers.started(st, now=2.0)
    assert containers.api_status(st, ready=True)["state"] == {"running": {"startedAt": 2.0}}
    containers.exited(st, 3, now=3.0, mono=200.0, policy="Always", pod_name="p")
    s = containers.api_status(st, ready=True)
    assert s["state"]["waiting"]["reason"] == "CrashLoopBackOff" and s["lastState"]["terminated"]["exitCode"] == 3
    assert st.restart_due == 200.0 + 20 and s["restartCount"] == 2


@pytest.mark.parametrize("policy, code, state", [("Never", 1, "terminated"), ("OnFailure", 0, "terminated"),
                                                 ("OnFailure", 1, "waiting"), ("Always", 0, "waiting")])
def test_restart_policy(policy, code, state):
    st = containers.ContainerState("c", "i", state="running")
    containers.exited(st, code, now=1.0, mono=1.0, policy=policy, pod_name="p")
    assert st.state == state


def test_backoff_doubles_up_to_five_minutes():
    assert [containers.backoff_seconds(n) for n in (1, 2, 3, 6, 7, 20)] == [10, 20, 40, 300, 300, 300]


def test_pod_conditions_and_reasons():
    run = containers.ContainerState("a", "i", state="running")
    bad = containers.ContainerState("b", "i")
    containers.start_failed(bad, "exec: x", 1.0, 1.0, "Always")
    conds = containers.pod_conditions([run, bad], probe_ready=True)
    ready = next(c for c in conds if c["type"] == "Ready")
    assert ready == {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                     "message": "containers with unready status: [b]"}
    assert next(c for c in containers.pod_conditions([run], True) if c["type"] == "Ready")["status"] == "True"
    pod = {"status": {"containerStatuses": [containers.api_status(run, True), containers.api_status(bad, True)]}}
    assert containers.waiting_reasons(pod) == ["b: RunContainerError (exec: x)"]


def test_crash_loop_reason_carries_the_last_start_error():
    st = containers.ContainerState("app", "busybox")
    containers.start_failed(st, 'exec: "/x": stat /x: no such file or directory', 1.0, 1.0, "Always")
    containers.tick(st, 5.0, "broken")
    [text] = containers.waiting_reasons({"status": {"containerStatuses": [containers.api_status(st, False)]}})
    assert text.startswith("app: CrashLoopBackOff (back-off 10s restarting failed container=app pod=broken)")
    assert text.endswith('last StartError: exec: "/x": stat /x: no such file or directory')


def test_a_pod_at_a_glance_says_where_it_runs_and_why_it_is_not_ready():
    pod = {"metadata": {"name": "web-1"}, "spec": {"nodeName": "node-a"},
           "status": {"phase": "Running", "conditions": [
               {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]}}
    assert containers.pod_state(pod) == "Running on node-a, Ready=False (ContainersNotReady)"
    pod["metadata"]["deletionTimestamp"] = "2026-12-05T13:00:00Z"
    assert containers.pod_state(pod).endswith(", terminating")
    assert containers.pod_state({"metadata": {}, "spec": {}, "status": {}}) == "Pending, not scheduled"


def test_wait_until_rereads_a_shortened_grace_period():
    import threading
    import time
    from emulator.node.termination import wait_until
    wake, deadline = threading.Event(), [time.monotonic() + 600]

    def shorten():
        deadline[0] = time.monotonic()
        wake.set()
    threading.Timer(0.2, shorten).start()
    assert wait_until(lambda: deadline[0], lambda: False, wake) is False     # returned: the grace period ended
    assert wait_until(lambda: time.monotonic() + 600, lambda: True, wake) is True
