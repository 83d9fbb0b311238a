"""Syncs: partial rewrites, stale chains, full resyncs, hooks added once."""
import pytest

from emulator.kubeproxy import names
from emulator.kubeproxy.proxier import Proxier
from tests.fakes.iptables_ruleset import FakeRunner
from kubeproxy_helpers import (CLUSTER_CIDR, NODE, NODE_IP, REMOTE_POD, apply, endpoint, make_proxier, service,
                               slice_, tracer)

pytestmark = pytest.mark.unit


def two_services():
    proxier, runner = make_proxier()
    apply(proxier, service("a", "10.8.0.1"), slice_("a", [endpoint("10.4.2.1"), endpoint("10.4.2.2")]),
          service("b", "10.8.0.2"), slice_("b", [endpoint("10.4.3.1")]))
    first = proxier.sync()
    assert first.ok and first.full
    return proxier, runner


def chain_decls(text, prefix="KUBE-S"):
    nat = text.split("*nat", 1)[1]
    return {line[1:].split()[0] for line in nat.splitlines() if line.startswith(":" + prefix)}


def nat_chains(runner):
    return set(runner.ruleset.tables["nat"])


def test_first_sync_is_full_and_installs_hooks_and_canaries():
    proxier, runner = two_services()
    text = runner.last_restore
    assert "*mangle\n:KUBE-PROXY-CANARY - [0:0]" in text
    assert '-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in text
    for table in ("mangle", "nat", "filter"):
        assert runner.chain_exists(table, "KUBE-PROXY-CANARY")
    assert proxier.last_successful_sync is not None


def test_hooks_are_added_once_even_after_repeated_full_syncs():
    proxier, runner = two_services()
    for _ in range(3):
        result = proxier.sync(full=True)
        assert result.ok and result.full
        assert "-I " not in runner.last_restore
    for chain, rules in (("PREROUTING", runner.ruleset.tables["nat"]["PREROUTING"]),
                         ("INPUT", runner.ruleset.tables["filter"]["INPUT"])):
        targets = [r.target for r in rules]
        assert len(targets) == len(set(targets)), chain


def test_hooks_keep_other_components_rules_and_go_first():
    runner = FakeRunner()
    runner.ruleset.restore("*nat\n:CNI-CHAIN - [0:0]\n-A POSTROUTING -j CNI-CHAIN\nCOMMIT\n")
    proxier = Proxier(NODE, [NODE_IP], CLUSTER_CIDR, runner)
    assert proxier.sync().ok
    targets = [r.target for r in runner.ruleset.tables["nat"]["POSTROUTING"]]
    assert targets == ["KUBE-POSTROUTING", "CNI-CHAIN"]


def test_partial_sync_writes_only_the_changed_services_chains():
    proxier, runner = two_services()
    b_chains = {names.svc_chain("default/b", "tcp"), names.sep_chain("default/b", "tcp", "10.4.3.1:8080")}
    apply(proxier, slice_("a", [endpoint("10.4.2.1"), endpoint("10.4.2.2"), endpoint("10.4.2.3")]),
          event="MODIFIED")
    result = proxier.sync()
    assert result.ok and not result.full and result.rewritten_services == 1
    text = runner.last_restore
    written = chain_decls(text)
    assert written.isdisjoint(b_chains)
    assert len(chain_decls(text, "KUBE-SEP")) == 3 and len(chain_decls(text, "KUBE-SVC")) == 1
    assert '"default/b cluster IP"' in text                         # KUBE-SERVICES is complete
    assert "-> 10.4.3.1" not in text                                # b's chains untouched
    assert "*mangle" not in text and "-I " not in text
    assert b_chains <= nat_chains(runner)
    assert tracer(runner).destinations("10.4.1.9", "10.8.0.2", 80) == {"10.4.3.1:8080": 1.0}
    assert len(tracer(runner).destinations("10.4.1.9", "10.8.0.1", 80)) == 3


def test_sync_without_changes_rewrites_no_service_chain():
    proxier, runner = two_services()
    result = proxier.sync()
    assert result.ok and result.rewritten_services == 0
    assert not chain_decls(runner.last_restore, "KUBE-SEP")


def test_removed_endpoint_and_deleted_service_chains_are_flushed_and_deleted():
    proxier, runner = two_services()
    before = nat_chains(runner)
    apply(proxier, slice_("a", [endpoint("10.4.2.1")]), event="MODIFIED")
    result = proxier.sync()
    assert result.ok and result.deleted_chains == 1
    (gone,) = before - nat_chains(runner)
    assert f":{gone} - [0:0]" in runner.last_restore and f"-X {gone}" in runner.last_restore
    apply(proxier, service("b", "10.8.0.2"), event="DELETED")
    result = proxier.sync()
    assert result.ok and result.deleted_chains == 2                 # KUBE-SVC and KUBE-SEP of b
    assert not any("10.4.3.1" in r.spec for rules in runner.ruleset.tables["nat"].values() for r in rules)
    (o,) = tracer(runner).trace("10.4.1.9", "10.8.0.2", 80)
    assert not o.packet.dnat


