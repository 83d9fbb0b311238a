"""GKE's Ingress controller, pure part: backends, routes, addresses, status, haproxy.cfg."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from emulator.cloud.haproxy_cfg import ProxySettings, armor_rules, render
from emulator.cloud.ingress import IngressCore, IngressIps
from emulator.cloud.ingress_model import Resolver, build_load_balancer, parse_policy
from emulator.cloud.ingress_sync import IngressSync
from emulator.records.cloud import CloudHost

pytestmark = pytest.mark.unit
NODES = {"node-a": "10.128.0.2", "node-b": "10.128.0.3"}


def service(name, port=80, typ="NodePort", node_port=30080, annotations=None):
    return {"metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
            "spec": {"type": typ, "ports": [{"name": "http", "port": port, "targetPort": 8080, "nodePort": node_port}]}}


def v1beta1(rules, backend=None):
    spec = {"rules": [{"host": h, "http": {"paths": [{"backend": {"serviceName": s, "servicePort": p}}]}}
                      for h, s, p in rules]}
    if backend:
        spec["backend"] = {"serviceName": backend[0], "servicePort": backend[1]}
    return {"apiVersion": "networking.k8s.io/v1beta1", "kind": "Ingress",
            "metadata": {"name": "demo", "namespace": "default", "resourceVersion": "7"}, "spec": spec}


def v1(paths, host="demo.example.com", **spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "demo", "namespace": "default"},
            "spec": {**spec, "rules": [{"host": host, "http": {"paths": [
                {"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"number": 80}}}}
                for p, t, s in paths]}}]}}


def resolver(services, slices=(), bcs=(), policies=(), secrets=()):
    return Resolver(list(services), list(slices), NODES, list(bcs), list(policies), list(secrets))


SEED = v1beta1([("demo.example.com", "frontend", 80), ("demo-backend.example.com", "users", 8080)])


def test_seed_v1beta1_maps_hosts_to_node_ports():
    res = resolver([service("frontend"), service("users", 8080, node_port=30081)])
    lb = build_load_balancer(SEED, "203.0.113.254", res)
    assert lb.errors == [] and lb.default_backend is None
    assert [(r.host, r.match, r.backend) for r in lb.routes] == [
        ("demo.example.com", "any", "be_default_frontend_80"),
        ("demo-backend.example.com", "any", "be_default_users_8080")]
    assert [(s.name, s.ip, s.port) for s in res.backends["be_default_users_8080"].servers] == [
        ("node-a", "10.128.0.2", 30081), ("node-b", "10.128.0.3", 30081)]


def test_v1_path_types_are_ordered_exact_then_longest_prefix():
    res = resolver([service(n) for n in ("a", "b", "c", "d")])
    lb = build_load_balancer(v1([("/", "Prefix", "a"), ("/api/", "Prefix", "b"), ("/api/v2", "Prefix", "c"),
                                 ("/api/login", "Exact", "d")], defaultBackend={"service": {
                                     "name": "a", "port": {"number": 80}}}), "203.0.113.254", res)
    assert [(r.match, r.path, r.backend[11:]) for r in lb.routes] == [
        ("exact", "/api/login", "d_80"), ("prefix", "/api/v2", "c_80"), ("prefix", "/api", "b_80"),
        ("any", "/", "a_80")]
    assert lb.default_backend == "be_default_a_80"
    cfg = render([lb], list(res.backends.values()), ProxySettings(iap_key="k"))
    # Prefix /api matches /api and /api/... but not /apix (whole path elements)
    assert "acl p2 path -m str /api\n    acl p2 path -m beg /api/\n    use_backend be_default_b_80 if h2 p2" in cfg
    assert "acl p0 path -m str /api/login\n    use_backend be_default_d_80 if h0 p0" in cfg
    assert "default_backend be_default_a_80" in cfg


def test_implementation_specific_uses_gce_wildcards():
    res = resolver([service("a"), service("b")])
    paths = [("/static/*", "ImplementationSpecific", "a"), ("/exact", "ImplementationSpecific", "b")]
    lb = build_load_balancer(v1(paths), "203.0.113.254", res)
    assert [(r.match, r.path) for r in lb.routes] == [("exact", "/exact"), ("prefix", "/static")]


def test_unknown_host_goes_to_the_404_default_backend():
    res = resolver([service("frontend"), service("users", 8080)])
    lb = build_load_balancer(SEED, "203.0.113.254", res)
    cfg = render([lb], list(res.backends.values()), ProxySettings(iap_key="k"))
    assert "default_backend be_default_404" in cfg
    assert 'http-request return status 404 content-type text/plain string "default backend - 404"' in cfg
    assert "bind 203.0.113.254:80" in cfg and ":443" not in cfg


def test_backend_errors_are_collected_and_other_rules_kept():
    res = resolver([service("frontend", typ="ClusterIP")])
    lb = build_load_balancer(SEED, "203.0.113.254", res)
    assert lb.routes == []
    assert lb.errors == [
        "Service default/frontend is of type ClusterIP: an Ingress backend must be NodePort or LoadBalancer, "
        "or use container-native load balancing (cloud.google.com/neg)",
        "backend Service default/users does not exist"]


def test_neg_backend_sends_to_ready_pods():
    neg = service("frontend", typ="ClusterIP", annotations={"cloud.google.com/neg": '{"ingress": true}'})
    slices = [{"metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": "frontend"}},
               "ports": [{"name": "http", "port": 8080}],
               "endpoints": [{"addresses": ["10.4.0.5"], "conditions": {"ready": True}, "targetRef": {"name": "web-1"}},
                             {"addresses": ["10.4.1.7"], "conditions": {"ready": False},
                              "targetRef": {"name": "web-2"}}]}]
    res = resolver([neg], slices)
    lb = build_load_balancer(v1beta1([("demo.example.com", "frontend", 80)]), "203.0.113.254", res)
    be = res.backends["be_default_frontend_80"]
    assert lb.errors == [] and be.neg and [(s.name, s.ip, s.port) for s in be.servers] == [("web-1", "10.4.0.5", 8080)]
    cfg = render([lb], [be], ProxySettings(iap_key="k"))
    assert "server web-1 10.4.0.5:8080 check" in cfg and "30080" not in cfg


POLICY = {"metadata": {"name": "armor"}, "spec": {"rules": [
    {"priority": 2000, "action": "deny-404", "match": {"srcIpRanges": ["0.0.0.0/0"]}},
    {"priority": 100, "action": "allow", "match": {"srcIpRanges": ["198.51.100.2/32"]}},
    {"priority": 50, "action": "deny-502", "preview": True, "match": {"srcIpRanges": ["198.51.100.0/24"]}}]}}


def test_armor_rules_by_priority_preview_only_logs():
    lines = armor_rules(parse_policy(POLICY))
    sets = [ln for ln in lines if "set-var(txn.armor_rule)" in ln or "set-var(txn.armor_preview)" in ln]
    assert [ln.split("str(")[1].split(")")[0] for ln in sets] == ["50", "100", "2000", "default"]
    assert "if armor_50" in sets[0] and "txn.armor_preview" in sets[0]     # preview: a variable, no deny
    assert not any("http-request deny" in ln and "armor_50" in ln for ln in lines)
    assert "    http-request deny deny_status 404 if { var(txn.armor_action) -m str deny-404 }" in lines


def test_backend_config_attaches_policy_and_iap_members():
    bc = {"metadata": {"name": "guard", "namespace": "default",
                       "annotations": {"kubemu.io/iap-members": "user:alice@example.com, bob@example.com"}},
          "spec": {"securityPolicy": {"name": "armor"}, "iap": {"enabled": True},
                   "healthCheck": {"requestPath": "/healthz"}}}
    svc = service("frontend", annotations={"cloud.google.com/backend-config": '{"ports": {"http": "guard"}}'})
    res = resolver([svc], bcs=[bc], policies=[POLICY])
    lb = build_load_balancer(v1beta1([("demo.example.com", "frontend", 80)]), "203.0.113.254", res)
    be = res.backends["be_default_frontend_80"]
    assert lb.errors == [] and be.iap_members == ("alice@example.com", "bob@example.com")
    cfg = render([lb], [be], ProxySettings(iap_key="s3cret"))
    assert "option httpchk GET /healthz" in cfg
    assert cfg.index("txn.armor_policy") < cfg.index("http_auth_bearer")          # armor before IAP
    assert 'jwt_verify(txn.jwt_alg,"s3cret")' in cfg
    assert "!{ var(txn.iap_email) -m str alice@example.com bob@example.com }" in cfg
    assert "http-request set-header X-Goog-Authenticated-User-Email accounts.google.com:%[var(txn.iap_email)]" in cfg
    assert "http-request del-header X-Goog-Authenticated-User-Email" in cfg      # clients cannot forge it


def test_missing_backend_config_and_policy_are_errors():
    svc = service("frontend", annotations={"cloud.google.com/backend-config": '{"default": "nope"}'})
    lb = build_load_balancer(v1beta1([("d.example.com", "frontend", 80)]), "1.2.3.4", resolver([svc]))
    assert lb.errors == ["BackendConfig default/nope of Service default/frontend does not exist"]
    bc = {"metadata": {"name": "nope", "namespace": "default"}, "spec": {"securityPolicy": {"name": "gone"}}}
    lb = build_load_balancer(v1beta1([("d.example.com", "frontend", 80)]), "1.2.3.4", resolver([svc], bcs=[bc]))
    assert lb.errors == ["security policy 'gone' of BackendConfig default/nope does not exist"]


def test_tls_secret_becomes_a_443_bind():
    sec = {"metadata": {"name": "t", "namespace": "default"}, "stringData": {"tls.crt": "CRT", "tls.key": "KEY"}}
    ing = v1([("/", "Prefix", "a")], tls=[{"secretName": "t"}])
    ing["metadata"]["annotations"] = {"kubernetes.io/ingress.allow-http": "false"}
    lb = build_load_balancer(ing, "203.0.113.254", resolver([service("a")], secrets=[sec]))
    assert lb.certs == [("default_t.pem", "CRT\nKEY\n")] and not lb.http
    cfg = render([lb], [], ProxySettings(iap_key="k"))
    assert "bind 203.0.113.254:443 ssl crt certs/default_t.pem" in cfg and ":80\n" not in cfg


def test_ingress_ips_come_from_the_top_and_survive_restarts():
    ips = IngressIps("203.0.113.0/24")
    assert ips.sync(["default/a", "default/b"], {"203.0.113.254"}, {}) == {
        "default/a": "203.0.113.253", "default/b": "203.0.113.252"}
    fresh = IngressIps("203.0.113.0/24")   # a restarted controller keeps what status says
    assert fresh.sync(["default/b"], set(), {"default/b": "203.0.113.252"}) == {"default/b": "203.0.113.252"}
    assert ips.sync(["default/b"], set(), {}) == {"default/b": "203.0.113.252"}


def test_core_plans_status_firewall_and_addresses():
    core = IngressCore("203.0.113.0/24", "demo", ProxySettings(iap_key="k"))
    objs = {"Ingress": [SEED], "Service": [service("frontend"), service("users", 8080, typ="ClusterIP")]}
    plan = core.sync(objs, NODES, set())
    assert plan.addresses == ["203.0.113.254"]
    [(ns, name, status)] = plan.patches
    assert (ns, name, status["loadBalancer"]) == ("default", "demo", {"ingress": [{"ip": "203.0.113.254"}]})
    assert "default/users is of type ClusterIP" in status["errors"][0]
    [fw] = plan.firewall
    assert fw["name"].startswith("k8s-fw-l7--") and fw["source_ranges"] == ["35.191.0.0/16", "130.211.0.0/22"]
    assert fw["protocols"] == [{"protocol": "tcp", "ports": ["30000-32767"]}]
    assert plan.uses == {"default/demo": ["be_default_frontend_80"]}
    SEED_DONE = {**SEED, "status": status}
    assert core.sync({**objs, "Ingress": [SEED_DONE]}, NODES, set()).patches == []   # nothing to write again


def test_sync_routes_addresses_to_the_front_end_and_pushes_once():
    pushed, patched = [], []
    core = IngressCore("203.0.113.0/24", "demo", ProxySettings(iap_key="k"))
    objs = {"Ingress": [SEED]}
    sync = IngressSync(core, lambda k: objs.get(k, []), lambda *a: pushed.append(a),
                       lambda *a: patched.append(a), "gcp-prober")
    sync.plan([], [service("frontend"), service("users", 8080)], set())
    hosts = sync.vpc_hosts([CloudHost(name="gcp-prober", role="host", ip="35.191.0.2", gateway="35.191.0.1",
                                      fabric_port="p5"),
                            CloudHost(name="inet-1", role="host", ip="198.51.100.2", gateway="198.51.100.1",
                                      fabric_port="p4")])
    assert hosts[0].routes == ["203.0.113.254/32"] and hosts[1].routes == []
    assert sync.apply_proxy() and sync.apply_proxy() and len(pushed) == 1
    assert sync.write_status(True) and len(patched) == 1
    assert sync.view()["ingresses"]["default/demo"]["applied_rv"] == "7"


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy (./scripts/setup.sh)")
def test_rendered_config_is_valid_for_haproxy(tmp_path):
    bc = {"metadata": {"name": "g", "namespace": "default"}, "spec": {"securityPolicy": {"name": "armor"},
                                                                      "iap": {"enabled": True}}}
    svc = service("frontend", annotations={"cloud.google.com/backend-config": '{"default": "g"}'})
    core = IngressCore("203.0.113.0/24", "demo", ProxySettings(iap_key="k"))
    plan = core.sync({"Ingress": [SEED], "Service": [svc, service("users", 8080)], "BackendConfig": [bc],
                      "SecurityPolicy": [POLICY]}, NODES, set())
    (tmp_path / "haproxy.cfg").write_text(plan.config)
    res = subprocess.run(["haproxy", "-c", "-C", str(tmp_path), "-f", str(tmp_path / "haproxy.cfg")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


LOG = [
    "198.51.100.3:39784 [27/Nov/2026:11:58:58.793] fe_default_demo be_default_users_8080/<NOSRV> 0/-1/-1/-1/0 403 192 "
    "PR-- lb=default/demo host=demo-backend.example.com path=/hostname policy=no-inet-2 rule=1000 action=deny-403 "
    "preview_rule=- preview_action=- iap=- user=-",
    "198.51.100.2:58492 [27/Nov/2026:11:58:59.755] fe_default_demo be_default_users_8080/default-pool-a-1 "
    "0/0/1/1/2 200 266 ---- lb=default/demo host=demo-backend.example.com path=/hostname policy=no-inet-2 rule=default action=allow "
    "preview_rule=50 preview_action=deny-502 iap=allowed user=alice@example.com",
    "[NOTICE]   (9286) : Loading success.",
]


def test_access_log_counts_decisions_per_load_balancer():
    from emulator.cloud.access_log import parse_line, summarize
    rec = parse_line(LOG[0])
    assert (rec["client"], rec["backend"], rec["server"], rec["status"], rec["rule"], rec["iap"]) == (
        "198.51.100.3", "be_default_users_8080", "<NOSRV>", 403, "1000", None)
    assert summarize(LOG) == {"default/demo": {
        "requests": 2, "status": {"403": 1, "200": 1},
        "armor": {"no-inet-2 rule 1000: deny-403": 1, "no-inet-2 rule default: allow": 1},
        "preview": {"no-inet-2 rule 50: deny-502": 1}, "iap": {"allowed": 1}}}


def test_report_section_lists_each_ingress():
    from emulator.cloud.access_log import summarize
    from emulator.report.ingress_md import section
    from tests.run_results import results_from
    assert section(results_from({})) == []
    lines = section(results_from({"ingresses": {"default/demo": {
        "ip": "203.0.113.254", "errors": [], "log": summarize(LOG)["default/demo"],
        "backends": {"be_default_users_8080": {"service": "default/users:8080", "neg": False,
                                               "servers": ["a", "b"]}}}}}))
    row = next(ln for ln in lines if ln.startswith("| default/demo"))
    assert "203.0.113.254 | default/users:8080 (NodePort, 2 servers) | 2 |" in row
    assert "no-inet-2 rule 1000: deny-403 1" in row and "| allowed 1 | - |" in row
