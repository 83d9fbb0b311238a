"""A differing reachability cell keeps the conntrack entries between its two pods, per node."""
import pytest

from emulator.runner.steps.reachability import _conntrack

pytestmark = pytest.mark.unit


class FakeClient:
    def __init__(self):
        self.pods = {("z", "b"): ("10.4.1.5", "n1"), ("y", "c"): ("10.4.2.7", "n2")}
        self.calls = []

    def get(self, kind, ns, name):
        ip, node = self.pods[(ns, name)]
        return {"spec": {"nodeName": node}, "status": {"podIP": ip}}

    def conntrack_from(self, node, source_ip):
        self.calls.append((node, source_ip))
        lines = {"n1": "udp 17 28 src=10.4.1.5 dst=10.96.0.20 sport=40001 dport=80 src=10.4.2.7 dst=10.4.1.5\n"
                       "udp 17 20 src=10.4.1.5 dst=10.96.0.10 sport=5353 dport=53 src=10.4.0.3 dst=10.4.1.5\n"
                       "tcp 6 80 src=10.4.1.5 dst=10.4.2.70 sport=4000 dport=80 src=10.4.2.70 dst=10.4.1.5\n",
                 "n2": "udp 17 28 src=10.4.1.5 dst=10.4.2.7 sport=40001 dport=80 src=10.4.2.7 dst=10.4.1.5\n"}
        return lines[node].splitlines()


def test_entries_between_the_two_pods_on_both_nodes():
    client = FakeClient()
    got = _conntrack(client, {"from": "z/b", "to": "y/c", "port": "80/udp"})
    assert list(got) == ["n1", "n2"]
    assert all("10.4.2.7" in ln for lines in got.values() for ln in lines) and len(got["n1"]) == 1
    assert client.calls[0] == ("n1", "10.4.1.5")
