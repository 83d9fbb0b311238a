"""The reachability step's expectation language and matrix text."""
import pytest

from emulator.config.reachability import Expectation, PairPattern, ProbePort, ReachabilitySpec
from emulator.netpol.matrix import differences, format_matrix

pytestmark = pytest.mark.unit
TCP80, UDP80 = ProbePort(80, "TCP"), ProbePort(80, "UDP")


def test_expectation_default_then_deny_then_allow() -> None:
    e = Expectation.model_validate({"default": "allow", "deny": ["*/* -> x/*"], "allow": ["y/a -> x/*:80/udp"]})
    assert e.allows("y/b", "z/a", TCP80)
    assert not e.allows("y/a", "x/b", TCP80)
    assert e.allows("y/a", "x/b", UDP80)
    assert e.allows("x/a", "x/a", TCP80)              # a pod's own cell
    d = Expectation.model_validate({"default": "deny", "allow": ["x/? -> */c"]})
    assert d.allows("x/a", "y/c", TCP80) and not d.allows("xx/a", "y/c", TCP80)


def test_pattern_syntax() -> None:
    assert PairPattern.parse("x/a -> y/*:81/tcp") == PairPattern("x/a", "y/*", "81", "tcp")
    assert PairPattern.parse(" */* ->  z/c ") == PairPattern("*/*", "z/c")
    for bad in ("x/a => y/b", "x -> y/b", "x/a -> y/b:80", "x/a -> y/b:80/icmp"):
        with pytest.raises(ValueError):
            PairPattern.parse(bad)
    with pytest.raises(ValueError):
        ProbePort.parse("70000/tcp")


def test_spec_rejects_duplicates_and_bad_service_templates() -> None:
    ok = ReachabilitySpec.model_validate({"pods": ["x/a", "y/b"], "ports": ["80/tcp", "80/udp"]})
    assert ok.service_of("y/b") == ("y", "s-y-b")
    for bad in ({"pods": ["x/a", "x/a"]}, {"pods": ["x/a"], "ports": ["80/tcp", "80/tcp"]},
                {"pods": ["x/a"], "service": "{name}"}):
        with pytest.raises(ValueError):
            ReachabilitySpec.model_validate(bad)


def test_matrix_marks_only_differing_cells() -> None:
    pods = ["x/a", "x/b"]
    expected = {(s, d): True for s in pods for d in pods}
    observed = {**expected, ("x/b", "x/a"): False}
    assert differences(pods, observed, expected) == [("x/b", "x/a")]
    text = format_matrix("t 80/tcp", pods, observed, expected)
    lines = text.splitlines()
    assert "1 cells differ" in lines[0]
    assert lines[-1].split("|")[0].split() == ["x/b", "X!", "."]
    assert lines[-1].split("|")[1].split() == ["x/b", ".", "."]
    assert "matches the expectation" in format_matrix("t", pods, expected, expected)


def test_probe_matrix_reprobes_only_blocked_cells_and_skips_missing_service_ports() -> None:
    from emulator.netpol.matrix import compare, probe_matrix
    pods, ports = ["x/a", "x/b"], [TCP80, UDP80]
    calls = []
    flaky = {"first": True}

    def target(dst, port):
        return None if port == "80/udp" and dst == "x/b" else (f"10.8.0.{1 + pods.index(dst)}", 80)

    def run(reqs):
        calls.append(reqs)
        out = {}
        for src, targets in reqs.items():
            res = []
            for ip, _, proto in targets:
                if src == "x/a" and ip == "10.8.0.2" and proto == "TCP" and flaky["first"]:
                    flaky["first"] = False
                    res.append("timeout")                       # a lost first SYN
                else:
                    res.append("timeout" if (src, ip) == ("x/b", "10.8.0.1") else "ok")
            out[src] = res
        return out
    outcome = probe_matrix(pods, ports, target, run)
    assert outcome[("x/a", "x/b", "80/tcp")] == "ok"            # recovered on the second probe
    assert outcome[("x/b", "x/a", "80/tcp")] == "timeout"
    assert outcome[("x/a", "x/b", "80/udp")] == "no service port"
    assert len(calls) == 2 and sum(len(v) for v in calls[1].values()) == 3   # only blocked cells again
    rec = compare("t", pods, ports, outcome, lambda s, d, p: (s, d) != ("x/b", "x/a"))
    assert rec["matrices"]["80/tcp"] == {"observed": ["..", "X."], "expected": ["..", "X."]}
    assert [(d["from"], d["to"], d["port"], d["observed"]) for d in rec["differences"]] == \
        [("x/a", "x/b", "80/udp", "no service port"), ("x/b", "x/b", "80/udp", "no service port")]
    assert rec["ok"] is False
