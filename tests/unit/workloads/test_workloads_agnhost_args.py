"""agnhost command lines -> NetexecConfig."""
import pytest

from emulator.errors import ConfigError
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
    (["porter"], "porter"),
    (["netexec", "--bogus=1"], "--bogus"),
    (["netexec", "--http-port=abc"], "not an integer"),
    (["netexec", "--http-port=70000"], "out of range"),
    (["netexec", "--http-port"], "needs a value"),
    (["netexec", "extra"], "unexpected argument"),
    (["netexec", "--tls-cert-file=/localhost.crt"], "HTTPS"),
    (["netexec", "--sctp-port=9"], "--sctp-port"),
    (["serve-hostname", "--udp"], "--udp"),
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
