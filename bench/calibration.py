#!/usr/bin/env python3
"""Calibration: kubemu's request path against the same path built by hand, measured in the same run.

The floor is built with plain `ip`, `ovs-vsctl` and `iptables-restore` (no kubemu code):

    client ns --veth-- node-a ns --veth-- [OVS bridge, userspace datapath, tx offload off] --veth-- node-b ns
                         |  iptables DNAT VIP1 -> server-a, VIP2 -> server-b                      |
                       server-a ns (python http.server)                               server-b ns (python http.server)

VIP2 is the floor of a pod -> ClusterIP request to a pod on another node (DNAT on the
client's node, one switch hop); VIP1 - VIP2 is the floor of the extra hop. Then a kubemu
cluster (topologies/regional-3x2.yaml with scenarios/manifests/extra-hop.yaml and a client
pod) measures pod -> ClusterIP (both pods on other nodes) and, interleaved, its load
balancers with externalTrafficPolicy Cluster against Local (the extra-hop penalty).
Both sides use kubemu's HTTP generator as the client (a new connection per request),
so the measurement is the same; only the path differs.

Run as root: .venv/bin/python bench/calibration.py [--requests 300]
Prints the p50s, the penalties and kubemu's overhead as ratios (goal: direct p50 <= 1.5x). The
floor is measured before and after the kubemu run (the machine drifts); the ratios use their mean.
The floor's server is Python's http.server, kubemu's pods run its aiohttp netexec server.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import handmade_ovs  # noqa: E402
PY = sys.executable
SERVER = textwrap.dedent("""
    import http.server, socketserver
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = self.client_address[0].encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close"); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
""")


def sh(*argv: str, ns: str | None = None, check: bool = True) -> str:
    """Run a command (in namespace `ns`); its stdout."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res.stdout


class Floor:
    """The hand-built path; every name carries the prefix kubemu<id>; removed on exit."""

    def __init__(self) -> None:
        self.p = f"kubemu{secrets.token_hex(2)}"
        self.ns = {k: f"{self.p}-cal-{k}" for k in ("cli", "na", "nb", "sa", "sb", "fab")}
        self.tmp = tempfile.mkdtemp(prefix=f"{self.p}-cal-")
        self.procs: list[subprocess.Popen] = []

    def veth(self, a: str, ns_a: str, b: str, ns_b: str) -> None:
        sh("ip", "link", "add", f"{self.p}{a}", "netns", self.ns[ns_a], "type", "veth",
           "peer", "name", f"{self.p}{b}", "netns", self.ns[ns_b])
        for n, ns in ((a, ns_a), (b, ns_b)):
            sh("ip", "link", "set", f"{self.p}{n}", "up", ns=self.ns[ns])

    def addr(self, ns: str, dev: str, cidr: str) -> None:
        sh("ip", "addr", "add", cidr, "dev", f"{self.p}{dev}", ns=self.ns[ns])

    def __enter__(self) -> "Floor":
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        self.veth("c0", "cli", "c1", "na")
        self.veth("a0", "sa", "a1", "na")
        self.veth("b0", "sb", "b1", "nb")
        self.veth("f0", "na", "fa", "fab")
        self.veth("f1", "nb", "fb", "fab")
        for ns, dev, cidr in (("cli", "c0", "10.99.1.2/24"), ("na", "c1", "10.99.1.1/24"),
                              ("sa", "a0", "10.99.3.2/24"), ("na", "a1", "10.99.3.1/24"),
                              ("sb", "b0", "10.99.4.2/24"), ("nb", "b1", "10.99.4.1/24"),
                              ("na", "f0", "10.99.0.1/24"), ("nb", "f1", "10.99.0.2/24")):
            self.addr(ns, dev, cidr)
        for ns, gw in (("cli", "10.99.1.1"), ("sa", "10.99.3.1"), ("sb", "10.99.4.1")):
            sh("ip", "route", "add", "default", "via", gw, ns=self.ns[ns])
        sh("ip", "route", "add", "10.99.4.0/24", "via", "10.99.0.2", ns=self.ns["na"])
        for net in ("10.99.1.0/24", "10.99.3.0/24"):
            sh("ip", "route", "add", net, "via", "10.99.0.1", ns=self.ns["nb"])
        for ns in ("na", "nb"):
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.ns[ns])
        rules = ("*nat\n:PREROUTING ACCEPT [0:0]\n"
                 "-A PREROUTING -d 10.99.9.1/32 -p tcp --dport 80 -j DNAT --to-destination 10.99.3.2:8080\n"
                 "-A PREROUTING -d 10.99.9.2/32 -p tcp --dport 80 -j DNAT --to-destination 10.99.4.2:8080\n"
                 "COMMIT\n")
        subprocess.run(["ip", "netns", "exec", self.ns["na"], "iptables-restore"], input=rules, text=True,
                       check=True)
        self._ovs()
        for ns in ("sa", "sb"):
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.ns[ns], PY, "-c", SERVER]))
        return self

    def _ovs(self) -> None:
        """ovsdb-server and ovs-vswitchd of our own (files in the temp dir), a netdev bridge, offload off."""
        br = f"{self.p}-br"
        self.vsctl = handmade_ovs.start(self.tmp, self.ns["fab"], br)
        for port, ns in (("fa", "fab"), ("fb", "fab"), ("f0", "na"), ("f1", "nb")):
            sh("ethtool", "-K", f"{self.p}{port}", "tx", "off", ns=self.ns[ns])
        for port in ("fa", "fb"):
            sh(*self.vsctl, "add-port", br, f"{self.p}{port}")

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.terminate()
            p.wait(5)
        handmade_ovs.stop(self.tmp)
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def measure(self, requests: int) -> dict[str, list[dict]]:
        """VIP1 (same node) and VIP2 (other node) interleaved request by request, from the client ns."""
        deadline = time.time() + 20
        while time.time() < deadline:   # both servers answer
            if all(subprocess.run(["ip", "netns", "exec", self.ns["cli"], "curl", "-s", "-m", "1", "-o",
                                   "/dev/null", f"http://{vip}/"]).returncode == 0
                   for vip in ("10.99.9.1", "10.99.9.2")):
                break
            time.sleep(0.2)
        out = os.path.join(self.tmp, "floor.jsonl")
        sched = "".join("01" if i % 2 else "10" for i in range(requests))
        sh(PY, "-m", "emulator.traffic.http_load", "--url", "http://10.99.9.1/", "--url", "http://10.99.9.2/",
           "--schedule", sched, "--requests", str(2 * requests), "--out", out, ns=self.ns["cli"])
        recs = [json.loads(line) for line in open(out)]
        return {"same-node": [r for r in recs if r["arm"] == 0], "other-node": [r for r in recs if r["arm"] == 1]}


