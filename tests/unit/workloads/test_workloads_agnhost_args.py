"""agnhost command lines -> NetexecConfig."""
import pytest

from emulator.errors import ConfigError
from emulator.workloads.agnhost import ConnectConfig, agnhost_argv, parse_connect_args
from emulator.workloads.netexec import NetexecConfig, WorkloadArgsError, parse_netexec_args

pytestmark = pytest.mark.unit


def test_defaults_match_agnhost():
    cfg = parse_netexec_args(["netexec"])
    assert (cfg.kind, cfg.http_port, cfg.udp_port) == ("netexec", 8080, 8081)
    assert cfg.serves and cfg.ports == [("TCP", 8080), ("UDP", 8081)]


@pytest.mark.parametrize("args", [
    ["netexec", "--http-port=9000", "--udp-port=9001"],
    ["netexec", "--http-port", "9000", "--udp-port", "9001"],
    ["/agnhost", "netexec", "--http-port=9000", "--udp-port=9001"],
    ["agnhost", "netexec", "-http-port=9000", "--udp-port", "9001"],
])
def test_ports_in_every_flag_syntax(args):
    cfg = parse_netexec_args(args)
    assert (cfg.http_port, cfg.udp_port) == (9000, 9001)


def test_udp_disabled_and_override():
    cfg = parse_netexec_args(["netexec", "--udp-port=-1", "--http-override=/hostname"])
    assert cfg.udp_port is None and cfg.http_override == "/hostname" and cfg.ports == [("TCP", 8080)]


def test_udp_listen_addresses():
    cfg = parse_netexec_args(["netexec", "--udp-listen-addresses=10.0.0.2,127.0.0.1,10.0.0.2"])
    assert cfg.udp_listen_addresses == ("10.0.0.2", "127.0.0.1")


def test_pause_serves_nothing():
    cfg = parse_netexec_args(["pause"])
    assert cfg.kind == "pause" and not cfg.serves and cfg.ports == []


def test_serve_hostname():
    cfg = parse_netexec_args(["serve-hostname", "--port", "9376", "--close"])
    assert cfg.http_port == 9376 and cfg.udp_port is None and cfg.http_override == "/hostname"
    assert cfg.close_each_request


@pytest.mark.parametrize("args, words", [
    ([], "subcommand"),
    (["porter"], "SERVE_PORT_"),
    (["bogus"], "not supported"),
    (["netexec", "--bogus=1"], "--bogus"),
    (["netexec", "--http-port=abc"], "not an integer"),
    (["netexec", "--http-port=70000"], "out of range"),
    (["netexec", "--http-port"], "needs a value"),
    (["netexec", "extra"], "unexpected argument"),
    (["netexec", "--tls-cert-file=/localhost.crt"], "HTTPS"),
    (["serve-hostname", "--udp"], "HTTP mode at the same time"),
    (["porter", "x"], "no arguments"),
    (["connect", "a:1"], "one-shot"),
    (["netexec", "--delay-shutdown=soon"], "not an integer"),
    (["pause", "x"], "no arguments"),
])
def test_errors_name_the_problem_and_field(args, words):
    with pytest.raises(WorkloadArgsError) as info:
        parse_netexec_args(args, field="spec.containers[0].args")
    assert words in str(info.value)
    assert str(info.value).startswith("spec.containers[0].args: ")
    assert isinstance(info.value, ConfigError) and info.value.exit_code == 2


def test_config_is_a_value():
    assert parse_netexec_args(["netexec"]) == NetexecConfig()


def test_sctp_port_is_ignored():
    cfg = parse_netexec_args(["netexec", "--sctp-port=9"])
    assert cfg.ports == [("TCP", 8080), ("UDP", 8081)]


def test_delay_shutdown():
    assert parse_netexec_args(["netexec", "--delay-shutdown=600"]).delay_shutdown == 600
    assert parse_netexec_args(["netexec"]).delay_shutdown == 0


