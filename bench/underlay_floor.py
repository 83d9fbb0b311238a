"""The floor of bench/underlay.py: kubemu's near and far paths built by hand, no kubemu code.

Two "VMs" on a LAN (tests/e2e/vmlan.py, no Ray), each with a fabric namespace running a
private ovs-vswitchd (userspace datapath, TX offload off on its ports as on kubemu's
fabric, and the same receive buffers on its port sockets: emulator/kernel/sockbuf.py, the
one kubemu call used) whose bridge switches with NORMAL. The VMs' bridges are joined by
one kernel VXLAN device per VM, created in the VM's namespace (its UDP socket on the VM's
address) and moved into the fabric, as kubemu's kernel underlay does:

    VM 0:  client ns -- node-c ns --+                 VM 1:
                                    [OVS 0] --vxlan== LAN ==vxlan-- [OVS 1] -- node-f ns -- far ns
           near ns   -- node-n ns --+

Each "pod" namespace hangs off a "node" namespace that routes (as kubemu's pods behind
their node), so a near request crosses one userspace switch per direction and a far one
two, plus the tunnel. The servers are minimal aiohttp apps (kubemu's netexec serves with
aiohttp) and iperf3; the client is kubemu's HTTP generator, one connection per request,
near and far interleaved request by request. What the floor's far/near ratios show is
what this machine's userspace OVS and tunnel cost before any of kubemu's work. With
`switch="bridge"` each VM's switch is a Linux bridge instead: the same paths with the
switching in the kernel, as OVS's kernel datapath would have it where the `openvswitch`
module exists.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import handmade_ovs
from vmlan import VmLan, sh

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
from emulator.kernel.sockbuf import force_packet_rcvbuf  # noqa: E402

PY = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VXLAN_PORT = 48479   # kubemu's kernel underlay port (emulator/fabric/kwire.py)
VNI = 4242
SERVER = textwrap.dedent("""
    import socket
    from aiohttp import web
    async def hostname(request):
        return web.Response(text=socket.gethostname())
    app = web.Application()
    app.router.add_get("/{tail:.*}", hostname)
    web.run_app(app, host="0.0.0.0", port=8080, print=None, access_log=None)
