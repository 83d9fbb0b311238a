"""The cloud controller's reconcile and probe steps with fake API, SDN, prober and clock (no Ray)."""
import copy

import pytest

from cloud_helpers import INTERNAL, TIMING, facts, nodes, service
from emulator.cloud.controller import CloudCore
from emulator.errors import ConfigError

pytestmark = pytest.mark.unit


class FakeApi:
    def __init__(self, objs):
        self.objs = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs}
        self.writes = []
        self.fail = False

    def list(self, kind):
        return [copy.deepcopy(o) for (k, _, _), o in self.objs.items() if k == kind]

    def patch_status(self, ns, name, status):
        if self.fail:
            raise RuntimeError("api down")
        self.writes.append((ns, name, status))
        self.objs[("Service", ns, name)].setdefault("status", {}).update(copy.deepcopy(status))

    def put(self, obj):
        self.objs[(obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj

    def delete(self, kind, ns, name):
        self.objs.pop((kind, ns, name))


class FakeSdn:
    def __init__(self):
        self.states = []
        self.fail = False

    def set_state(self, state):
        if self.fail:
            raise RuntimeError("sdn restarting")
        self.states.append(copy.deepcopy(state))


class Prober:
    """Answers per (ip, port): (passed, late) for the listed targets."""

    def __init__(self, up, late=()):
        self.up, self.late = set(up), set(late)
        self.batches = []

    def __call__(self, targets, timeout, late_cap):
        assert timeout == TIMING.lb_health_check_timeout and late_cap > timeout
        self.batches.append(list(targets))
        return [((ip, port) in self.up, (ip, port) in self.late) for ip, port, _ in targets]


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def make(objs, sdn=None, **kw):
    api = FakeApi(objs)
    sdn = sdn or FakeSdn()
    clock = Clock()
    core = CloudCore(facts(), TIMING, kw.pop("rules", []), list_objects=api.list, patch_status=api.patch_status,
                     push_state=sdn.set_state, clock=clock, **kw)
    return core, api, sdn, clock


def lbs_of(state):
    return {lb["name"]: (lb["ip"], lb["backends"]) for lb in state["load_balancers"]}


IPS = {"pool-a-1": "10.128.0.2", "pool-b-1": "10.128.0.3", "pool-c-1": "10.128.0.4"}


def test_reconcile_allocates_writes_status_and_pushes_once():
    core, api, sdn, clock = make(nodes() + [service("web"), service("ilb", annotations=INTERNAL, created=1),
                                            service("plain", typ="ClusterIP")])
    assert core.reconcile(1000.0) is True
    assert sorted(api.writes) == [("default", "ilb", {"loadBalancer": {"ingress": [{"ip": "10.128.15.253"}]}}),
                                  ("default", "web", {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}})]
    assert len(sdn.states) == 1
    # Pushed at once with the new addresses; no node has passed a health check yet.
    assert lbs_of(sdn.states[0]) == {"default/ilb": ("10.128.15.253", []), "default/web": ("203.0.113.1", [])}
    assert core.last_pushed == sdn.states[0] and core.pushed_at == 1000.0
    # Nothing changed: no write, no push; forced (periodic resync): pushed again.
    assert core.reconcile(1001.0) is True and len(api.writes) == 2 and len(sdn.states) == 1
    assert core.reconcile(1002.0, force=True) is True and len(sdn.states) == 2


def test_cluster_policy_health_steers_backends():
    core, api, sdn, clock = make(nodes() + [service("web")])
    core.reconcile(1000.0)
    prober = Prober({(ip, 10256) for ip in IPS.values()})
    ts = core.probe_once(1000.0, prober)
    assert sorted(t["node"] for t in ts) == sorted(IPS) and all(t["healthy"] for t in ts)
    assert prober.batches == [[(ip, 10256, "/healthz") for ip in IPS.values()]]
    clock.t = 1000.2
    core.reconcile(1000.2)
    assert lbs_of(sdn.states[-1])["default/web"][1] == ["pool-a-1", "pool-b-1", "pool-c-1"]
    assert all(e["applied_at"] == 1000.2 for e in core.health_events())
    # pool-c-1's kube-proxy stops answering: 3 failures 8 s apart, then it is steered away.
    prober.up.discard(("10.128.0.4", 10256))
    assert core.probe_once(1004.0, prober) == []             # not due yet (8 s interval)
    assert core.probe_once(1008.0, prober) == [] and core.probe_once(1016.0, prober) == []
    ts = core.probe_once(1024.0, prober)
    assert [(t["node"], t["healthy"], t["time"]) for t in ts] == [("pool-c-1", False, 1024.0)]
    clock.t = 1024.1
    core.reconcile(1024.1)
    assert lbs_of(sdn.states[-1])["default/web"][1] == ["pool-a-1", "pool-b-1"]
    last = core.health_events()[-1]
    assert last["applied_at"] == 1024.1 and last["time"] == 1024.0


def test_local_policy_only_nodes_with_ready_pods():
    core, api, sdn, clock = make(nodes() + [service("loc", policy="Local", hc_port=31500)])
    core.reconcile(1000.0)
    prober = Prober({("10.128.0.3", 31500)})          # only pool-b-1 has a ready pod
    core.probe_once(1000.0, prober)
    assert prober.batches[0] == [(ip, 31500, "/healthz") for ip in IPS.values()]
    core.reconcile(1000.1)
    assert lbs_of(sdn.states[-1])["default/loc"] == ("203.0.113.1", ["pool-b-1"])
    # A pod becomes ready on pool-a-1: healthy at the next probe (3 s later), one success.
    prober.up.add(("10.128.0.2", 31500))
    ts = core.probe_once(1003.0, prober)
    assert [(t["node"], t["healthy"]) for t in ts] == [("pool-a-1", True)]
    core.reconcile(1003.0)
    assert lbs_of(sdn.states[-1])["default/loc"][1] == ["pool-a-1", "pool-b-1"]
    # pool-b-1 loses its pod: 2 failures (6 s) and it is out.
    prober.up.discard(("10.128.0.3", 31500))
    assert core.probe_once(1006.0, prober) == []
    ts = core.probe_once(1009.0, prober)
    assert [(t["node"], t["healthy"]) for t in ts] == [("pool-b-1", False)]
    core.reconcile(1009.0)
    assert lbs_of(sdn.states[-1])["default/loc"][1] == ["pool-a-1"]


def test_shared_probes_and_batch_failure():
    core, api, sdn, clock = make(nodes() + [service("a"), service("b", created=1)])
    core.reconcile(1000.0)
    prober = Prober({(ip, 10256) for ip in IPS.values()})
    ts = core.probe_once(1000.0, prober)
    assert len(prober.batches[0]) == 3 and len(ts) == 6     # one request answers both LBs

    def broken(targets, timeout, late_cap):
        raise RuntimeError("prober agent died")
    for t in (1008.0, 1016.0, 1024.0):
        core.probe_once(t, broken)                         # a lost batch counts as failures
    core.reconcile(1024.0)
    assert lbs_of(sdn.states[-1]) == {"default/a": ("203.0.113.1", []), "default/b": ("203.0.113.2", [])}


def test_late_answers_count_by_their_status_and_are_reported_apart():
    core, api, sdn, clock = make(nodes() + [service("a"), service("b", created=1)])
    core.reconcile(1000.0)
    assert core.late_answers() is None
    # pool-a-1 answers 200 late, pool-b-1 answers 503 late, pool-c-1 in time
    prober = Prober({("10.128.0.2", 10256), ("10.128.0.4", 10256)},
                    late={("10.128.0.2", 10256), ("10.128.0.3", 10256)})
    ts = core.probe_once(1000.0, prober)
    assert sorted({t["node"] for t in ts}) == ["pool-a-1", "pool-c-1"]   # late 200 passes, 503 does not
    # one request answers both load balancers: each late answer counts once
    assert core.late_answers() == {"answers": 2, "passed": 1, "nodes": ["pool-a-1", "pool-b-1"], "first": 1000.0}


def test_sdn_restart_push_retried_and_status_write_retried():
    sdn = FakeSdn()
    sdn.fail = True
    core, api, _, clock = make(nodes() + [service("web")], sdn=sdn)
    assert core.reconcile(1000.0) is False and core.last_pushed is None and core.push_failures == 1
    assert api.writes                                      # status written even though the push failed
    sdn.fail = False
    assert core.reconcile(1000.5) is True and len(sdn.states) == 1   # no change, still pushed
    api.put(service("new", created=5))
    api.fail = True
    assert core.reconcile(1001.0) is False
    assert lbs_of(sdn.states[-1])["default/new"] == ("203.0.113.2", [])   # state uses the decided IP
    api.fail = False
    assert core.reconcile(1001.5) is True
    assert api.objs[("Service", "default", "new")]["status"]["loadBalancer"]["ingress"] == [{"ip": "203.0.113.2"}]


def test_restarted_controller_rebuilds_the_same_state():
    objs = nodes() + [service("web"), service("loc", policy="Local", hc_port=31500, created=1),
                      service("ilb", annotations=INTERNAL, created=2)]
    core, api, sdn, clock = make(objs)
    core.reconcile(1000.0)
    prober = Prober({(ip, 10256) for ip in IPS.values()} | {("10.128.0.3", 31500)})
    core.probe_once(1000.0, prober)
    core.reconcile(1000.0)
    before = sdn.states[-1]
    # A new controller (after a restart) reads the same API objects: same IPs, no writes.
    sdn2 = FakeSdn()
    core2 = CloudCore(facts(), TIMING, [], list_objects=api.list, patch_status=api.patch_status,
                      push_state=sdn2.set_state)
    n_writes = len(api.writes)
    core2.reconcile(2000.0)
    assert len(api.writes) == n_writes
    core2.probe_once(2000.0, prober)
    core2.reconcile(2000.0)
    assert sdn2.states[-1] == before


def test_type_change_and_delete_release():
    core, api, sdn, clock = make(nodes() + [service("web"), service("other", created=1)])
    core.reconcile(1000.0)
    api.put(service("web", typ="ClusterIP", status_ip="203.0.113.1"))
    api.delete("Service", "default", "other")
    core.reconcile(1001.0)
    assert api.writes[-1] == ("default", "web", {"loadBalancer": {}})
    assert api.objs[("Service", "default", "web")]["status"]["loadBalancer"] == {}
    assert sdn.states[-1]["load_balancers"] == [] and core.allocator.assigned == {}
    assert not [r for r in sdn.states[-1]["firewall"] if r["name"].startswith("k8s-")]
    # A foreign loadBalancerClass is left alone.
    foreign = service("foreign", status_ip="192.0.2.7")
    foreign["spec"]["loadBalancerClass"] = "example.com/metallb"
    api.put(foreign)
    core.reconcile(1002.0)
    assert api.objs[("Service", "default", "foreign")]["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.7"}]


def test_views_errors_and_no_health_checks():
    core, api, sdn, clock = make(nodes() + [service("web"), service("bad", lb_ip="192.0.2.1")],
                                 health_checks=False)
    core.reconcile(1000.0)
    assert core.due_probes(1000.0) == [] and core.next_probe_at() is None
    # Health checks off: every node is a backend.
    assert lbs_of(sdn.states[-1]) == {"default/web": ("203.0.113.1", ["pool-a-1", "pool-b-1", "pool-c-1"])}
    view = {lb["name"]: lb for lb in core.load_balancers()}
    assert view["default/web"]["ip"] == "203.0.113.1" and view["default/web"]["scheme"] == "external"
    assert view["default/web"]["backends"] == ["pool-a-1", "pool-b-1", "pool-c-1"]
    assert view["default/bad"]["ip"] is None and "not in the external range" in view["default/bad"]["error"]
    assert ("default", "bad", {"loadBalancer": {}}) not in api.writes   # nothing to clear


def test_topology_rule_clashing_with_gke_fails_at_construction():
    with pytest.raises(ConfigError):
        make(nodes(), rules=[{"name": "default-allow-internal", "action": "deny"}])
