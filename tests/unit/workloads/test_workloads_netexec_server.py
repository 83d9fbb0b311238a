"""The built-in netexec server on loopback sockets, served by a WorkloadHost loop thread."""
import http.client
import json
import socket

import pytest

from emulator.workloads.agnhost import NetexecConfig, parse_netexec_args
from emulator.workloads.host import WorkloadError, WorkloadHost

pytestmark = pytest.mark.unit


@pytest.fixture
def host():
    with WorkloadHost() as h:
        yield h


@pytest.fixture
def pod(host):
    info = host.add_pod_server(None, "web-7d4b9-x2x4q", "zone-a-1", NetexecConfig(http_port=0, udp_port=0),
                               bind_ip="127.0.0.1")
    yield info


def get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        local = conn.sock.getsockname()
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), dict(resp.getheaders()), local
    finally:
        conn.close()


def udp(port, message, timeout=2.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.send(message.encode())
        return s.recv(65535).decode(), s.getsockname()


def test_hostname_and_kubemu_headers(pod):
    status, body, headers, local = get(pod.http_port, "/hostname")
    assert (status, body) == (200, "web-7d4b9-x2x4q")
    assert headers["X-Kubemu-Pod"] == "web-7d4b9-x2x4q"
    assert headers["X-Kubemu-Node"] == "zone-a-1"
    assert headers["X-Kubemu-Client-Ip"] == "127.0.0.1"
    assert headers["X-Kubemu-Client-Port"] == str(local[1])


def test_clientip_is_peer_ip_and_port(pod):
    status, body, _, local = get(pod.http_port, "/clientip")
    assert status == 200 and body == f"127.0.0.1:{local[1]}"


def test_echo_with_and_without_code(pod):
    assert get(pod.http_port, "/echo?msg=hello%20world")[:2] == (200, "hello world")
    assert get(pod.http_port, "/echo?msg=nope&code=503")[:2] == (503, "nope")


def test_healthz_root_and_unknown_paths(pod):
    assert get(pod.http_port, "/healthz")[0] == 200
    status, body, headers, _ = get(pod.http_port, "/")
    assert status == 200 and body.startswith("NOW: ")
    status, body, headers, _ = get(pod.http_port, "/no/such/path")
    assert status == 200 and body.startswith("NOW: ") and headers["X-Kubemu-Pod"] == "web-7d4b9-x2x4q"
    assert get(pod.http_port, "/redirect?location=/echo&code=307")[0] == 307
    assert get(pod.http_port, "/shell?cmd=id")[0] == 501


def test_healthz_fails_without_udp_like_agnhost(host):
    info = host.add_pod_server(None, "p", "n", NetexecConfig(http_port=0, udp_port=None), bind_ip="127.0.0.1")
    assert info.udp_ports == ()
    assert get(info.http_port, "/healthz")[0] == 412


def test_http_override_and_close(host):
    cfg = parse_netexec_args(["serve-hostname", "--port=0", "--close"])
    info = host.add_pod_server(None, "sh-1", "n", cfg, bind_ip="127.0.0.1")
    status, body, headers, _ = get(info.http_port, "/anything")
    assert (status, body) == (200, "sh-1") and headers.get("Connection") == "close"


def test_udp_commands(pod):
    port = pod.udp_ports[0]
    assert udp(port, "hostname")[0] == "web-7d4b9-x2x4q"
    assert udp(port, "HOSTNAME\n")[0] == "web-7d4b9-x2x4q"
    assert udp(port, "echo Hello There")[0] == "hello there"   # agnhost lowercases
    reply, local = udp(port, "clientip")
    assert reply == f"127.0.0.1:{local[1]}"
    info, local = udp(port, "kubemu")
    assert json.loads(info) == {"pod": "web-7d4b9-x2x4q", "node": "zone-a-1",
                                "client_ip": "127.0.0.1", "client_port": local[1]}


def test_udp_unknown_command_is_ignored(pod):
    with pytest.raises(socket.timeout):
        udp(pod.udp_ports[0], "whatever", timeout=0.3)


def test_remove_closes_sockets_so_connections_are_refused(host, pod):
    assert host.pods() == [None]
    assert host.remove_pod_server(None) is True
    with pytest.raises(ConnectionRefusedError):
        get(pod.http_port, "/hostname")
    assert host.remove_pod_server(None) is False


def test_pause_starts_nothing(host):
    assert host.add_pod_server(None, "p", "n", parse_netexec_args(["pause"])) is None
    assert host.pods() == []


def test_port_in_use_is_a_workload_error(host, pod):
    with pytest.raises(WorkloadError, match="cannot create sockets"):
        host.add_pod_server(None, "p2", "n", NetexecConfig(http_port=pod.http_port, udp_port=None),
                            bind_ip="127.0.0.1")


def test_many_pods_on_one_loop(host):
    infos = [host.add_pod_server(None, f"pod-{i}", "n", NetexecConfig(http_port=0, udp_port=0),
                                 bind_ip="127.0.0.1") for i in range(20)]
    assert [get(i.http_port, "/hostname")[1] for i in infos] == [f"pod-{i}" for i in range(20)]


def test_requests_are_logged_to_the_pods_log_like_agnhost(host, tmp_path):
    log = tmp_path / "pods" / "default_web" / "netexec.log"
    info = host.add_pod_server(None, "web", "n", NetexecConfig(http_port=0, udp_port=0), bind_ip="127.0.0.1",
                               log_path=str(log))
    _, _, _, local = get(info.http_port, "/hostname?x=1")
    get(info.http_port, "/healthz")   # the kubelet's probes stay out of the log
    host.remove_pod_server(None)
    lines = log.read_text().splitlines()
    assert lines[0].endswith(f"netexec.go] Started HTTP server on port {info.http_port}")
    assert lines[1].endswith(f"netexec.go] Started UDP server on port {info.udp_ports[0]}")
    assert lines[2].startswith("I") and lines[2].endswith(f"netexec.go] GET /hostname?x=1 from 127.0.0.1:{local[1]}")
    assert len(lines) == 3