def p50(recs: list[dict]) -> float:
    return statistics.median(r["total_ms"] for r in recs if r["outcome"] == "ok")


KUBEMU_SCENARIO = """
name: calibration
topology: {root}/topologies/regional-3x2.yaml
timing: fast
seed: 5
manifests:
  - {root}/scenarios/manifests/extra-hop.yaml
  - {{apiVersion: v1, kind: Pod, metadata: {{name: client}},
     spec: {{nodeSelector: {{kubernetes.io/hostname: default-pool-c-1}},
            containers: [{{name: c, image: "registry.k8s.io/e2e-test-images/agnhost:2.47", args: [pause]}}]}}}}
steps:
  - wait: {{ready: pod/app-a}}
  - wait: {{ready: pod/app-b}}
  - wait: {{ready: pod/client}}
  - wait: {{ready: service/app-cluster}}
  - wait: {{ready: service/app-local}}
  - traffic: {{name: direct, from: pod/client,
              http: {{url: "http://{{clusterip:app-cluster}}/clientip", requests: {n}, concurrency: 1}}}}
  - compare:
      name: hop
      from: host/inet-1
      arms: {{cluster: {{url: "http://{{lbip:app-cluster}}/clientip"}},
             local: {{url: "http://{{lbip:app-local}}/clientip"}}}}
      trials: 2
      requests: {half}
"""


def kubemu_side(requests: int, tmp: str) -> dict:
    """Run the kubemu scenario; direct p50 and the Cluster arm's extra-hop penalty with its interval."""
    path = os.path.join(tmp, "calibration.yaml")
    with open(path, "w") as f:
        f.write(KUBEMU_SCENARIO.format(root=ROOT, n=requests, half=max(requests // 2, 50)))
    res = subprocess.run([PY, "-m", "emulator.cli", "run", path, "--runs-dir", tmp], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    if res.returncode != 0:
        raise RuntimeError("kubemu run failed:\n" + res.stdout[-3000:] + res.stderr[-2000:])
    run_dir = glob.glob(os.path.join(tmp, "*-calibration-*"))[0]
    from emulator.report.render import load_run
    from emulator.report.study import estimate
    run = load_run(run_dir)
    pen = estimate(run.records["hop-cluster"], run.nodes, "extra_hop_penalty_ms", "calibration")
    return {"direct_p50": p50(run.records["direct"]), "penalty": pen, "run_dir": run_dir}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="requests per path")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    os.environ["PYTHONPATH"] = ROOT
    tmp = tempfile.mkdtemp(prefix="kubemu-calibration-runs-")
    with Floor() as floor:   # measured before and after the kubemu run: drift shows as a difference
        before = floor.measure(args.requests)
        k = kubemu_side(args.requests, tmp)
        after = floor.measure(args.requests)
    floors = []
    for when, recs in (("before", before), ("after", after)):
        same, other = p50(recs["same-node"]), p50(recs["other-node"])
        floors.append((same, other))
        print(f"floor {when} (hand-built, OVS netdev + iptables DNAT): same-node p50 {same:.3f} ms, "
              f"other-node p50 {other:.3f} ms, extra hop {other - same:+.3f} ms "
              f"(n = {len(recs['same-node'])} + {len(recs['other-node'])}, interleaved)")
    f_same = statistics.mean(f[0] for f in floors)
    f_other = statistics.mean(f[1] for f in floors)
    pen = k["penalty"]
    print(f"kubemu: pod -> ClusterIP (pod on another node) p50 {k['direct_p50']:.3f} ms; extra-hop penalty "
          f"(LB Cluster, interleaved with Local) {pen['value']:.3f} ms [95% CI {pen['ci_low']:.3f}, "
          f"{pen['ci_high']:.3f}]; run {k['run_dir']}")
    ratio = k["direct_p50"] / f_other
    hop = f_other - f_same
    print(f"overhead against the mean of the two floors: direct p50 ratio kubemu/floor = {ratio:.2f}x "
          f"(goal <= 1.5x); extra-hop penalty kubemu/floor = "
          f"{pen['value'] / hop if hop > 0 else float('nan'):.2f}x ({pen['value'] - hop:+.3f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
