"""The kube-dns pod's servers (dnsmasq in front of kubedns) in a real namespace, asked with
`dig` and `getent` from a pod namespace whose resolv.conf the kubelet's code wrote."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from emulator.naming import new_run_id
from fabric_helpers import join_by_veth
from emulator.node import resolvconf, runtime
from emulator.node.dns_records import build_zone

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dig") is None or shutil.which("dnsmasq") is None,
                                 reason="needs root, dig (bind9-dnsutils) and dnsmasq")]
REPO = Path(__file__).resolve().parents[2]
DNS_IP, CLIENT_IP = "10.78.0.10", "10.78.0.2"


def services():
    return [
        {"metadata": {"name": "web", "namespace": "default"},
         "spec": {"clusterIP": "10.8.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
        {"metadata": {"name": "db", "namespace": "default"},
         "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}},
        {"metadata": {"name": "ext", "namespace": "default"},
         "spec": {"type": "ExternalName", "externalName": "www.example.com"}},
    ]


def db_slice(ready_second: bool):
    return {"metadata": {"name": "db-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "endpoints": [{"addresses": ["10.4.0.5"], "conditions": {"ready": True}, "hostname": "db-0"},
                          {"addresses": ["10.4.1.6"], "conditions": {"ready": ready_second}, "hostname": "db-1"}],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}


def write_zone(path: Path, slices) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(build_zone(services(), slices)))
    os.replace(tmp, path)


@pytest.fixture
def dns_pod(tmp_path):
    """(client netns, zone file): a kube-dns namespace serving the zone file, a client namespace."""
    prefix = f"kubemu{new_run_id()}"
    server, client = f"{prefix}-dns-srv", f"{prefix}-dns-cli"
    etc = Path("/etc/netns") / client
    procs = runtime.PodProcesses()
    zone = tmp_path / "zone.json"
    write_zone(zone, [db_slice(True)])
    try:
        join_by_veth(prefix, (server, DNS_IP), (client, CLIENT_IP))
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(resolvconf.resolv_conf({}, "default", DNS_IP))
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        log = tmp_path / "kubedns.log"
        procs.procs.append(runtime.start_process(server, runtime.kubedns_argv(str(zone)), str(log)))
        assert runtime.wait_for_line(str(log), "kubedns: serving"), log.read_text()
        procs.procs.append(runtime.start_process(
            server, runtime.dnsmasq_argv(DNS_IP, str(tmp_path / "dnsmasq.pid")), str(tmp_path / "dnsmasq.log")))
        yield client, zone
    finally:
        procs.stop()
        shutil.rmtree(etc, ignore_errors=True)
        for ns in (client, server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def dig(ns: str, *args: str) -> list[str]:
    """`dig +short` answers from the namespace (its resolv.conf names the server)."""
    deadline = time.monotonic() + 20
    while True:   # dnsmasq may still be starting
        p = subprocess.run(["ip", "netns", "exec", ns, "dig", "+short", "+tries=1", "+time=2", *args],
                           capture_output=True, text=True, timeout=30)
        if p.returncode == 0 or time.monotonic() > deadline:
            assert p.returncode == 0, p.stdout + p.stderr
            return sorted(p.stdout.split("\n")[:-1])
        time.sleep(0.2)


def test_records_as_kube_dns_serves_them(dns_pod):
    ns, _ = dns_pod
    assert dig(ns, "web.default.svc.cluster.local") == ["10.8.0.20"]
    assert dig(ns, "+search", "web") == ["10.8.0.20"]                  # the search path
    assert dig(ns, "SRV", "_http._tcp.web.default.svc.cluster.local") == ["10 100 80 web.default.svc.cluster.local."]
    assert dig(ns, "db.default.svc.cluster.local") == ["10.4.0.5", "10.4.1.6"]
    assert dig(ns, "db-1.db.default.svc.cluster.local") == ["10.4.1.6"]
    assert dig(ns, "SRV", "_pg._tcp.db.default.svc.cluster.local") == [
        "10 50 5432 db-0.db.default.svc.cluster.local.", "10 50 5432 db-1.db.default.svc.cluster.local."]
    assert dig(ns, "CNAME", "ext.default.svc.cluster.local") == ["www.example.com."]
    assert dig(ns, "-x", "10.8.0.20") == ["web.default.svc.cluster.local."]
    assert dig(ns, "-x", "10.4.0.5") == ["db-0.db.default.svc.cluster.local."]
    assert dig(ns, "10-4-2-9.default.pod.cluster.local") == ["10.4.2.9"]
    assert dig(ns, "TXT", "dns-version.cluster.local") == ['"1.1.0"']
    nx = subprocess.run(["ip", "netns", "exec", ns, "dig", "+tries=1", "nope.default.svc.cluster.local"],
                        capture_output=True, text=True, timeout=30)
    assert "status: NXDOMAIN" in nx.stdout
    # The system resolver (glibc: resolv.conf search path and ndots:5) finds a short name.
    got = subprocess.run(["ip", "netns", "exec", ns, "getent", "hosts", "web"], capture_output=True, text=True)
    assert got.stdout.split() == ["10.8.0.20", "web.default.svc.cluster.local"]


def test_an_unready_endpoint_leaves_the_headless_answer(dns_pod):
    ns, zone = dns_pod
    assert dig(ns, "db.default.svc.cluster.local") == ["10.4.0.5", "10.4.1.6"]
    write_zone(zone, [db_slice(False)])
    deadline = time.monotonic() + 10
    while dig(ns, "db.default.svc.cluster.local") != ["10.4.0.5"]:
        assert time.monotonic() < deadline, "the unready endpoint is still answered"
        time.sleep(0.1)
    assert dig(ns, "SRV", "_pg._tcp.db.default.svc.cluster.local") == ["10 100 5432 db-0.db.default.svc.cluster.local."]
    assert dig(ns, "db-1.db.default.svc.cluster.local") == []
