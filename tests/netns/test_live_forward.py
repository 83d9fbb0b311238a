"""The live run's in-cluster path: a socket listening inside a namespace, forwarded to root-namespace loopback."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from emulator.live.forward import Forwarder
from emulator.naming import new_run_id
from emulator.kernel.netns import socket_in
from tests.netns.fabric_helpers import leftovers, sh

pytestmark = pytest.mark.netns
CLIENT = ("import socket,sys; s=socket.create_connection(('10.99.0.1', 443), 3); s.sendall(b'hello');"
          "s.shutdown(socket.SHUT_WR); sys.stdout.write(s.recv(100).decode())")


@pytest.fixture
def netns():
    name = f"kubemu{new_run_id()}-host-cp"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", name, "addr", "add", "10.99.0.1/32", "dev", "lo")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    assert leftovers(name) == []


def _echo_server() -> tuple[socket.socket, int]:
    """A root-namespace server on loopback that answers `echo:` + what it got."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(100):
                    data += chunk
                conn.sendall(b"echo:" + data)
    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_a_client_in_the_namespace_reaches_the_root_loopback_server_through_the_forwarder(netns):
    srv, port = _echo_server()
    fwd = Forwarder(("127.0.0.1", port))
    try:
        fwd.serve(socket_in(netns, bind=("10.99.0.1", 443)))
        out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "echo:hello" and fwd.connections == 1
        # nothing listens on 443 in the root namespace: the socket is the namespace's
        assert "10.99.0.1:443" not in sh("ss", "-ltnH")
        assert "10.99.0.1:443" in sh("ip", "netns", "exec", netns, "ss", "-ltnH")
    finally:
        fwd.stop()
        srv.close()
    refused = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT],
                             capture_output=True, text=True, timeout=20)
    assert refused.returncode != 0 and "Connection refused" in refused.stderr
