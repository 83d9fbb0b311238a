"""Traffic steps: pacing, the tcp/udp/ping/iperf3 loads, background flows and `await`."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from emulator.config import load_scenario
from emulator.config.loads import split_target
from emulator.config.scenario import AwaitStep, TrafficSpec
from emulator.config.templates import Placeholder
from emulator.runner.flows import describe, load_params

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]


def spec(**load) -> TrafficSpec:
    return TrafficSpec.model_validate({"name": "t", "from": "pod/client", **load})


def test_http_pacing_duration_rate_and_default_count():
    s = spec(http={"url": "http://web/", "duration": "5s", "rate": 20})
    assert (s.http.requests, s.http.duration, s.http.rate, s.http.concurrency) == (None, 5.0, 20.0, None)
    assert spec(http={"url": "http://web/"}).http.requests == 100
    assert spec(http={"url": "http://web/", "requests": 7}).http.duration is None


@pytest.mark.parametrize("load, message", [
    ({"http": {"url": "http://web/", "rate": 5, "concurrency": 2}}, "not both"),
    ({"http": {"url": "http://web/", "duration": 0}}, "duration must be > 0"),
    ({"http": {"url": "http://web/", "rate": 0}}, "greater than 0"),
    ({"tcp": {"target": "web"}}, "HOST:PORT"),
    ({"udp": {"target": "web:70000"}}, "HOST:PORT"),
    ({"ping": {"host": "web", "interval": "1ms"}}, ">= 2ms"),
    ({"iperf3": {"target": "web", "duration": "0.5s"}}, ">= 1s"),
    ({"tcp": {"target": "web:80"}, "udp": {"target": "web:81"}}, "exactly one load generator"),
])
def test_bad_loads_are_refused(load, message):
    with pytest.raises(ValidationError, match=message):
        spec(**load)


def test_each_kind_and_its_protocol():
    assert spec(tcp={"target": "{clusterip:web}:80"}).protocol == "tcp"
    assert spec(udp={"target": "web:8081"}).udp.message == "kubemu"
    assert spec(ping={"host": "{pod:server}"}).ping.count == 10
    assert spec(iperf3={"target": "{pod:server}"}).iperf3.duration == 2.0
    assert spec(background=True, tcp={"target": "a:1"}).background is True


def test_targets_split_with_default_ports():
    assert split_target("10.0.0.1:80") == ("10.0.0.1", 80)
    assert split_target("server", 5201) == ("server", 5201)
    with pytest.raises(ValueError):
        split_target("server")


def test_params_resolve_placeholders():
    def resolve(p: Placeholder) -> str:
        return {"clusterip": "10.8.0.20", "pod": "10.4.1.7", "nodeport": "30080"}[p.kind]
    assert load_params(spec(tcp={"target": "{clusterip:web}:80", "send": "hi", "rate": 5, "duration": 2}),
                       resolve) == {"host": "10.8.0.20", "port": 80, "send": "hi", "requests": None,
                                    "duration": 2.0, "concurrency": None, "rate": 5.0, "timeout": 2.0}
    assert load_params(spec(iperf3={"target": "{pod:server}", "parallel": 2}), resolve) == \
        {"host": "10.4.1.7", "port": 5201, "duration": 2.0, "parallel": 2, "reverse": False, "timeout": 5.0}
    assert load_params(spec(ping={"host": "{pod:server}", "count": 3}), resolve)["host"] == "10.4.1.7"
    assert load_params(spec(udp={"target": "1.2.3.4:{nodeport:web:udp}"}), resolve)["port"] == 30080
    assert describe(spec(background=True, http={"url": "http://web/", "duration": 3})) == \
        "traffic t (background): 3s HTTP from pod/default/client to http://web/"


def test_await_all_or_names():
    assert AwaitStep.model_validate({"await": "all"}).await_ == "all"
    assert AwaitStep.model_validate({"await": ["a", "b"]}).await_ == ["a", "b"]
    with pytest.raises(ValidationError, match="background flow names"):
        AwaitStep.model_validate({"await": []})


def test_traffic_kinds_scenario_loads():
    s = load_scenario(REPO / "scenarios" / "traffic-kinds.yaml")
    kinds = {name: f.protocol for name, f in s.flows().items()}
    assert set(kinds.values()) == {"http", "tcp", "udp", "ping", "iperf3"}
    assert [n for n, f in s.flows().items() if f.background] == ["bg-http", "bg-udp"]


def test_background_flows_are_collected_by_await_assert_or_the_end(monkeypatch):
    """The flow table's bookkeeping, with an agent whose remote call returns records at once."""
    from types import SimpleNamespace

    from emulator.runner import client, flows
    from emulator.runner.steps import StepContext

    def records(n, t0):
        return [{"t_start": t0 + i, "total_ms": 500.0, "outcome": "ok", "pod": "web-1"} for i in range(n)]
    calls = []
    agent = SimpleNamespace(run_flow=SimpleNamespace(
        remote=lambda target, kind, params, name: calls.append((target, kind, name)) or records(3, 100.0)))
    monkeypatch.setattr(client, "ray", SimpleNamespace(get=lambda ref: ref))
    ctx = StepContext(SimpleNamespace(agents={"vm-1": agent}, agent_of_pod=lambda ns, name: agent))
    for name, bg in (("a", True), ("b", True), ("c", False)):
        rec = flows.run_traffic(SimpleNamespace(traffic=TrafficSpec.model_validate(
            {"name": name, "from": "host/vm-1", "background": bg, "tcp": {"target": "10.0.0.1:80"}})), ctx)
        assert rec["background"] is bg and ("ended" in rec) is (not bg)
    assert ctx.flows.pending() == ["a", "b"] and list(flows.new_results(ctx)) == ["c"]
    assert flows.run_await(AwaitStep.model_validate({"await": ["b"]}), ctx)["flows"] == ["b"]
    assert flows.await_all(ctx) == ["a"] and ctx.flows.pending() == []
    out = flows.new_results(ctx)
    assert list(out) == ["b", "a"] and out["a"]["background"] is True and out["a"]["kind"] == "tcp"
    assert out["a"]["ended"] == 102.5 and out["a"]["count"] == 3      # the last request's end
    assert [c[1:] for c in calls] == [("tcp", "a"), ("tcp", "b"), ("tcp", "c")]
