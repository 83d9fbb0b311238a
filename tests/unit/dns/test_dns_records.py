"""Cluster DNS records (kube-dns's schema) and pod resolv.conf/hosts, from API objects."""
import dns.message
import pytest

from emulator.control.endpointslices import desired_slices
from emulator.node.dns_records import build_zone, fnv1a32, lookup, pod_address
from emulator.node.kubedns import respond
from emulator.node.resolvconf import hosts_file, resolv_conf

pytestmark = pytest.mark.unit


def svc(name, ns="default", **spec):
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns, "uid": f"u-{name}"}, "spec": spec}


def pod(name, ip, ready=True, **spec):
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "pg", "containerPort": 5432}]}], **spec},
            "status": {"podIP": ip, "phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


HEADLESS = svc("db", clusterIP="None", selector={"app": "db"},
               ports=[{"name": "pg", "port": 5432, "targetPort": "pg", "protocol": "TCP"}])
WEB = svc("web", clusterIP="10.8.0.20", ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                                               {"name": "metrics", "port": 9090, "protocol": "UDP"}])


def zone_for(pods, service=HEADLESS):
    return build_zone([service, WEB, svc("ext", type="ExternalName", externalName="www.Example.com.")],
                      desired_slices(service, pods))


def answers(zone, name, rtype="A"):
    rcode, recs = lookup(zone, name, rtype)
    return rcode, sorted(str(v) for _, _, v in recs)


def test_clusterip_service_a_srv_ptr() -> None:
    z = zone_for([])
    assert answers(z, "web.default.svc.cluster.local.") == ("NOERROR", ["10.8.0.20"])
    assert answers(z, "WEB.Default.svc.cluster.local") == ("NOERROR", ["10.8.0.20"])   # case-insensitive
    assert lookup(z, "_http._tcp.web.default.svc.cluster.local", "SRV")[1] == [
        ("_http._tcp.web.default.svc.cluster.local", "SRV", [10, 100, 80, "web.default.svc.cluster.local"])]
    assert answers(z, "_metrics._udp.web.default.svc.cluster.local", "SRV")[1][0].startswith("[10, 100, 9090")
    assert answers(z, "20.0.8.10.in-addr.arpa", "PTR") == ("NOERROR", ["web.default.svc.cluster.local"])
    assert answers(z, "web.default.svc.cluster.local", "SRV") == ("NOERROR", [])      # NODATA


def test_headless_answers_ready_endpoints_with_hostnames_from_subdomain() -> None:
    pods = [pod("db-0", "10.4.0.5", hostname="db-0", subdomain="db"),
            pod("db-1", "10.4.1.6", ready=False, hostname="db-1", subdomain="db"),
            pod("other", "10.4.2.7", hostname="x", subdomain="not-db")]
    z = zone_for(pods)
    assert answers(z, "db.default.svc.cluster.local") == ("NOERROR", ["10.4.0.5", "10.4.2.7"])
    assert answers(z, "db-0.db.default.svc.cluster.local") == ("NOERROR", ["10.4.0.5"])
    assert answers(z, "db-1.db.default.svc.cluster.local")[0] == "NXDOMAIN"          # not ready
    hashed = f"{fnv1a32('10.4.2.7'):x}.db.default.svc.cluster.local"                 # subdomain differs
    assert answers(z, hashed) == ("NOERROR", ["10.4.2.7"])
    assert sorted(v[3] for _, _, v in lookup(z, "_pg._tcp.db.default.svc.cluster.local", "SRV")[1]) == [
        hashed, "db-0.db.default.svc.cluster.local"]
    assert all(v[1] == 50 and v[2] == 5432 for _, _, v in lookup(z, "_pg._tcp.db.default.svc.cluster.local", "SRV")[1])
    assert answers(z, "5.0.4.10.in-addr.arpa", "PTR") == ("NOERROR", ["db-0.db.default.svc.cluster.local"])
    assert answers(z, "7.2.4.10.in-addr.arpa", "PTR")[0] == "NXDOMAIN"   # no hostname: no PTR (kube-dns)


