"""Load balancers and VPC firewall rules for real: a private OVS, the os-ken controller, namespaces.

Two node namespaces hold the load balancers' IPs on their loopback (on GKE, kube-proxy's
rules accept the passthrough traffic; here the kernel does) and answer TCP with their
name. Proves with real connections: an internet host reaches one of the two nodes through
an external LB with the destination IP unchanged, many connections spread over both, one
connection stays on its node (also when that node leaves the backend list); an internal
LB answers a VM and not the internet host; an egress deny between nodes blocks a connect
while other traffic passes; replies of an allowed connection pass a deny; per-backend
counters; a controller restart reinstalls groups; teardown leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import pytest

from emulator.kernel.ovs import OvsInstance
from emulator.kernel.ovs_orphans import find_private_daemons
from emulator.fabric.sdn import SdnController
from emulator.naming import RunNames, new_run_id
from fabric_helpers import free_port, leftovers, sh
from emulator.kernel.netns import entered, socket_in

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None and not os.path.exists("/usr/sbin/ovs-vswitchd"),
                       reason="needs Open vSwitch (Debian openvswitch-switch)"),
]

ROUTER_MAC = "42:01:0a:80:00:01"
VPC_GW, INET_GW = "10.128.0.1", "203.0.113.1"
DPID = 0x6B75000000000002
NODE_TAG = "gke-demo-node"
VPC_RANGES = ["10.128.0.0/20", "10.4.0.0/14"]
EXT_IP, INT_IP = "198.51.100.10", "10.128.0.100"
LB_PORT = 8080

# name, ip, mac, gateway, pod range, kind
HOSTS = [
    ("node-a", "10.128.0.2", "02:00:0a:80:00:02", VPC_GW, "10.4.0.0/24", "node"),
    ("node-b", "10.128.0.3", "02:00:0a:80:00:03", VPC_GW, "10.4.1.0/24", "node"),
    ("vm-1", "10.128.0.10", "02:00:0a:80:00:0a", VPC_GW, None, "vm"),
    ("inet-1", "203.0.113.10", "02:00:cb:00:71:0a", INET_GW, None, "internet"),
]
IP = {h[0]: h[1] for h in HOSTS}


def rule(name: str, direction: str = "ingress", action: str = "allow", priority: int = 1000,
         protocols: list[dict] | None = None, **fields) -> dict:
    return {"name": name, "direction": direction, "action": action, "priority": priority,
            "protocols": protocols or [{"protocol": "all"}], **fields}


def base_state() -> dict:
    """Hosts, an external and an internal LB on both nodes, and the cloud controller's rules."""
    return {
        "router_mac": ROUTER_MAC, "gateways": [VPC_GW, INET_GW], "vpc_ranges": list(VPC_RANGES),
        "endpoints": [],  # filled by Fabric.state with port names
        "load_balancers": [
            {"name": "default/web", "ip": EXT_IP, "protocol": "TCP", "ports": [LB_PORT],
             "scheme": "external", "backends": ["node-a", "node-b"]},
            {"name": "default/internal", "ip": INT_IP, "protocol": "TCP", "ports": [LB_PORT],
             "scheme": "internal", "backends": ["node-a", "node-b"]},
        ],
        "firewall": [
            rule("allow-vpc", source_ranges=VPC_RANGES),
            rule("k8s-fw-web", source_ranges=["0.0.0.0/0"], destination_ranges=[EXT_IP],
                 target_tags=[NODE_TAG], protocols=[{"protocol": "tcp", "ports": [str(LB_PORT)]}]),
        ],
    }


class Servers:
    """TCP servers in namespaces: greet with the host's name, then answer each line with it."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.socks: list[socket.socket] = []
        self.accepted: list[tuple[str, str, tuple[str, int]]] = []  # (host, local ip, peer)
        self.lock = threading.Lock()

    def serve(self, ns: str, host: str, port: int) -> None:
        srv = socket_in(ns, bind=("0.0.0.0", port))
        srv.settimeout(0.2)
        self.socks.append(srv)
        threading.Thread(target=self._accept, args=(srv, host), daemon=True).start()

    def _accept(self, srv: socket.socket, host: str) -> None:
        while not self.stop.is_set():
            try:
                conn, peer = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted.append((host, conn.getsockname()[0], peer))
                self.socks.append(conn)
            threading.Thread(target=self._talk, args=(conn, host), daemon=True).start()

    def _talk(self, conn: socket.socket, host: str) -> None:
        conn.settimeout(30)
        try:
            conn.sendall(f"{host}\n".encode())
            while not self.stop.is_set() and conn.recv(4096):
                conn.sendall(f"{host}\n".encode())
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        for s in list(self.socks):
            with contextlib.suppress(OSError):
                s.close()


def connect(ns: str, ip: str, port: int, timeout: float = 3.0) -> socket.socket:
    with entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
    except BaseException:
        sock.close()
        raise
    return sock


def ask(ns: str, ip: str, port: int = LB_PORT, timeout: float = 3.0) -> tuple[str, int]:
    """Connect, read the greeting; returns (answering host, client port)."""
    with connect(ns, ip, port, timeout) as sock:
        name = sock.makefile("rb").readline().decode().strip()
        return name, sock.getsockname()[1]


def blocked(ns: str, ip: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connect times out (SYN dropped), False when it connects."""
    try:
        connect(ns, ip, port, timeout).close()
        return False
    except socket.timeout:
        return True