def test_serve_hostname_tcp_and_udp_as_upstream_writes_them():
    tcp = parse_netexec_args(["/agnhost", "serve-hostname", "--tcp", "--http=false", "--port", "80"])
    assert tcp.tcp_port == 80 and tcp.http_port is None and tcp.udp_port is None
    assert tcp.ports == [("TCP", 80)]
    udp = parse_netexec_args(["serve-hostname", "--udp", "--http=false", "--port=53"])
    assert udp.udp_hostname and udp.ports == [("UDP", 53)]
    both = parse_netexec_args(["serve-hostname", "--tcp", "--udp", "--http=false"])
    assert both.ports == [("TCP", 9376), ("UDP", 9376)]
    assert parse_netexec_args(["serve-hostname"]).delay_shutdown == 60   # sleeps 60 s on SIGTERM


def test_porter_ports_from_env():
    cfg = parse_netexec_args(["porter"], env={"SERVE_PORT_80": "foo", "SERVE_PORT_81": "bar", "X": "y"})
    assert cfg.porter == ((80, "foo"), (81, "bar")) and cfg.ports == [("TCP", 80), ("TCP", 81)]
    with pytest.raises(WorkloadArgsError, match="HTTPS"):
        parse_netexec_args(["porter"], env={"SERVE_TLS_PORT_443": "tls"})


def test_agnhost_argv_from_command_or_args():
    img = "registry.k8s.io/e2e-test-images/agnhost:2.47"
    assert agnhost_argv({"image": img, "args": ["netexec"]}) == ["netexec"]
    assert agnhost_argv({"image": img, "command": ["/agnhost", "serve-hostname"], "args": ["--port=1"]}) \
        == ["serve-hostname", "--port=1"]
    assert agnhost_argv({"image": "busybox", "command": ["agnhost", "pause"]}) == ["pause"]
    assert agnhost_argv({"image": img, "command": ["/bin/sh", "-c", "x"]}) is None
    assert agnhost_argv({"image": "busybox", "args": ["netexec"]}) is None


@pytest.mark.parametrize("args, want", [
    (["connect", "10.0.0.1:80"], ConnectConfig("10.0.0.1:80")),
    (["/agnhost", "connect", "--timeout=5s", "svc:53", "--protocol", "udp"],
     ConnectConfig("svc:53", 5.0, "udp")),
    (["connect", "a:1", "--timeout", "1m500ms", "--udp-data=echo hi"], ConnectConfig("a:1", 60.5, "tcp", "echo hi")),
])
def test_connect_args(args, want):
    assert parse_connect_args(args) == want


@pytest.mark.parametrize("args, words", [
    (["connect"], "HOST:PORT"),
    (["connect", "a:1", "b:2"], "one HOST:PORT"),
    (["connect", "a:1", "--protocol=icmp"], "tcp, udp or sctp"),
    (["connect", "a:1", "--timeout=5"], "Go duration"),
])
def test_connect_errors(args, words):
    with pytest.raises(WorkloadArgsError, match=words):
        parse_connect_args(args)


@pytest.mark.parametrize("container, kind", [
    ({"image": "registry.k8s.io/e2e-test-images/agnhost:2.47", "args": ["netexec"]}, "netexec"),
    ({"image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
      "command": ["/agnhost", "serve-hostname", "--tcp", "--http=false", "--port", "80"]}, "netexec"),
    ({"image": "registry.k8s.io/e2e-test-images/agnhost:2.47", "args": ["connect", "a:80"]}, "connect"),
    ({"image": "registry.k8s.io/e2e-test-images/agnhost:2.47", "args": ["pause"]}, "pause"),
    ({"image": "registry.k8s.io/e2e-test-images/agnhost:2.47", "args": ["porter"],
      "env": [{"name": "SERVE_PORT_80", "value": "x"}]}, "netexec"),
    ({"image": "busybox", "command": ["sh", "-c", "true"]}, "command"),
])
def test_container_kind(container, kind):
    from emulator.node.runtime import container_kind
    assert container_kind(container) == kind