def test_one_ptr_per_ip_when_two_headless_services_select_a_pod() -> None:
    pods = [pod("db-0", "10.4.0.5", hostname="db-0", subdomain="db")]
    twin = {**HEADLESS, "metadata": {**HEADLESS["metadata"], "name": "db-all", "uid": "u-all"}}
    z = build_zone([HEADLESS, twin], desired_slices(HEADLESS, pods) + desired_slices(twin, pods))
    assert answers(z, "5.0.4.10.in-addr.arpa", "PTR") == ("NOERROR", ["db-0.db.default.svc.cluster.local"])
    assert answers(z, "db-all.default.svc.cluster.local") == ("NOERROR", ["10.4.0.5"])


def test_headless_publish_not_ready_and_no_endpoints() -> None:
    pods = [pod("db-1", "10.4.1.6", ready=False)]
    publish = {**HEADLESS, "spec": {**HEADLESS["spec"], "publishNotReadyAddresses": True}}
    assert answers(zone_for(pods, publish), "db.default.svc.cluster.local") == ("NOERROR", ["10.4.1.6"])
    assert answers(zone_for(pods), "db.default.svc.cluster.local") == ("NOERROR", [])


def test_externalname_is_a_cname_for_every_type_and_pods_names_parse() -> None:
    z = zone_for([])
    assert answers(z, "ext.default.svc.cluster.local", "A") == ("NOERROR", ["www.example.com"])
    assert lookup(z, "ext.default.svc.cluster.local", "A")[1][0][1] == "CNAME"
    assert pod_address("10-4-0-9.team.pod.cluster.local") == "10.4.0.9"
    assert pod_address("10-4-0-999.team.pod.cluster.local") is None
    assert pod_address("10-4-0-9.pod.cluster.local") is None
    assert answers(z, "10-4-0-9.team.pod.cluster.local") == ("NOERROR", ["10.4.0.9"])
    assert lookup(z, "nothing.default.svc.cluster.local", "A") == ("NXDOMAIN", [])
    assert lookup(z, "svc.cluster.local", "A") == ("NOERROR", [])        # an empty non-terminal


def test_wire_answer_from_the_kubedns_server_core() -> None:
    z = zone_for([])
    q = dns.message.make_query("_http._tcp.web.default.svc.cluster.local", "SRV")
    r = dns.message.from_wire(respond(q.to_wire(), z))
    assert r.id == q.id and [rr.to_text() for rr in r.answer] == [
        "_http._tcp.web.default.svc.cluster.local. 30 IN SRV 10 100 80 web.default.svc.cluster.local."]
    nx = dns.message.from_wire(respond(dns.message.make_query("x.default.svc.cluster.local", "A").to_wire(), z))
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert respond(b"\x00garbage", z) is None


def test_resolv_conf_by_dns_policy() -> None:
    cf = resolv_conf({}, "team", "10.8.0.10")
    assert "search team.svc.cluster.local svc.cluster.local cluster.local\n" in cf
    assert "nameserver 10.8.0.10\n" in cf and "options ndots:5\n" in cf
    assert "nameserver" not in resolv_conf({"dnsPolicy": "Default"}, "team", "10.8.0.10")
    assert "nameserver" not in resolv_conf({"hostNetwork": True}, "team", "10.8.0.10")   # ClusterFirst + hostNetwork
    assert "nameserver 10.8.0.10" in resolv_conf({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"},
                                                 "team", "10.8.0.10")
    none = resolv_conf({"dnsPolicy": "None", "dnsConfig": {
        "nameservers": ["1.1.1.1", "1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"], "searches": ["a.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}, "team", "10.8.0.10")
    assert none.splitlines()[1:] == ["search a.example", "nameserver 1.1.1.1", "nameserver 2.2.2.2",
                                     "nameserver 3.3.3.3", "options ndots:2 edns0"]
    merged = resolv_conf({"dnsConfig": {"searches": ["svc.cluster.local", "b.example"],
                                        "options": [{"name": "ndots", "value": "1"}]}}, "team", "10.8.0.10")
    assert "search team.svc.cluster.local svc.cluster.local cluster.local b.example\n" in merged
    assert "options ndots:1\n" in merged


def test_hosts_file_names_the_pod_fqdn_with_subdomain() -> None:
    assert hosts_file({}, "team", "p", "10.4.0.5") == "127.0.0.1 localhost\n10.4.0.5 p\n"
    assert hosts_file({"hostname": "db-0", "subdomain": "db"}, "team", "p", "10.4.0.5").endswith(
        "10.4.0.5 db-0.db.team.svc.cluster.local db-0\n")
