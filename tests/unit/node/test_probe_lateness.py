"""Readiness probes: a late answer of kubemu's own server counts by its status; a user's
server keeps the exact timeout (a slow application must fail its probe)."""
import http.server
import threading
import time

import pytest

from emulator.node.probes import ProbeRunner, ProbeTarget, run_probe

pytestmark = pytest.mark.unit


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path.startswith("/slow"):
            time.sleep(0.8)
        self.send_response(200 if self.path.endswith("ok") else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def port():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def http_probe(path, port):
    return {"httpGet": {"path": path, "port": port}}


def test_late_answers_count_by_status_only_with_a_late_cap(port):
    assert run_probe(http_probe("/ok", port), "127.0.0.1", {}, 0.3)[:2] == (True, False)
    assert run_probe(http_probe("/slow-ok", port), "127.0.0.1", {}, 0.3)[:2] == (False, False)   # a user's server
    assert run_probe(http_probe("/slow-ok", port), "127.0.0.1", {}, 0.3, late_cap=3.0)[:2] == (True, True)
    assert run_probe(http_probe("/slow-bad", port), "127.0.0.1", {}, 0.3, late_cap=3.0)[:2] == (False, True)
    assert run_probe(http_probe("/slow-ok", port), "127.0.0.1", {}, 0.3, late_cap=0.5)[:2] == (False, False)


def test_the_runner_counts_late_answers_and_keeps_the_pod_ready(port):
    changes = []
    runner = ProbeRunner("/proc/self/ns/net", lambda key, ready: changes.append((key, ready)))
    runner.add(ProbeTarget(key="default/web", pod_ip="127.0.0.1", pod_netns="", probe=http_probe("/slow-ok", port),
                           ports={}, period=0.05, timeout=0.3, success_threshold=1, failure_threshold=1,
                           in_process=True))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while runner.late < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    assert runner.late >= 2 and runner.late_passed == runner.late
    assert changes == [("default/web", True)]
