"""GKE health checks: thresholds and transitions (fake clock), the probe schedule, real probes."""
import contextlib
import http.server
import socket
import threading
import time

import pytest

from cloud_helpers import TIMING, service
from emulator.cloud.healthcheck import (CheckSpec, HealthChecker, HealthState, check_for_service,
                                        group_targets)
from emulator.workloads.hc_prober import probe_batch

pytestmark = pytest.mark.unit
CLUSTER = check_for_service(service("web"), TIMING)
LOCAL = check_for_service(service("loc", policy="Local", hc_port=31500), TIMING)


def test_check_specs_follow_gke_defaults():
    assert (CLUSTER.policy, CLUSTER.port, CLUSTER.path, CLUSTER.interval, CLUSTER.timeout) == \
        ("Cluster", 10256, "/healthz", 8.0, 1.0)
    assert (CLUSTER.healthy_threshold, CLUSTER.unhealthy_threshold, CLUSTER.shared) == (1, 3, True)
    assert (LOCAL.policy, LOCAL.port, LOCAL.path, LOCAL.interval) == ("Local", 31500, "/healthz", 3.0)
    assert (LOCAL.healthy_threshold, LOCAL.unhealthy_threshold, LOCAL.shared) == (1, 2, False)
    assert LOCAL.url("10.128.0.2") == "http://10.128.0.2:31500/healthz"
    # Local without a healthCheckNodePort falls back to the nodes check, as GKE does.
    svc = service("x", policy="Local")
    del svc["spec"]["healthCheckNodePort"]
    assert check_for_service(svc, TIMING).policy == "Cluster"


def test_cluster_policy_one_success_healthy_three_failures_unhealthy():
    hs = HealthState()
    hs.set_check("default/web", CLUSTER, ["n1", "n2"])
    assert hs.healthy_nodes("default/web") == []             # unhealthy until the first success
    assert hs.record("default/web", "n1", False, 0.0) is None   # already unhealthy: no transition
    t = hs.record("default/web", "n1", True, 8.0)
    assert t["healthy"] and t["time"] == 8.0 and t["first"] and t["state"] == "HEALTHY"
    assert hs.healthy_nodes("default/web") == ["n1"]
    assert hs.record("default/web", "n1", False, 16.0) is None
    assert hs.record("default/web", "n1", False, 24.0) is None
    assert hs.is_healthy("default/web", "n1")                 # 2 failures: still healthy
    t = hs.record("default/web", "n1", False, 32.0)
    assert t == {"time": 32.0, "service": "default/web", "node": "n1", "healthy": False,
                 "state": "UNHEALTHY", "first": False, "policy": "Cluster", "port": 10256,
                 "path": "/healthz", "consecutive": 3}
    assert hs.healthy_nodes("default/web") == []
    # A success between failures resets the count.
    hs.record("default/web", "n2", True, 1.0)
    for now, ok in [(2, False), (3, False), (4, True), (5, False), (6, False)]:
        assert hs.record("default/web", "n2", ok, now) is None
    assert hs.is_healthy("default/web", "n2")
    assert [e["time"] for e in hs.transitions] == [8.0, 32.0, 1.0]


def test_local_policy_two_failures_unhealthy():
    hs = HealthState()
    hs.set_check("default/loc", LOCAL, ["n1"])
    hs.record("default/loc", "n1", True, 0.0)
    assert hs.record("default/loc", "n1", False, 3.0) is None
    t = hs.record("default/loc", "n1", False, 6.0)
    assert t["healthy"] is False and t["consecutive"] == 2 and t["time"] == 6.0
    t = hs.record("default/loc", "n1", True, 9.0)
    assert t["healthy"] and not t["first"]


def test_check_change_and_node_changes():
    hs = HealthState()
    hs.set_check("s", CLUSTER, ["n1", "n2"])
    hs.record("s", "n1", True, 0)
    assert hs.set_check("s", CLUSTER, ["n1", "n3"]) is False     # same check: n1 kept, n2 gone
    assert hs.healthy_nodes("s") == ["n1"] and hs.checked_nodes("s") == ["n1", "n3"]
    assert hs.record("s", "n2", True, 1) is None                   # forgotten node
    assert hs.set_check("s", LOCAL, ["n1", "n3"]) is True          # new check: start over
    assert hs.healthy_nodes("s") == []
    hs.remove("s")
    assert hs.record("s", "n1", True, 2) is None and hs.services() == []