def test_leftover_chains_of_an_earlier_run_are_removed_on_the_first_sync():
    runner = FakeRunner()
    runner.ruleset.restore("*nat\n:KUBE-SVC-LEFTOVER0000000 - [0:0]\n:OTHER - [0:0]\nCOMMIT\n")
    proxier = Proxier(NODE, [NODE_IP], CLUSTER_CIDR, runner)
    assert proxier.sync().deleted_chains == 1
    assert "KUBE-SVC-LEFTOVER0000000" not in nat_chains(runner) and "OTHER" in nat_chains(runner)


def test_failed_restore_forces_a_full_resync():
    proxier, runner = two_services()
    apply(proxier, slice_("b", [endpoint("10.4.3.1"), endpoint("10.4.3.2")]), event="MODIFIED")
    runner.fail_next = True
    result = proxier.sync()
    assert not result.ok and "injected failure" in result.error
    result = proxier.sync()
    assert result.ok and result.full and result.rewritten_services == 2
    assert len(tracer(runner).destinations("10.4.1.9", "10.8.0.2", 80)) == 2


def test_vanished_canary_means_tables_were_flushed_and_forces_full_resync():
    proxier, runner = two_services()
    assert proxier.check_canary()
    runner.ruleset.tables = {}                       # someone ran iptables -F / -X everywhere
    assert not proxier.check_canary()
    result = proxier.sync()
    assert result.ok and result.full
    assert tracer(runner).destinations("10.4.1.9", "10.8.0.1", 80).keys() == {"10.4.2.1:8080", "10.4.2.2:8080"}


def test_changing_a_port_moves_the_rules_without_touching_other_services():
    proxier, runner = two_services()
    apply(proxier, service("a", "10.8.0.1", ports=[{"port": 8000, "targetPort": 8080}]), event="MODIFIED")
    assert proxier.sync().ok
    t = tracer(runner)
    assert len(t.destinations("10.4.1.9", "10.8.0.1", 8000)) == 2
    (o,) = t.trace("10.4.1.9", "10.8.0.1", 80)
    assert not o.packet.dnat
    assert t.destinations("10.4.1.9", "10.8.0.2", 80) == {"10.4.3.1:8080": 1.0}


def test_local_ready_endpoints_and_health_check_ports_follow_the_last_sync():
    proxier, _ = make_proxier()
    apply(proxier, service("web", "10.8.0.5", type="LoadBalancer", externalTrafficPolicy="Local",
                           healthCheckNodePort=32100, ports=[{"port": 80, "nodePort": 30500}]),
          slice_("web", [endpoint("10.4.1.5", NODE), endpoint("10.4.1.6", NODE, ready=False), endpoint(REMOTE_POD)]))
    assert proxier.local_ready_endpoints() == {}
    assert proxier.sync().ok
    assert proxier.local_ready_endpoints() == {("default", "web"): 1}
    assert proxier.health_check_node_ports() == {("default", "web"): 32100}


def test_health_turns_bad_when_an_update_waits_more_than_twice_the_sync_period():
    now = [1000.0]
    proxier, runner = make_proxier(sync_period=30.0, clock=lambda: now[0])
    assert proxier.health().healthy
    apply(proxier, service("a", "10.8.0.1"))            # queued at t=1000
    now[0] = 1059.0
    assert proxier.health().healthy
    now[0] = 1061.0
    assert not proxier.health().healthy
    assert proxier.sync().ok
    assert proxier.health().healthy and proxier.last_successful_sync == 1061.0


def test_syncs_are_logged_at_most_once_per_period_with_the_ones_between_counted(caplog):
    from emulator.kubeproxy import proxier as proxier_module
    now = [1000.0]
    proxier, _ = make_proxier(clock=lambda: now[0])
    marks = iter(range(1, 100))
    proxier.sync_mark_fn = lambda: next(marks)
    caplog.set_level("INFO", logger="emulator.kubeproxy.proxier")

    def change_and_sync(name, ip):
        apply(proxier, service(name, ip), slice_(name, [endpoint("10.4.2.1")]))
        assert proxier.sync().ok

    change_and_sync("a", "10.8.0.1")                     # logged: the first
    for i, name in enumerate("bcd"):                     # within the period: counted, not logged
        now[0] += 1
        change_and_sync(name, f"10.8.0.{i + 2}")
    now[0] += proxier_module.SYNC_LOG_PERIOD
    change_and_sync("e", "10.8.0.9")                     # logged, with the three between
    lines = [r.getMessage() for r in caplog.records if "rules synced" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{NODE}: rules synced up to resourceVersion 1:")
    assert "resourceVersion 5:" in lines[1] and "3 more sync(s) since the last line" in lines[1]