""")
# pod ns -> its node ns -> machine: (machine, pod address, node's fabric address)
NODES = {"c": (0, "10.98.1.2", "10.98.0.1"), "n": (0, "10.98.2.2", "10.98.0.2"),
         "f": (1, "10.98.3.2", "10.98.0.3")}


class UnderlayFloor:
    """The hand-built near/far paths; every name carries the LAN's test prefix; removed on exit."""

    def __init__(self, log_dir: str, lan_mtu: int, switch: str = "ovs") -> None:
        """`switch`: "ovs" (a private userspace OVS per VM, as kubemu's fabric here) or "bridge"
        (a Linux bridge per VM: what a switch in the kernel, as OVS's kernel datapath, costs)."""
        assert switch in ("ovs", "bridge")
        self.switch = switch
        self.lan = VmLan(2, log_dir, lan_mtu)
        self.p = self.lan.prefix
        self.tmp = tempfile.mkdtemp(prefix=f"{self.p}-floor-")
        self.fabric = [f"{self.p}-fab{i}" for i in range(2)]
        self.procs: list[subprocess.Popen] = []
        self.ovs_dirs: list[str] = []
        self.vsctl: list[list[str]] = []

    def ns_sh(self, ns: str, *argv: str, timeout: float = 60) -> str:
        return sh("ip", "netns", "exec", ns, *argv, timeout=timeout,
                  env={**os.environ, "PYTHONPATH": ROOT}).stdout

    def __enter__(self) -> "UnderlayFloor":
        try:
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self) -> None:
        self.lan.create()
        for ns in self.fabric:
            sh("ip", "netns", "add", ns)
        self.vsctl = [self._ovs(i) if self.switch == "ovs" else self._bridge(i) for i in range(2)]
        for k, (m, pod_ip, node_ip) in NODES.items():
            pod, node = f"{self.p}-pod{k}", f"{self.p}-node{k}"
            for ns in (pod, node):
                sh("ip", "netns", "add", ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "link", "add", "eth0", "netns", pod, "type", "veth", "peer", "name", f"{self.p}v{k}",
               "netns", node)
            sh("ip", "link", "add", "eth0", "netns", node, "type", "veth", "peer", "name", f"{self.p}f{k}",
               "netns", self.fabric[m])
            gw = pod_ip.rsplit(".", 1)[0] + ".1"
            for ns, cmd in ((pod, f"addr add {pod_ip}/24 dev eth0"), (pod, "link set eth0 up"),
                            (pod, f"route add default via {gw}"),
                            (node, f"addr add {gw}/24 dev {self.p}v{k}"), (node, f"link set {self.p}v{k} up"),
                            (node, f"addr add {node_ip}/24 dev eth0"), (node, "link set eth0 up"),
                            (self.fabric[m], f"link set {self.p}f{k} up")):
                sh("ip", "-n", ns, *cmd.split())
            for other, (_, o_pod, o_node) in NODES.items():
                if other != k:
                    sh("ip", "-n", node, "route", "add", o_pod.rsplit(".", 1)[0] + ".0/24", "via", o_node)
            self.ns_sh(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            if self.switch == "ovs":
                self.ns_sh(node, "ethtool", "-K", "eth0", "tx", "off")
                self.ns_sh(self.fabric[m], "ethtool", "-K", f"{self.p}f{k}", "tx", "off")
            self._plug(m, f"{self.p}f{k}")
        for i in range(2):   # the tunnel: born in the VM (its socket on the VM's address), moved into the fabric
            dev, vm = f"{self.p}x{i}", self.lan.vms[i]
            sh("ip", "-n", vm, "link", "add", dev, "mtu", "1500", "type", "vxlan", "id", str(VNI),
               "local", self.lan.addrs[i], "remote", self.lan.addrs[1 - i], "dstport", str(VXLAN_PORT),
               "noudpcsum", "ttl", "64")
            sh("ip", "-n", vm, "link", "set", dev, "netns", self.fabric[i])
            if self.switch == "ovs":
                self.ns_sh(self.fabric[i], "ethtool", "-K", dev, "tx", "off")
            sh("ip", "-n", self.fabric[i], "link", "set", dev, "up")
            self._plug(i, dev)
        for d in self.ovs_dirs:
            force_packet_rcvbuf(handmade_ovs.vswitchd_pid(d))
        for k in ("n", "f"):
            pod = f"{self.p}-pod{k}"
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", pod, PY, "-c", SERVER]))
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", pod, "iperf3", "-s", "-p", "5201"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def _ovs(self, i: int) -> list[str]:
        """ovsdb-server and ovs-vswitchd of our own for VM i (in its fabric namespace), a netdev bridge."""
        d = os.path.join(self.tmp, f"ovs{i}")
        os.makedirs(d)
        self.ovs_dirs.append(d)
        return handmade_ovs.start(d, self.fabric[i], f"{self.p}br{i}")

    def _bridge(self, i: int) -> list[str]:
        """A Linux bridge in VM i's fabric namespace (no ovs-vsctl: [])."""
        br = f"{self.p}br{i}"
        sh("ip", "-n", self.fabric[i], "link", "add", br, "type", "bridge")
        sh("ip", "-n", self.fabric[i], "link", "set", br, "up")
        return []

    def _plug(self, i: int, port: str) -> None:
        """Port `port` (in VM i's fabric namespace) into VM i's switch."""
        if self.switch == "ovs":
            sh(*self.vsctl[i], "add-port", f"{self.p}br{i}", port)
        else:
            sh("ip", "-n", self.fabric[i], "link", "set", port, "master", f"{self.p}br{i}")

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        for d in self.ovs_dirs:
            handmade_ovs.stop(d)
        for k in NODES:
            for ns in (f"{self.p}-pod{k}", f"{self.p}-node{k}"):
                sh("ip", "netns", "del", ns, check=False)
        for ns in self.fabric:
            sh("ip", "netns", "del", ns, check=False)
        self.lan.destroy()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def measure(self, requests: int, iperf_seconds: int) -> dict:
        """HTTP near and far interleaved, then iperf3 near and far; p50s, Mbit/s and their far/near ratios."""
        client = f"{self.p}-podc"
        near, far = NODES["n"][1], NODES["f"][1]
        deadline = time.monotonic() + 30
        while True:   # both servers answer
            ok = [subprocess.run(["ip", "netns", "exec", client, "curl", "-s", "-m", "1", "-o", "/dev/null",
                                  f"http://{ip}:8080/"]).returncode == 0 for ip in (near, far)]
            if all(ok):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"floor servers not answering (near, far: {ok})")
            time.sleep(0.2)
        out = os.path.join(self.tmp, "floor.jsonl")
        if os.path.exists(out):
            os.unlink(out)
        sched = "".join("01" if i % 2 else "10" for i in range(requests))
        self.ns_sh(client, PY, "-m", "emulator.traffic.http_load", "--url", f"http://{near}:8080/hostname",
                   "--url", f"http://{far}:8080/hostname", "--schedule", sched, "--requests", str(2 * requests),
                   "--out", out, timeout=600)
        with open(out) as f:
            recs = [json.loads(line) for line in f]
        r: dict = {}
        for arm, name in ((0, "near"), (1, "far")):
            ok = [x for x in recs if x["arm"] == arm and x["outcome"] == "ok"]
            r[f"{name}_p50"] = statistics.median(x["total_ms"] for x in ok)
            r[f"{name}_conn"] = statistics.median(x["connect_ms"] for x in ok)
        for name, ip in (("near", near), ("far", far)):
            res = json.loads(self.ns_sh(client, "iperf3", "-c", ip, "-p", "5201", "-t", str(iperf_seconds), "-J"))
            r[f"{name}_mbit"] = res["end"]["sum_received"]["bits_per_second"] / 1e6
            r[f"{name}_retx"] = res["end"]["sum_sent"].get("retransmits")
        r["tput_ratio"], r["p50_ratio"] = r["far_mbit"] / r["near_mbit"], r["far_p50"] / r["near_p50"]
        r["conn_ratio"] = r["far_conn"] / r["near_conn"]
        return r
