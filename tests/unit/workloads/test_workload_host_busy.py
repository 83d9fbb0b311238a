"""A pod's server that could not start in time leaves its ports free for the kubelet's retry
(under load a start timed out, its sockets stayed bound, and every retry failed with
EADDRINUSE: the pod never ran)."""
import socket
import threading
import time

import pytest

from emulator.workloads.agnhost import NetexecConfig
from emulator.workloads.host import WorkloadError, WorkloadHost

pytestmark = pytest.mark.unit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_start_that_times_out_frees_its_ports_for_the_retry():
    port = free_port()
    with WorkloadHost(call_timeout=0.2) as host:
        release = threading.Event()
        host.loop.call_soon_threadsafe(lambda: release.wait(5))   # the loop is busy
        with pytest.raises(WorkloadError, match="did not answer within 0.2s"):
            host.add_pod_server(None, "web", "n1", NetexecConfig(http_port=port), bind_ip="127.0.0.1")
        release.set()
        deadline = time.monotonic() + 10
        while True:   # the kubelet's retry, same port: binds once the failed start is undone
            try:
                info = host.add_pod_server(None, "web", "n1", NetexecConfig(http_port=port), bind_ip="127.0.0.1")
                break
            except WorkloadError as e:
                assert time.monotonic() < deadline, f"the port stayed taken: {e}"
                time.sleep(0.05)
        assert info.http_port == port and host.pods() == [None]