def test_scheduler_cadence_and_stale_results():
    hc = HealthChecker()
    ips = {"n1": "10.0.0.1", "n2": "10.0.0.2"}
    hc.configure({"default/web": CLUSTER, "default/loc": LOCAL}, ips, now=100.0)
    first = hc.due(100.0)
    assert sorted((p.service, p.node, p.port) for p in first) == [
        ("default/loc", "n1", 31500), ("default/loc", "n2", 31500),
        ("default/web", "n1", 10256), ("default/web", "n2", 10256)]
    assert hc.due(100.5) == [] and hc.next_due() == 103.0
    ts = hc.record(first, [True, False, True, True], 100.1)
    assert sorted((t["service"], t["node"]) for t in ts) == [("default/loc", "n1"), ("default/web", "n1"),
                                                             ("default/web", "n2")]
    assert [p.service for p in hc.due(103.0)] == ["default/loc", "default/loc"]
    assert hc.due(108.0) and hc.next_due() == 109.0    # loc at 106 missed, cadence kept: 109; web 116
    # Far behind: the cadence restarts from now.
    late = hc.due(200.0)
    assert len(late) == 4 and hc.next_due() == 203.0
    # A probe answered after its check changed is ignored.
    hc.configure({"default/web": LOCAL}, ips, now=201.0)
    assert hc.record([p for p in late if p.service == "default/web"], [True, True], 201.5) == []
    assert hc.state.healthy_nodes("default/web") == []
    assert "default/loc" not in hc.state.checks


def test_group_targets_shares_probes():
    hc = HealthChecker()
    hc.configure({"a/x": CLUSTER, "a/y": CLUSTER, "a/z": LOCAL}, {"n1": "10.0.0.1"}, now=0)
    probes = hc.due(0)
    targets, where = group_targets(probes)
    assert sorted(targets) == [("10.0.0.1", 10256, "/healthz"), ("10.0.0.1", 31500, "/healthz")]
    assert len(where) == 3 and [targets[i] for i in where] == [p.target for p in probes]


# --- real HTTP probes in this namespace (netns=None) ---
class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        code = 200 if self.path in ("/healthz", "/slow-healthz") else 503
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        self.server.seen.append(self.headers.get("User-Agent"))
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.seen = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_batch_real_http(server):
    port = server.server_address[1]
    t0 = time.monotonic()
    res = probe_batch(None, [("127.0.0.1", port, "/healthz"), ("127.0.0.1", port, "/other"),
                             ("127.0.0.1", _closed_port(), "/healthz"), ("127.0.0.1", port, "/slow"),
                             ["127.0.0.1", port, "/healthz"]], timeout=0.3)
    took = time.monotonic() - t0
    assert [ok for ok, _ in res] == [True, False, False, False, True]   # 200 / 503 / refused / too slow / 200
    assert not any(late for _, late in res)
    assert took < 0.9                                 # concurrent: one timeout for the batch
    assert "GoogleHC/1.0" in server.seen
    assert probe_batch(None, [], 1.0) == []


def test_a_late_answer_from_a_node_that_connected_in_time_counts_by_its_status(server):
    """The server accepted the connection at once and answered after 1 s (a busy emulating
    process): with a late cap it passes, marked late; a node that never connects still
    fails at the timeout, and an answer later than the cap fails."""
    port = server.server_address[1]
    with _unreachable() as silent:
        t0 = time.monotonic()
        res = probe_batch(None, [("127.0.0.1", port, "/slow-healthz"), ("127.0.0.1", port, "/healthz"),
                                 ("127.0.0.1", port, "/slow"), ("127.0.0.1", silent, "/healthz")],
                          timeout=0.3, late_cap=3.0)
        took = time.monotonic() - t0
    # late 200 / in time / late 503 / never connected
    assert res == [(True, True), (True, False), (False, True), (False, False)]
    assert took < 2.5                                 # done once the slow ones answered
    assert probe_batch(None, [("127.0.0.1", port, "/slow-healthz")], timeout=0.3, late_cap=0.6) == [(False, False)]


@contextlib.contextmanager
def _unreachable():
    """A local port whose SYNs go unanswered: a listener whose accept queue is already full."""
    with socket.socket() as srv, socket.socket() as filler:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        filler.connect(srv.getsockname())
        yield srv.getsockname()[1]