@dataclass
class Fabric:
    names: RunNames
    run_dir: str
    ovs: OvsInstance
    port: int
    controller: SdnController | None = None
    netns: dict[str, str] = field(default_factory=dict)
    servers: Servers = field(default_factory=Servers)

    def state(self, **changes) -> dict:
        data = base_state()
        data["endpoints"] = [
            {"name": n, "ip": ip, "mac": mac, "port_name": self.names.fabric_port(i), "dpid": DPID,
             "gateway": gw, "routes": [r] if r else [], "kind": kind,
             "tags": [NODE_TAG] if kind == "node" else []}
            for i, (n, ip, mac, gw, r, kind) in enumerate(HOSTS)]
        data.update(copy.deepcopy(changes))
        return data

    def apply(self, **changes) -> None:
        assert self.controller is not None
        self.controller.set_state(self.state(**changes))
        self.ovs.wait_revalidated()

    def lb_counters(self, lb: str) -> dict[str, int]:
        """Packets per backend: the `lb NAME -> BACKEND` flows (recorded connections)."""
        assert self.controller is not None
        out: dict[str, int] = {}
        for s in self.controller.flow_stats(DPID):
            if s["note"].startswith(f"lb {lb} -> "):
                backend = s["note"].rsplit(" ", 1)[1]
                out[backend] = out.get(backend, 0) + s["packets"]
        return out


def add_host(fab: Fabric, i: int) -> None:
    """Namespace with eth0 (/32, onlink route to its gateway); nodes hold the LB IPs on lo."""
    name, ip, mac, gw, pods, kind = HOSTS[i]
    ns, port = fab.names.host_netns(name), fab.names.fabric_port(i)
    sh("ip", "netns", "add", ns)
    fab.netns[name] = ns
    sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
    for cmd in (["link", "set", "lo", "up"], ["link", "set", "eth0", "address", mac],
                ["addr", "add", f"{ip}/32", "dev", "eth0"], ["link", "set", "eth0", "up"],
                ["route", "add", gw, "dev", "eth0", "scope", "link"],
                ["route", "add", "default", "via", gw, "dev", "eth0", "onlink"]):
        sh("ip", "-n", ns, *cmd)
    if pods:
        sh("ip", "-n", ns, "addr", "add", f"{pods.split('/')[0][:-1]}1/32", "dev", "lo")
    if kind == "node":
        for vip in (EXT_IP, INT_IP):
            sh("ip", "-n", ns, "addr", "add", f"{vip}/32", "dev", "lo")
    fab.ovs.add_port(fab.names.bridge(0), port, peer_netns=ns if kind != "internet" else None)


@contextlib.contextmanager
def fabric() -> Iterator[Fabric]:
    """Build the fabric and the servers; ALWAYS tears everything down, whatever failed."""
    names = RunNames(new_run_id())
    run_dir = tempfile.mkdtemp(prefix=f"{names.prefix}-")
    fab = Fabric(names, run_dir, OvsInstance(os.path.join(run_dir, "ovs"), prefer_system=False), free_port())
    try:
        fab.controller = SdnController(fab.port)
        fab.controller.set_state(fab.state())
        fab.ovs.start()
        fab.ovs.add_bridge(names.bridge(0), DPID, fab.port)
        for i in range(len(HOSTS)):
            add_host(fab, i)
        fab.controller.wait_connected([DPID], timeout=20)
        for name in ("node-a", "node-b"):
            for port in (LB_PORT, 9000, 9001):
                fab.servers.serve(fab.netns[name], name, port)
        fab.servers.serve(fab.netns["vm-1"], "vm-1", 9100)
        yield fab
    finally:
        fab.servers.close()
        if fab.controller is not None:
            fab.controller.stop()
        for i in range(len(fab.netns)):
            subprocess.run(["ip", "link", "del", names.fabric_port(i)], capture_output=True)
        for ns in fab.netns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        fab.ovs.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


