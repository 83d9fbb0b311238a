"""The executors of save, wait-until, object assert and traffic from a Deployment, against a fake API."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from emulator.config.object_steps import SaveStep
from emulator.config.scenario import AssertStep, TrafficSpec, WaitStep
from emulator.errors import KubemuError
from emulator.runner import client, flows
from emulator.runner.steps import StepContext
from emulator.runner.steps.assert_ import run_object_assert
from emulator.runner.steps.save import run_save
from emulator.runner.steps.wait import run_wait_until

pytestmark = pytest.mark.unit


class FakeApi:
    """get/list as the API server actor answers them (`.remote` returns the value; ray.get is identity)."""

    def __init__(self, objects: list[dict]) -> None:
        self.objects = objects
        self.get = SimpleNamespace(remote=self._get)
        self.list = SimpleNamespace(remote=self._list)

    def _get(self, kind, ns, name):
        return next((o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name
                     and o["metadata"].get("namespace", "") == (ns or "")), None)

    def _list(self, kind, ns=None, selector=None):
        return [o for o in self.objects if o["kind"] == kind and (ns is None or o["metadata"].get("namespace") == ns)
                and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in (selector or {}).items())], 7


def pod(name, node, ip, app="web"):
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": node}, "status": {"phase": "Running", "podIP": ip}}


OBJECTS = [
    {"kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.8.0.2"}},
    {"kind": "EndpointSlice", "metadata": {"name": "web-b", "namespace": "default",
                                           "labels": {"kubernetes.io/service-name": "web"}},
     "endpoints": [{"addresses": ["10.4.1.2"], "conditions": {"ready": True}}]},
    {"kind": "EndpointSlice", "metadata": {"name": "web-a", "namespace": "default",
                                           "labels": {"kubernetes.io/service-name": "web"}},
     "endpoints": [{"addresses": ["10.4.0.2"], "conditions": {"ready": False}}]},
    {"kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
     "spec": {"selector": {"matchLabels": {"app": "web"}}}},
    pod("web-b", "n2", "10.4.1.2"), pod("web-a", "n1", "10.4.0.2"), pod("other", "n1", "10.4.0.9", app="x"),
]


@pytest.fixture
def ctx(monkeypatch):
    fake_ray = SimpleNamespace(get=lambda ref: [r for r in ref] if isinstance(ref, list) else ref)
    monkeypatch.setattr(client, "ray", fake_ray)

    def wait_for(check, timeout, what, interval=0.1):
        if not check():
            raise KubemuError(f"timed out waiting for {what}")
        return 0.0
    cluster = SimpleNamespace(api=FakeApi(OBJECTS), wait_for=wait_for, run_dir=None,
                              agents={"n1": SimpleNamespace(name="n1"), "n2": SimpleNamespace(name="n2")})
    return StepContext(cluster)


def test_save_then_var_in_an_object_assertion(ctx) -> None:
    rec = run_save(SaveStep.model_validate(
        {"save": {"name": "ip", "from": {"object": "service/web", "field": "spec.clusterIP"}}}), ctx)
    assert rec["value"] == "10.8.0.2" and ctx.vars == {"ip": "10.8.0.2"}
    ok = AssertStep.model_validate({"assert": {"object": "service/web", "field": "spec.clusterIP", "equals": "{var:ip}"}})
    assert run_object_assert(ok, ctx)["ok"]
    with pytest.raises(KubemuError, match="has no field"):
        run_save(SaveStep.model_validate(
            {"save": {"name": "x", "from": {"object": "service/web", "field": "spec.nope"}}}), ctx)


def test_wait_until_on_merged_slices_and_gone(ctx) -> None:
    ready = WaitStep.model_validate({"wait": {"until": {"object": "endpointslices?service=web",
                                                        "field": "endpoints[*].conditions.ready", "equals": [False, True]}}})
    assert run_wait_until(ready, ctx)["until"].startswith("endpointslices?service=web")
    never = WaitStep.model_validate({"wait": {"until": {"object": "endpointslices?service=web",
                                                        "field": "endpoints[*].conditions.ready", "equals": [True, True]}}})
    with pytest.raises(KubemuError, match=r"last seen: \[false, true\]"):
        run_wait_until(never, ctx)
    gone = WaitStep.model_validate({"wait": {"until": {"object": "pod/nope", "gone": True}}})
    run_wait_until(gone, ctx)
    bad = AssertStep.model_validate({"assert": {"object": "pod/web-a", "gone": True}})
    assert run_object_assert(bad, ctx)["checks"][0] == {"metric": "gone", "expected": True,
                                                                    "actual": "exists", "ok": False}


def test_traffic_from_deployment_sources(ctx) -> None:
    def spec(**kw):
        return TrafficSpec.model_validate({"name": "t", "from": "deployment/web", "tcp": {"target": "x:80"}, **kw})
    every = flows.sources(spec(), ctx.client)
    assert [(a.name, t, p) for a, t, p in every] == [("n1", "default/web-a", "web-a"), ("n2", "default/web-b", "web-b")]
    assert [p for _, _, p in flows.sources(spec(pod=1), ctx.client)] == ["web-b"]
    with pytest.raises(KubemuError, match="no pod 2"):
        flows.sources(spec(pod=2), ctx.client)


def test_traffic_from_deployment_in_turn_at_once_and_one(ctx, monkeypatch) -> None:
    """Without pod/pods the pods run one after the other; pods: all at once; records merged with source_pod."""
    order = []

    def run_flow(target, kind, params, name):
        order.append(name)
        return [{"t_start": float(len(order)), "total_ms": 1.0, "outcome": "ok"}]
    for a in ctx.cluster.agents.values():
        a.run_flow = SimpleNamespace(remote=run_flow)
    monkeypatch.setattr(flows, "load_params", lambda spec, resolve: {})
    for extra in ({}, {"pods": "all"}):
        order.clear()
        spec = TrafficSpec.model_validate({"name": "t", "from": "deployment/web", "tcp": {"target": "x:80"}, **extra})
        run = flows.start(spec, ctx)
        recs = flows._collect(run, ctx)
        assert order == ["t--web-a", "t--web-b"] and [r["source_pod"] for r in recs] == ["web-a", "web-b"]
        assert run.step_rec["pods"] == ["web-a", "web-b"]
