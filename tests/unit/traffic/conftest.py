"""Loopback servers for the generator tests (generators run as real subprocesses)."""
import socket

import pytest

from emulator.workloads.agnhost import NetexecConfig
from emulator.workloads.host import WorkloadHost


@pytest.fixture(scope="module")
def netexec():
    """A netexec pod server on 127.0.0.1 (HTTP and UDP on free ports)."""
    with WorkloadHost() as host:
        yield host.add_pod_server(None, "web-1", "node-a", NetexecConfig(http_port=0, udp_port=0),
                                  bind_ip="127.0.0.1")


@pytest.fixture
def free_port():
    """A port nothing listens on (TCP and UDP)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_listener():
    """A listening TCP socket that never accepts nor answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]