# First in the file: os-ken is one per process, so this runs before the module fixture's.
def test_teardown_leaves_nothing() -> None:
    with pytest.raises(RuntimeError):
        with fabric() as f:
            prefix = f.names.prefix
            assert ask(f.netns["inet-1"], EXT_IP)[0] in ("node-a", "node-b")
            assert leftovers(prefix)
            raise RuntimeError("fail mid-test: teardown must still run")
    assert leftovers(prefix) == []
    assert find_private_daemons(prefix) == []


@pytest.fixture(scope="module")
def fab() -> Iterator[Fabric]:
    with fabric() as f:
        yield f


def test_external_lb_spreads_connections_and_keeps_the_destination(fab: Fabric) -> None:
    before = len(fab.servers.accepted)
    answers = [ask(fab.netns["inet-1"], EXT_IP) for _ in range(40)]
    hosts = [a[0] for a in answers]
    assert set(hosts) == {"node-a", "node-b"}, hosts
    accepted = fab.servers.accepted[before:]
    assert len(accepted) == 40
    # passthrough: the node saw the LB IP as destination and the internet host as source
    assert {(local, peer[0]) for _, local, peer in accepted} == {(EXT_IP, IP["inet-1"])}
    by_port = {peer[1]: host for host, _, peer in accepted}
    assert all(by_port[port] == host for host, port in answers)
    print("spread:", {h: hosts.count(h) for h in set(hosts)})


def test_one_connection_stays_on_one_node_even_when_it_leaves_the_backends(fab: Fabric) -> None:
    sock = connect(fab.netns["inet-1"], EXT_IP, LB_PORT)
    with sock:
        lines = sock.makefile("rb")
        first = lines.readline().decode().strip()
        for _ in range(50):
            sock.sendall(b"again\n")
            assert lines.readline().decode().strip() == first
        other = "node-b" if first == "node-a" else "node-a"
        lbs = base_state()["load_balancers"]
        lbs[0]["backends"] = [other]
        try:
            fab.apply(load_balancers=lbs)  # `first` is unhealthy now: new connections avoid it
            assert {ask(fab.netns["inet-1"], EXT_IP)[0] for _ in range(10)} == {other}
            for _ in range(20):  # ... but this TCP connection stays (GCP's default persistence)
                sock.sendall(b"again\n")
                assert lines.readline().decode().strip() == first
        finally:
            fab.apply()
    assert {ask(fab.netns["inet-1"], EXT_IP)[0] for _ in range(30)} == {"node-a", "node-b"}


def test_counters_per_backend(fab: Fabric) -> None:
    assert fab.controller is not None
    for _ in range(20):
        ask(fab.netns["inet-1"], EXT_IP)
    deadline = time.monotonic() + 5
    while True:  # OVS pushes datapath counters to flows and groups about once a second
        groups = {g["name"]: g for g in fab.controller.group_stats(DPID)}
        counters = fab.lb_counters("default/web")
        web = groups.get("default/web")
        ok = web and all(b["packets"] > 0 for b in web["buckets"]) and all(
            counters.get(n, 0) > 0 for n in ("node-a", "node-b"))
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(groups) == {"default/web", "default/internal"}
    assert [b["note"] for b in groups["default/web"]["buckets"]] == ["node-a", "node-b"]
    assert all(b["packets"] > 0 for b in groups["default/web"]["buckets"]), groups
    assert counters["node-a"] > 0 and counters["node-b"] > 0, counters
    print("group buckets:", [(b["note"], b["packets"]) for b in groups["default/web"]["buckets"]],
          "flow counters:", counters)


def test_internal_lb_answers_vpc_hosts_only(fab: Fabric) -> None:
    assert blocked(fab.netns["inet-1"], INT_IP, LB_PORT)
    hosts = {ask(fab.netns["vm-1"], INT_IP)[0] for _ in range(20)}
    assert hosts <= {"node-a", "node-b"} and hosts
    assert ask(fab.netns["inet-1"], EXT_IP)[0] in ("node-a", "node-b")  # the external one still does


def test_egress_deny_between_nodes_blocks_a_connect_and_nothing_else(fab: Fabric) -> None:
    deny = rule("deny-node-egress-9000", "egress", "deny", 900, destination_ranges=["10.128.0.0/20"],
                target_tags=[NODE_TAG], protocols=[{"protocol": "tcp", "ports": ["9000"]}])
    try:
        fab.apply(firewall=base_state()["firewall"] + [deny])
        assert blocked(fab.netns["node-a"], IP["node-b"], 9000)
        assert ask(fab.netns["node-a"], IP["node-b"], 9001)[0] == "node-b"      # another port
        assert ask(fab.netns["vm-1"], IP["node-b"], 9000)[0] == "node-b"        # an untagged sender
        assert ask(fab.netns["node-a"], "10.4.1.1", 9001)[0] == "node-b"        # pod range, other port
    finally:
        fab.apply()
    assert ask(fab.netns["node-a"], IP["node-b"], 9000)[0] == "node-b"


