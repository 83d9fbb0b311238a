"""The rendered iptables chains and ipsets do what the evaluator says: traced with a tiny interpreter."""
import ipaddress
import shlex

import pytest

from emulator.naming import pod_veth_name
from emulator.netpol.evaluate import allowed
from emulator.netpol.model import state_from
from emulator.netpol.render import (FORWARD_CHAIN, HOOK, IpSet, hook_state, ipset_create_payload,
                                    ipset_destroy_payload, iptables_payload, render_node, saved_chains)
from netpol_gen import EXTERNAL, NODES, PORTS, world

pytestmark = pytest.mark.unit


def _in_set(s: IpSet, key: str) -> bool:
    """ipset semantics: hash:ip exact, hash:net most specific entry (nomatch excludes), hash:ip,port exact."""
    if s.type != "hash:net":
        return key in s.entries
    addr = ipaddress.ip_address(key.split(",")[0])
    best = None
    for e in s.entries:
        net, _, flag = e.partition(" ")
        n = ipaddress.ip_network(net)
        if addr in n and (best is None or n.prefixlen > best[0].prefixlen):
            best = (n, flag)
    return best is not None and best[1] != "nomatch"


class Filter:
    """Just enough of iptables to run our FORWARD chains on a NEW packet."""

    def __init__(self, rules) -> None:
        self.sets = rules.sets
        self.chains = {c: [shlex.split(r)[2:] for r in lines] for c, lines in rules.chains.items()}

    def _match(self, args: list[str], pkt: dict) -> str | None:
        i, target = 0, None
        while i < len(args):
            a = args[i]
            if a == "-j":
                target = args[i + 1]
                i += 2
            elif a in ("-s", "-d"):
                if ipaddress.ip_address(pkt[a]) not in ipaddress.ip_network(args[i + 1]):
                    return None
                i += 2
            elif a in ("-i", "-o"):
                if pkt[a] != args[i + 1]:
                    return None
                i += 2
            elif a == "-p":
                if pkt["proto"] != args[i + 1]:
                    return None
                i += 2
            elif a == "-m":
                i += 2
            elif a == "--dport":
                lo, _, hi = args[i + 1].partition(":")
                if not int(lo) <= pkt["dport"] <= int(hi or lo):
                    return None
                i += 2
            elif a == "--match-set":
                name, dirs = args[i + 1], args[i + 2]
                key = {"src": pkt["-s"], "dst": pkt["-d"], "dst,dst": f"{pkt['-d']},{pkt['proto']}:{pkt['dport']}"}[dirs]
                if not _in_set(self.sets[name], key):
                    return None
                i += 3
            elif a == "--ctstate":
                if "NEW" not in args[i + 1].split(","):
                    return None
                i += 2
            elif a == "--comment":
                i += 2
            else:
                raise AssertionError(f"interpreter does not know {a}")
        return target

    def verdict(self, chain: str, pkt: dict) -> str:
        """ACCEPT (fell through / RETURNed from the hook chain) or DROP."""
        for args in self.chains.get(chain, []):
            target = self._match(args, pkt)
            if target is None:
                continue
            if target == "DROP":
                return "DROP"
            if target == "RETURN":
                return "ACCEPT"
            if self.verdict(target, pkt) == "DROP":
                return "DROP"
        return "ACCEPT"


def _where(end, state):
    """(node or None, ip, interface on that node) of a pod or an external IP."""
    if isinstance(end, str):
        return None, end, "eth0"
    return end.node, end.ip, pod_veth_name(end.namespace, end.name)


def kernel_allows(src, dst, port, proto, filters, state) -> bool:
    """Trace the packet through the sender's node, then the receiver's node (one pass if the same)."""
    sn, sip, sif = _where(src, state)
    dn, dip, dif = _where(dst, state)
    base = {"-s": sip, "-d": dip, "proto": proto.lower(), "dport": port}
    hops = [(sn, sif, dif if sn == dn else "eth0")] if sn is not None else []
    if dn is not None and dn != sn:
        hops.append((dn, "eth0", dif))
    return all(filters[n].verdict(FORWARD_CHAIN, {**base, "-i": i, "-o": o}) == "ACCEPT" for n, i, o in hops)


@pytest.mark.parametrize("chunk", range(4))
def test_rendered_rules_enforce_what_the_evaluator_says(chunk: int) -> None:
    """160 random worlds: every pod/external pair on every port, traced through both nodes' rules."""
    for seed in range(chunk * 40, chunk * 40 + 40):
        state = state_from(*world(seed))
        filters = {n: Filter(render_node(state, n)) for n in NODES}
        ends = list(state.pods) + EXTERNAL
        for src in ends:
            for dst in ends:
                if isinstance(src, str) and isinstance(dst, str):
                    continue
                for port, proto in PORTS:
                    want = allowed(src, dst, port, proto, state)
                    got = kernel_allows(src, dst, port, proto, filters, state)
                    assert got == want, (seed, getattr(src, "key", src), getattr(dst, "key", dst), port, proto)


def _one_policy_state():
    pods = [{"metadata": {"name": "a", "namespace": "x", "labels": {"pod": "a"}},
             "spec": {"nodeName": "n1", "containers": []}, "status": {"podIP": "10.4.0.2"}},
            {"metadata": {"name": "b", "namespace": "x", "labels": {"pod": "b"}},
             "spec": {"nodeName": "n2", "containers": []}, "status": {"podIP": "10.4.1.2"}}]
    pol = {"metadata": {"name": "deny", "namespace": "x"},
           "spec": {"podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.4.1.0/24"]}}]}]}}
    return state_from(pods, [], [pol])


def test_only_local_pods_get_chains_and_the_payload_is_one_restore() -> None:
    state = _one_policy_state()
    veth = pod_veth_name("x", "a")
    rules = render_node(state, "n1")
    assert set(rules.chains) == {FORWARD_CHAIN, f"cali-tw-{veth}"}
    assert all(len(c) <= 28 for c in rules.chains)
    assert set(render_node(state, "n2").chains) == {FORWARD_CHAIN}
    text = iptables_payload(rules, ["cali-tw-vethdead0000"], "insert")
    assert text.startswith("*filter\n") and text.endswith("COMMIT\n")
    assert f"-I FORWARD 1 -j {FORWARD_CHAIN}" in text and "-X cali-tw-vethdead0000" in text
    assert f"-A {FORWARD_CHAIN} -o {veth} -j cali-tw-{veth}" in text
    [s] = rules.sets.values()
    assert s.entries == ("0.0.0.0/1", "10.4.1.0/24 nomatch", "128.0.0.0/1")     # /0 split for hash:net
    assert len(s.name) <= 31
    assert ipset_create_payload([s]).splitlines()[0] == f"create {s.name} hash:net family inet -exist"
    assert ipset_destroy_payload([s.name]) == f"destroy {s.name}\n"


def test_hook_state_and_saved_chains() -> None:
    first = f"*filter\n:FORWARD ACCEPT [0:0]\n:{FORWARD_CHAIN} - [0:0]\n:KUBE-FORWARD - [0:0]\n{HOOK}\n" \
            "-A FORWARD -j KUBE-FORWARD\nCOMMIT\n"
    second = first.replace(f"{HOOK}\n-A FORWARD -j KUBE-FORWARD", f"-A FORWARD -j KUBE-FORWARD\n{HOOK}")
    assert hook_state(first) == "" and hook_state(second) == "move"
    assert hook_state("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n") == "insert"
    assert saved_chains(first) == {FORWARD_CHAIN}
    assert "-D FORWARD -j cali-FORWARD" in iptables_payload(render_node(_one_policy_state(), "n1"), [], "move")
