"""The pure evaluator agrees with a naive reading of the Kubernetes rules on generated worlds."""
import pytest

from emulator.netpol.evaluate import allowed
from emulator.netpol.model import PodInfo, policy_from, state_from
from netpol_gen import EXTERNAL, PORTS, naive_allowed, world

pytestmark = pytest.mark.unit


def _ends(pods, state):
    infos = {p.key: p for p in state.pods}
    return [(p, infos[f"{p['metadata']['namespace']}/{p['metadata']['name']}"]) for p in pods] + \
        [(ip, ip) for ip in EXTERNAL]


@pytest.mark.parametrize("chunk", range(8))
def test_generated_worlds_agree_with_naive_evaluator(chunk: int) -> None:
    """400 random worlds x 64 endpoint pairs x 6 ports: both evaluators give the same answer."""
    checked = denied = 0
    for seed in range(chunk * 50, chunk * 50 + 50):
        pods, namespaces, policies = world(seed)
        state = state_from(pods, namespaces, policies)
        ends = _ends(pods, state)
        for raw_src, src in ends:
            for raw_dst, dst in ends:
                if isinstance(src, str) and isinstance(dst, str):
                    continue
                for port, proto in PORTS:
                    want = naive_allowed(raw_src, raw_dst, port, proto, pods, namespaces, policies)
                    got = allowed(src, dst, port, proto, state)
                    assert got == want, (seed, getattr(src, "key", src), getattr(dst, "key", dst), port, proto)
                    checked += 1
                    denied += not want
    assert denied > checked // 10 and checked - denied > checked // 10   # both outcomes well covered


def _pod(ns: str, name: str, labels: dict, ip: str, ports: dict | None = None) -> PodInfo:
    return PodInfo(ns, name, labels, ip, "n1", ports or {})


def _state(pods, policies, namespaces=None):
    from emulator.netpol.model import PolicyState
    return PolicyState(tuple(pods), namespaces or {}, tuple(policy_from(p) for p in policies))


def _np(ns: str, spec: dict, name: str = "p") -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


A = _pod("x", "a", {"pod": "a"}, "10.4.0.2", {("serve-81-tcp", "TCP"): 81})
B = _pod("y", "b", {"pod": "b"}, "10.4.1.2")


def test_no_policy_allows_everything() -> None:
    assert allowed(A, B, 80, "TCP", _state([A, B], []))


def test_default_deny_ingress_blocks_others_but_not_the_pod_itself() -> None:
    s = _state([A, B], [_np("x", {"podSelector": {}, "policyTypes": ["Ingress"]})])
    assert not allowed(B, A, 80, "TCP", s)
    assert allowed(A, B, 80, "TCP", s)            # egress is not restricted
    assert allowed(A, A, 80, "TCP", s)            # a pod always reaches itself


def test_egress_section_implies_egress_type() -> None:
    s = _state([A, B], [_np("x", {"podSelector": {}, "egress": []})])
    assert not allowed(A, B, 80, "TCP", s) and not allowed(B, A, 80, "TCP", s)


def test_namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_is_or() -> None:
    both = {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
         "podSelector": {"matchLabels": {"pod": "zzz"}}}]}]}
    either = {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}},
        {"podSelector": {"matchLabels": {"pod": "zzz"}}}]}]}
    assert not allowed(B, A, 80, "TCP", _state([A, B], [_np("x", both)]))
    assert allowed(B, A, 80, "TCP", _state([A, B], [_np("x", either)]))


def test_named_port_resolves_on_the_destination_pod() -> None:
    s = _state([A, B], [_np("x", {"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]})])
    assert allowed(B, A, 81, "TCP", s) and not allowed(B, A, 80, "TCP", s) and not allowed(B, A, 81, "UDP", s)


def test_ipblock_except_and_end_port() -> None:
    s = _state([A, B], [_np("x", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.4.0.0/14", "except": ["10.4.1.0/24"]}}], "ports": [{"port": 80, "endPort": 90}]}]})])
    assert not allowed(A, B, 85, "TCP", s)        # B is in the except
    assert allowed(A, "10.5.0.1", 90, "TCP", s) and not allowed(A, "10.5.0.1", 91, "TCP", s)
    assert not allowed(A, "8.8.8.8", 80, "TCP", s)


def test_ipblock_with_host_bits_is_the_masked_network() -> None:
    """`10.4.1.7/24` (accepted by the API server) means 10.4.1.0/24; excepts are masked too."""
    s = _state([A, B], [_np("x", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.4.1.7/24", "except": ["10.4.1.9/30"]}}]}]})])
    assert allowed(A, B, 80, "TCP", s)                      # 10.4.1.2: in the /24, not in .8/30
    assert not allowed(A, "10.4.1.10", 80, "TCP", s)        # in the masked except 10.4.1.8/30
    assert not allowed(A, "10.4.2.1", 80, "TCP", s)         # outside the /24