def test_replies_of_an_allowed_connection_pass_a_deny(fab: Fabric) -> None:
    deny = rule("deny-from-vm", action="deny", priority=900, source_ranges=[IP["vm-1"]],
                target_tags=[NODE_TAG])
    try:
        fab.apply(firewall=base_state()["firewall"] + [deny])
        assert blocked(fab.netns["vm-1"], IP["node-a"], 9000)   # new connections from vm-1: denied
        with connect(fab.netns["node-a"], IP["vm-1"], 9100) as sock:  # node-a -> vm-1: allowed ...
            lines = sock.makefile("rb")
            assert lines.readline().decode().strip() == "vm-1"   # ... and vm-1's replies come in
            sock.sendall(os.urandom(1 << 20))                    # a megabyte, acknowledged all along
            assert lines.readline().decode().strip() == "vm-1"
    finally:
        fab.apply()


def test_controller_restart_reinstalls_nothing_twice(fab: Fabric) -> None:
    assert fab.controller is not None
    fab.controller.stop()
    fab.controller = None
    assert ask(fab.netns["inet-1"], EXT_IP)[0] in ("node-a", "node-b")  # fail-secure: all stays
    fab.controller = SdnController(fab.port)
    fab.controller.set_state(fab.state())
    fab.controller.wait_connected([DPID], timeout=20)
    groups = fab.controller.group_stats(DPID)
    assert sorted(g["name"] for g in groups) == ["default/internal", "default/web"]
    assert all(s["note"] for s in fab.controller.flow_stats(DPID))  # every installed flow is desired
    assert {ask(fab.netns["inet-1"], EXT_IP)[0] for _ in range(30)} == {"node-a", "node-b"}


def _tcp_out_rsts(ns: str) -> int:
    """RSTs the namespace's TCP stack has sent (`Tcp: OutRsts` of /proc/net/snmp)."""
    names, values = [line.split()[1:] for line in sh("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").splitlines()
                     if line.startswith("Tcp:")]
    return int(values[names.index("OutRsts")])


def test_a_syn_meeting_a_time_wait_socket_connects(fab: Fabric) -> None:
    """A SNAT port reused while the server still holds its TIME_WAIT socket (kube-proxy's
    MASQUERADE after its conntrack entry went): the server answers the SYN with the old
    connection's ACK, the client's RST must cross the firewall's connection tracking to
    clear the TIME_WAIT socket, and the retried SYN connects (dropped as `+inv`, every
    such connect timed out)."""
    vm, node, port, snat = fab.netns["vm-1"], fab.netns["node-b"], 9002, 40000
    srv = socket_in(node, bind=("0.0.0.0", port))
    srv.settimeout(0.2)
    fab.servers.socks.append(srv)

    def close_first() -> None:  # the server closes first: its side keeps the TIME_WAIT
        while not fab.servers.stop.is_set():
            with contextlib.suppress(socket.timeout, OSError):
                srv.accept()[0].close()
    threading.Thread(target=close_first, daemon=True).start()
    sh("ip", "netns", "exec", vm, "iptables", "-t", "nat", "-A", "POSTROUTING", "-p", "tcp", "-d", IP["node-b"],
       "--dport", str(port), "-j", "SNAT", "--to-source", f"{IP['vm-1']}:{snat}")
    rsts_before, met_time_wait = _tcp_out_rsts(vm), 0
    try:
        for attempt in range(40):  # each SYN has a fresh ISN and timestamp: about half meet the TIME_WAIT
            with connect(vm, IP["node-b"], port, timeout=5.0) as sock:
                assert sock.recv(1) == b""
            subprocess.run(["ip", "netns", "exec", vm, "conntrack", "-D", "-p", "tcp", "--orig-port-dst", str(port)],
                           capture_output=True)  # the mapping goes, the server's TIME_WAIT stays
            met_time_wait = _tcp_out_rsts(vm) - rsts_before
            if met_time_wait >= 3:
                break
    finally:
        sh("ip", "netns", "exec", vm, "iptables", "-t", "nat", "-F", "POSTROUTING")
    assert met_time_wait >= 3, f"only {met_time_wait} of {attempt + 1} SYNs met the TIME_WAIT socket"
