"""The `dns` traffic kind: settings, generator command line, dig output parsing, assertions."""
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from emulator.config.scenario import AssertSpec, TrafficSpec
from emulator.runner.flows import describe, load_params
from emulator.runner.steps.assert_ import set_metric
from emulator.traffic.dns_query import dig_argv, normalize, parse_dig
from emulator.traffic.kinds import generator_argv

pytestmark = pytest.mark.unit

DIG_OK = """;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242
;; flags: qr aa rd ra; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1

_pg._tcp.db.default.svc.cluster.local. 30 IN SRV 10 50 5432 db-1.db.default.svc.cluster.local.
_pg._tcp.db.default.svc.cluster.local. 30 IN SRV 10 50 5432 db-0.db.default.svc.cluster.local.
"""


def spec(**load) -> TrafficSpec:
    return TrafficSpec.model_validate({"name": "q", "from": "pod/client", **load})


def test_dns_settings_and_generator_argv() -> None:
    s = spec(dns={"name": "db.default.svc.cluster.local", "expect": ["{pod:db-0}"], "within": "5s"})
    params = load_params(s, lambda p: {"db-0": "10.4.0.5"}[p.name])
    assert params["expect"] == ["10.4.0.5"] and params["type"] == "A" and params["within"] == 5.0
    argv = generator_argv("dns", params, "/tmp/o.jsonl", python="py")
    assert argv[:4] == ["py", "-m", "emulator.traffic.dns_query", "--name=db.default.svc.cluster.local"]
    assert "--expect=10.4.0.5" in argv and "--no-search" not in argv
    assert "until the expected answer" in describe(s)
    assert spec(dns={"name": "{clusterip:web}", "type": "PTR"}).dns.type == "PTR"


@pytest.mark.parametrize("load, message", [
    ({"name": "-x"}, "is not a DNS name"),
    ({"name": "a b"}, "is not a DNS name"),
    ({"name": "10.0.0.1"}, "ask type PTR"),
    ({"name": "web", "type": "MX"}, "Input should be"),
    ({"name": "web", "within": "0s"}, "must be > 0"),
])
def test_dns_settings_refused(load, message) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(dns=load)


def test_dig_argv_reverse_and_search() -> None:
    assert dig_argv("10.8.0.20", "PTR", 2, True)[-2:] == ["-x", "10.8.0.20"]
    argv = dig_argv("web", "SRV", 2, False)
    assert "+nosearch" in argv and argv[-4:] == ["-t", "SRV", "-q", "web"]


def test_parse_dig_answers_nxdomain_and_timeout() -> None:
    rec = parse_dig(DIG_OK, 0)
    assert rec["outcome"] == "ok" and rec["rcode"] == "NOERROR"
    assert rec["answers"] == ["10 50 5432 db-0.db.default.svc.cluster.local",
                              "10 50 5432 db-1.db.default.svc.cluster.local"]
    assert rec["records"][0][:2] == ["_pg._tcp.db.default.svc.cluster.local", "SRV"]
    nx = parse_dig(";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n", 0)
    assert (nx["outcome"], nx["rcode"], nx["answers"]) == ("dns_error", "NXDOMAIN", [])
    to = parse_dig(";; connection timed out; no servers could be reached\n", 9)
    assert to["outcome"] == "timeout" and to["rcode"] is None
    assert normalize(["b.example.", "a"]) == ["a", "b.example"]


def test_answers_and_contains_assertions() -> None:
    a = AssertSpec.model_validate({"flow": "q", "answers": ["10.4.0.5"], "not_contains": {"answers": ["10.4.1.6"]}})
    assert a.set_checks() == {"answers": ["10.4.0.5"]}
    records = [{"answers": ["10.4.0.5", "10.4.1.6"]}, {"answers": ["10.4.0.5"]}]
    assert set_metric("answers", None, records, None) == ["10.4.0.5"]        # the last question's
    assert set_metric("answers", None, [], None) == []
    summary = SimpleNamespace(per_node={"n1": 3, "n2": 1})
    assert set_metric("nodes_served", summary, records, None) == ["n1", "n2"]
    with pytest.raises(ValidationError, match="not a set metric"):
        AssertSpec.model_validate({"flow": "q", "contains": {"success_ratio": [1]}})
    assert AssertSpec.model_validate({"flow": "q", "contains": {"nodes_served": ["n1"]}}).contains
