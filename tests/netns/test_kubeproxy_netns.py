"""kube-proxy rules applied for real in a throwaway namespace (never the root one).

Proves that the payloads restore on the real iptables backends, that repeated full
syncs are idempotent (iptables-save identical, hooks not duplicated), that a partial
sync touches only the changed Service, that a flushed table is detected by the canary
and fully resynced, and that the kernel then DNATs or refuses real connections.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import subprocess
import threading
from typing import Iterator

import pytest

from emulator.kubeproxy import names
from emulator.kubeproxy.proxier import Proxier
from emulator.kernel.iptables import IptablesRunner
from emulator.naming import new_run_id
from emulator.kernel.netns import entered, ns_exec_prefix, socket_in

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

NODE, NODE_IP, CIDR, POD = "node-a", "10.128.0.2", "10.4.0.0/14", "10.4.1.5"
BACKENDS = [b for b in ("legacy", "nft") if shutil.which(f"iptables-{b}-restore")]


def sh(*argv: str) -> str:
    res = subprocess.run(argv, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(argv)}: {res.stderr}"
    return res.stdout


@pytest.fixture
def netns() -> Iterator[str]:
    """A node-like namespace `kubemu<id>-kptest`, deleted whatever happens."""
    name = f"kubemu{new_run_id()}-kptest"
    sh("ip", "netns", "add", name)
    try:
        ns = ns_exec_prefix(name)
        sh(*ns, "ip", "link", "set", "lo", "up")
        # Both ends of each veth stay inside the namespace: eth0 is the node's NIC,
        # pod0 carries a local pod's address.
        for dev, peer, addr in (("eth0", "eth0-peer", f"{NODE_IP}/24"), ("pod0", "pod0-peer", f"{POD}/32")):
            sh(*ns, "ip", "link", "add", dev, "type", "veth", "peer", "name", peer)
            sh(*ns, "ip", "addr", "add", addr, "dev", dev)
            sh(*ns, "ip", "link", "set", dev, "up")
            sh(*ns, "ip", "link", "set", peer, "up")
        sh(*ns, "ip", "route", "add", "default", "via", "10.128.0.1")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def service(name: str, ip: str, port: int = 80, **spec: object) -> dict:
    return {"kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "selector": {"app": name}, "type": "ClusterIP",
                     "ports": [{"name": "http", "port": port, "targetPort": 8080,
                                "nodePort": spec.pop("nodePort", None)}], **spec}}


def slice_(svc: str, ips: list[str]) -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{svc}-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": NODE} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def saved(runner: IptablesRunner) -> str:
    """iptables-save of filter, nat and mangle without the timestamp comments."""
    text = runner.save(("filter", "nat", "mangle"))
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def connect(ns: str, ip: str, port: int) -> str:
    """'ok', 'refused' or 'timeout' for a TCP connect made inside the namespace."""
    with entered(ns):
        sock = socket.socket()
    sock.settimeout(1.0)
    try:
        sock.connect((ip, port))
        return "ok"
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except OSError as exc:
        return "refused" if exc.errno == errno.ECONNREFUSED else f"error {exc.errno}"
    finally:
        sock.close()


def serve(ns: str) -> socket.socket:
    """A listener on the pod address, accepting in a background thread."""
    listener = socket_in(ns, bind=(POD, 8080))
    listener.setblocking(True)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()
    threading.Thread(target=accept, daemon=True).start()
    return listener


@pytest.mark.parametrize("backend", BACKENDS)
def test_restore_is_idempotent_and_reads_like_a_gke_node(netns: str, backend: str) -> None:
    runner = IptablesRunner(ns_exec_prefix(netns), backend)
    assert runner.backend == backend
    proxier = Proxier(NODE, [NODE_IP], CIDR, runner)
    proxier.on_service("ADDED", service("web", "10.8.0.10", type="NodePort", nodePort=30080))
    proxier.on_endpointslice("ADDED", slice_("web", [POD]))
    proxier.on_service("ADDED", service("empty", "10.8.0.11"))
    first = proxier.sync()
    assert first.ok and first.full, first.error
    after_first = saved(runner)
    second = proxier.sync(full=True)
    assert second.ok and second.full, second.error
    assert saved(runner) == after_first                              # idempotent
    assert proxier.sync().ok                                         # a partial one too
    assert saved(runner) == after_first
    svc = names.svc_chain("default/web:http", "tcp")
    assert (f'-A KUBE-SERVICES -d 10.8.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" '
            f"-m tcp --dport 80 -j {svc}") in after_first
    assert ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last '
            'rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS') in after_first
    assert re.search(r"-A KUBE-SERVICES -d 10.8.0.11/32 -p tcp -m comment --comment "
                     r'"default/empty:http has no endpoints" -m tcp --dport 80 -j REJECT', after_first)
    assert "-j MASQUERADE --random-fully" in after_first
    assert after_first.count("-j KUBE-POSTROUTING") == 1 and after_first.count("-A PREROUTING") == 1
    assert ":KUBE-PROXY-CANARY - [0:0]" in after_first.split("*mangle")[1]


@pytest.mark.parametrize("backend", BACKENDS[:1])
def test_partial_sync_stale_chains_canary_and_real_connections(netns: str, backend: str) -> None:
    runner = IptablesRunner(ns_exec_prefix(netns), backend)
    proxier = Proxier(NODE, [NODE_IP], CIDR, runner)
    proxier.on_service("ADDED", service("web", "10.8.0.10"))
    proxier.on_endpointslice("ADDED", slice_("web", [POD]))
    proxier.on_service("ADDED", service("empty", "10.8.0.11"))
    proxier.on_service("ADDED", service("other", "10.8.0.12"))
    proxier.on_endpointslice("ADDED", slice_("other", ["10.4.1.6"]))
    assert proxier.sync().ok
    listener = serve(netns)
    try:
        assert connect(netns, "10.8.0.10", 80) == "ok"               # DNATed to the pod
        assert connect(netns, "10.8.0.11", 80) == "refused"          # REJECT: refused at once
        other_before = [l for l in saved(runner).splitlines() if "default/other" in l]

        # Partial sync: web loses its endpoint; its chains go, other's stay untouched.
        sep = names.sep_chain("default/web:http", "tcp", f"{POD}:8080")
        proxier.on_endpointslice("MODIFIED", slice_("web", []))
        result = proxier.sync()
        assert result.ok and not result.full and result.rewritten_services == 1
        assert result.deleted_chains == 2
        after = saved(runner)
        assert sep not in after and names.svc_chain("default/web:http", "tcp") not in after
        assert [l for l in after.splitlines() if "default/other" in l] == other_before
        assert connect(netns, "10.8.0.10", 80) == "refused"

        # Someone flushes everything: the canary notices, the next sync is full.
        proxier.on_endpointslice("MODIFIED", slice_("web", [POD]))
        for table in ("filter", "nat", "mangle"):
            sh(*ns_exec_prefix(netns), f"iptables-{backend}", "-t", table, "-F")
            sh(*ns_exec_prefix(netns), f"iptables-{backend}", "-t", table, "-X")
        assert not proxier.check_canary()
        result = proxier.sync()
        assert result.ok and result.full
        assert runner.chain_exists("mangle", names.KUBE_PROXY_CANARY)
        assert connect(netns, "10.8.0.10", 80) == "ok"
        assert connect(netns, "10.8.0.11", 80) == "refused"
    finally:
        listener.close()
