"""sessionAffinity ClientIP: the recent match pins a client to one endpoint."""
import pytest

from kubeproxy_helpers import apply, endpoint, make_proxier, service, slice_, tracer

pytestmark = pytest.mark.unit
ENDPOINTS = [endpoint(f"10.4.2.{i}") for i in range(1, 5)]


def sticky(timeout=None):
    cfg = {"clientIP": {"timeoutSeconds": timeout}} if timeout else None
    spec = {"sessionAffinity": "ClientIP"}
    if cfg:
        spec["sessionAffinityConfig"] = cfg
    return service("web", "10.8.0.10", **spec)


def test_affinity_rules_match_kube_proxy():
    proxier, runner = make_proxier()
    apply(proxier, sticky(600), slice_("web", ENDPOINTS))
    assert proxier.sync().ok
    text = runner.last_restore
    assert "-m recent --name KUBE-SEP-" in text and "--rcheck --seconds 600 --reap -j KUBE-SEP-" in text
    assert "-m recent --name KUBE-SEP-" in text and " --set -m tcp -p tcp -j DNAT" in text
    svc_rules = [line for line in text.splitlines() if line.startswith("-A KUBE-SVC-")]
    assert all("--rcheck" in line for line in svc_rules[1:5])          # checks come before the lottery
    assert "-m statistic" in svc_rules[5]


def test_client_sticks_to_one_endpoint_over_15_connections():
    proxier, runner = make_proxier()
    apply(proxier, sticky(), slice_("web", ENDPOINTS))
    assert proxier.sync().ok
    t = tracer(runner)
    first = t.trace_one("10.4.1.9", "10.8.0.10", 80, now=0.0)
    for i in range(15):
        (o,) = t.trace("10.4.1.9", "10.8.0.10", 80, now=float(i))     # one outcome only: pinned
        assert o.destination == first.destination
    assert len(t.destinations("10.4.1.7", "10.8.0.10", 80)) == 4       # another client is free


def test_affinity_expires_after_timeout():
    proxier, runner = make_proxier()
    apply(proxier, sticky(30), slice_("web", ENDPOINTS))
    assert proxier.sync().ok
    t = tracer(runner)
    t.trace_one("10.4.1.9", "10.8.0.10", 80, now=0.0)
    assert len(t.trace("10.4.1.9", "10.8.0.10", 80, now=29.0)) == 1
    assert len(t.destinations("10.4.1.9", "10.8.0.10", 80, now=31.0)) == 4


def test_affinity_switched_on_and_off_at_run_time():
    proxier, runner = make_proxier()
    apply(proxier, service("web", "10.8.0.10"), slice_("web", ENDPOINTS))
    assert proxier.sync().ok
    assert "recent" not in runner.last_restore
    apply(proxier, sticky(), event="MODIFIED")
    result = proxier.sync()
    assert result.ok and not result.full and result.rewritten_services == 1
    assert "--rcheck --seconds 10800 --reap" in runner.last_restore
    apply(proxier, service("web", "10.8.0.10"), event="MODIFIED")
    assert proxier.sync().ok
    assert not any("recent" in r.spec for rules in runner.ruleset.tables["nat"].values() for r in rules)
