"""Link impairments on real namespaces: ping RTT, loss and jitter through the chosen mechanism."""
from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import time

import pytest

from emulator.config.impairments import Impairments
from emulator.impair.host import HostImpairer
from emulator.impair.render import host_classes
from emulator.kernel.iptables import IptablesRunner
from emulator.naming import new_run_id
from emulator.records.hosts import HostSpec
from emulator.runner.cleanup import run_processes
from tests.netns.fabric_helpers import leftovers, sh

pytestmark = pytest.mark.netns

HOSTS = [HostSpec(name="a", role="node", zone="z-a", ip="10.0.0.1", pod_cidr="10.4.0.0/24", gateway="10.0.0.254",
                  fabric_port="pa"),
         HostSpec(name="b", role="node", zone="z-b", ip="10.0.0.2", pod_cidr="10.4.1.0/24", gateway="10.0.0.254",
                  fabric_port="pb")]


class Pair:
    """Two namespaces joined by a veth (eth0 on both sides), each with an impairer."""

    def __init__(self, tmp_path, hosts: list[HostSpec] = HOSTS) -> None:
        self.hosts = hosts
        self.run_id = new_run_id()
        self.prefix = f"kubemu{self.run_id}"
        self.ns = {h.name: f"{self.prefix}-node-{h.name}" for h in hosts}
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
        sh("ip", "-n", self.ns["a"], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", self.ns["b"])
        for h in hosts:
            other = next(o for o in hosts if o is not h)
            for cmd in ("link set lo up", "link set eth0 up", f"addr add {h.ip}/24 dev eth0",
                        f"route add {other.pod_cidr or '10.5.0.0/24'} dev eth0"):
                sh("ip", "-n", self.ns[h.name], *cmd.split())
        self.imp = {h.name: HostImpairer(self.ns[h.name], self.prefix, h.name,
                                         IptablesRunner.in_netns(self.ns[h.name]),
                                         str(tmp_path)) for h in hosts}

    def impair(self, spec: dict, hosts=("a", "b")) -> dict:
        """Apply `spec` (an impairments mapping) on the given hosts' egress."""
        imp = Impairments.model_validate(spec)
        return {h.name: self.imp[h.name].apply(host_classes(imp, h, self.hosts))
                for h in self.hosts if h.name in hosts}

    def ping(self, count: int, interval: float = 0.02) -> tuple[list[float], int]:
        """RTTs (ms) of the replies from a to b, and how many of `count` came back."""
        out = subprocess.run(["ip", "netns", "exec", self.ns["a"], "ping", "-n", "-c", str(count), "-i",
                              str(interval), "-W", "1", self.hosts[1].ip], capture_output=True, text=True).stdout
        rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
        return rtts, len(rtts)

    def close(self) -> None:
        for imp in self.imp.values():
            imp.clear()
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def pair(tmp_path):
    p = Pair(tmp_path)
    try:
        yield p
    finally:
        p.close()
    assert leftovers(p.prefix) == []


def test_one_ms_one_way_delay_adds_two_ms_rtt(pair):
    base, _ = pair.ping(40)
    info = pair.impair({"inter_node": {"delay": "1ms"}})
    assert info["a"]["classes"]["inter_node"]["enforced_by"] in ("netem", "nfqueue delay")
    delayed, n = pair.ping(40)
    assert n == 40
    increase = statistics.median(delayed) - statistics.median(base)
    assert 1.5 <= increase <= 6, (statistics.median(base), statistics.median(delayed))
    # the delay process is a run-prefixed process that `kubemu clean` finds
    if info["a"]["mechanism"] == "nfqueue":
        assert len(run_processes(pair.run_id)) >= 2
        os.kill(pair.imp["a"].proc.pid, signal.SIGKILL)   # supervised: it is started again
        for _ in range(50):
            if pair.imp["a"].restarts and pair.imp["a"].proc is not None:
                break
            time.sleep(0.1)
        again, n = pair.ping(20)
        assert n == 20 and statistics.median(again) - statistics.median(base) >= 1.5
    pair.impair({})   # removing the impairment restores the round trip
    after, _ = pair.ping(40)
    assert statistics.median(after) - statistics.median(base) < 1.0


def test_loss_half_drops_about_half(pair):
    pair.impair({"inter_node": {"loss": "50%"}}, hosts=("a",))
    _, got = pair.ping(300, interval=0.005)
    # binomial(300, 0.5): sd 8.7 -> 150 ± 45 is more than 5 sd either way
    assert 105 <= got <= 195, got


def test_jitter_spreads_rtts(pair):
    pair.impair({"inter_node": {"delay": "3ms"}}, hosts=("a",))
    steady, _ = pair.ping(40)
    pair.impair({"inter_node": {"delay": "3ms", "jitter": "2ms"}}, hosts=("a",))
    jittered, _ = pair.ping(60)
    q = statistics.quantiles(jittered, n=4)
    qs = statistics.quantiles(steady, n=4)
    # uniform ±2 ms: interquartile range ~2 ms, against ~0 without jitter
    assert q[2] - q[0] >= 1.0 and q[2] - q[0] > 3 * (qs[2] - qs[0]), (q, qs)
    # both tails spread (deciles, not min/max: one scheduling stall on a busy machine is a max)
    d, ds = statistics.quantiles(jittered, n=10), statistics.quantiles(steady, n=10)
    assert d[0] < ds[0] - 0.5 and d[8] > ds[8] + 0.5, (d, ds)


def test_internet_delay_on_both_ends(tmp_path):
    """An internet host delays all its egress, a node its egress to internet hosts."""
    hosts = [HOSTS[0], HostSpec(name="b", role="host", kind="internet", ip="10.0.0.2", gateway="10.0.0.254",
                                fabric_port="pb")]
    p = Pair(tmp_path, hosts)
    try:
        base, _ = p.ping(30)
        info = p.impair({"internet": {"delay": "2ms"}, "inter_node": {"delay": "50ms"}})
        assert list(info["a"]["classes"]) == ["internet"] and list(info["b"]["classes"]) == ["internet"]
        delayed, n = p.ping(30)
        assert n == 30 and 3.0 <= statistics.median(delayed) - statistics.median(base) <= 10
    finally:
        p.close()
    assert leftovers(p.prefix) == []


def test_rate_limits_throughput(pair):
    """1 mbit/s on a's egress: 250 kB take about 2 s instead of milliseconds."""
    pair.impair({"inter_node": {"rate": "1mbit"}}, hosts=("a",))
    srv = subprocess.Popen(["ip", "netns", "exec", pair.ns["b"], "python3", "-c",
                            "import socket; s=socket.socket(); s.bind(('10.0.0.2', 5001)); s.listen(); "
                            "c,_=s.accept(); n=0\nwhile (d := c.recv(65536)): n += len(d)\nprint(n)"],
                           stdout=subprocess.PIPE, text=True)
    try:
        code = ("import socket,time; s=socket.create_connection(('10.0.0.2', 5001), timeout=5); "
                "t=time.monotonic(); s.sendall(b'x'*250000); s.shutdown(1); s.recv(1); print(time.monotonic()-t)")
        for _ in range(50):   # the server may need a moment to listen
            out = subprocess.run(["ip", "netns", "exec", pair.ns["a"], "python3", "-c", code],
                                 capture_output=True, text=True)
            if out.returncode == 0:
                break
            time.sleep(0.1)
        seconds = float(out.stdout)
        assert int(srv.communicate(timeout=10)[0]) == 250000
    finally:
        srv.kill()
    # 2 Mbit at 1 Mbit/s = 2 s; a generous band (htb's burst lets the first bytes through)
    assert 1.0 <= seconds <= 8.0, seconds
