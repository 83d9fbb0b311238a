"""Pure rendering of one node's NetworkPolicy rules: iptables chains and ipsets.

Calico style: `cali-FORWARD` (hooked first in FORWARD) lets replies of allowed
connections through, then sends traffic leaving a local pod's veth to its
`cali-fw-<veth>` chain (egress) and traffic entering one to `cali-tw-<veth>`
(ingress). A pod chain RETURNs what some rule allows and DROPs the rest; pods no
policy selects have no chain. Peers are ipsets named after their content (a change
makes a new set, so updates never show a half-filled set).
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from emulator.naming import pod_veth_name
from emulator.netpol.evaluate import port_number, selects
from emulator.netpol.model import Peer, PodInfo, Policy, PolicyPort, PolicyState, Rule
from emulator.labels import label_selector_matches

FORWARD_CHAIN = "cali-FORWARD"
HOOK = f"-A FORWARD -j {FORWARD_CHAIN}"
CHAIN_PREFIXES = ("cali-",)
SET_PREFIX = "cali-s-"
_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass(frozen=True)
class IpSet:
    """An ipset: `hash:ip` (pod IPs), `hash:net` (ipBlocks; excepts as nomatch) or `hash:ip,port`."""

    type: str
    entries: tuple[str, ...]

    @property
    def name(self) -> str:
        """Named after the content: equal sets share one, a change is a new set."""
        digest = hashlib.sha1(f"{self.type}|{'|'.join(self.entries)}".encode()).hexdigest()[:16]
        return SET_PREFIX + digest


@dataclass
class NodeRules:
    """What one node needs: chain name -> rules (in order), and the sets they use."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, IpSet] = field(default_factory=dict)

    def use(self, s: IpSet) -> str:
        """Register a set; returns its name."""
        self.sets[s.name] = s
        return s.name


def pod_chain(direction: str, pod: PodInfo) -> str:
    """`cali-tw-<veth>` (to workload: ingress) or `cali-fw-<veth>` (from workload: egress)."""
    return f"cali-{'tw' if direction == 'ingress' else 'fw'}-{pod_veth_name(pod.namespace, pod.name)}"


def _block_set(peer: Peer) -> IpSet:
    """hash:net of an ipBlock: the cidr (split when /0, which hash:net cannot hold) and nomatch excepts."""
    net = ipaddress.ip_network(peer.cidr)
    nets = list(net.subnets(new_prefix=1)) if net.prefixlen == 0 else [net]
    entries = [str(n) for n in nets] + [f"{e} nomatch" for e in peer.except_]
    return IpSet("hash:net", tuple(sorted(entries)))


def _peer_pods(peer: Peer, policy_ns: str, state: PolicyState) -> list[PodInfo]:
    """Pods (with an IP) a selector peer picks."""
    out = []
    for pod in state.pods:
        if pod.ip is None:
            continue
        if peer.namespace_selector is None:
            ns_ok = pod.namespace == policy_ns
        else:
            ns_ok = label_selector_matches(peer.namespace_selector, state.namespace_labels(pod.namespace))
        if ns_ok and (peer.pod_selector is None or label_selector_matches(peer.pod_selector, pod.labels)):
            out.append(pod)
    return out


def _peer_matches(rule: Rule, policy: Policy, state: PolicyState, rules: NodeRules, side: str) -> list[str]:
    """iptables matches, one per peer ("" for any address); `side` is `src` or `dst`."""
    if not rule.peers:
        return [""]
    out = []
    for peer in rule.peers:
        if peer.cidr is not None:
            s = _block_set(peer)
        else:
            s = IpSet("hash:ip", tuple(sorted({p.ip for p in _peer_pods(peer, policy.namespace, state)})))
        out.append(f"-m set --match-set {rules.use(s)} {side}")
    return out


def _port_matches(entry: PolicyPort, direction: str, pod: PodInfo, state: PolicyState,
                  rules: NodeRules) -> list[str]:
    """iptables matches for one ports entry (none when a named port resolves nowhere)."""
    proto = _PROTO[entry.protocol]
    if isinstance(entry.port, str):
        if direction == "ingress":   # the destination is the local pod
            span = port_number(entry, pod)
            return [] if span is None else [f"-p {proto} -m {proto} --dport {span[0]}"]
        entries = sorted({f"{p.ip},{proto}:{p.named_ports[(entry.port, entry.protocol)]}" for p in state.pods
                          if p.ip and (entry.port, entry.protocol) in p.named_ports})
        return [f"-p {proto} -m set --match-set {rules.use(IpSet('hash:ip,port', tuple(entries)))} dst,dst"]
    span = port_number(entry, pod)
    if entry.port is None or span is None:
        return [f"-p {proto}"]
    ports = str(span[0]) if span[0] == span[1] else f"{span[0]}:{span[1]}"
    return [f"-p {proto} -m {proto} --dport {ports}"]


def _pod_chain_rules(pod: PodInfo, direction: str, policies: list[Policy], state: PolicyState,
                     rules: NodeRules) -> list[str]:
    """The rules of one pod's chain for one direction."""
    chain = pod_chain(direction, pod)
    side = "src" if direction == "ingress" else "dst"
    out = [f"-A {chain} -{side[0]} {pod.ip}/32 -m comment --comment \"{pod.key} itself\" -j RETURN"]
    for policy in policies:
        for i, rule in enumerate(getattr(policy, direction)):
            peers = _peer_matches(rule, policy, state, rules, side)
            ports = [m for q in rule.ports for m in _port_matches(q, direction, pod, state, rules)] \
                if rule.ports else [""]
            comment = f"-m comment --comment \"{policy.key} {direction}[{i}]\""
            out += [" ".join(x for x in (f"-A {chain}", peer, port, comment, "-j RETURN") if x)
                    for peer in peers for port in ports]
    out.append(f"-A {chain} -m comment --comment \"{pod.key} default deny {direction}\" -j DROP")
    return out


def render_node(state: PolicyState, node: str) -> NodeRules:
    """The chains and sets of `node`: checks for the pods running there."""
    rules = NodeRules()
    forward = [f"-A {FORWARD_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    for pod in state.pods:
        if pod.node != node or pod.ip is None:
            continue
        veth = pod_veth_name(pod.namespace, pod.name)
        for direction, flag in (("egress", "-i"), ("ingress", "-o")):
            policies = [p for p in state.policies if getattr(p, direction) is not None and selects(p, pod)]
            if not policies:
                continue
            chain = pod_chain(direction, pod)
            rules.chains[chain] = _pod_chain_rules(pod, direction, policies, state, rules)
            forward.append(f"-A {FORWARD_CHAIN} {flag} {veth} -j {chain}")
    rules.chains[FORWARD_CHAIN] = forward
    return rules


def iptables_payload(rules: NodeRules, stale_chains: list[str], hook: str) -> str:
    """`iptables-restore --noflush` text: our chains rewritten, stale ones deleted, the hook fixed.

    `hook` is "" (in place), "insert" (absent) or "move" (present but not first)."""
    chains = sorted(rules.chains) + sorted(stale_chains)
    out = ["*filter", *(f":{c} - [0:0]" for c in chains)]
    if hook == "move":
        out.append(f"-D FORWARD -j {FORWARD_CHAIN}")
    if hook in ("insert", "move"):
        out.append(f"-I FORWARD 1 -j {FORWARD_CHAIN}")
    for c in sorted(rules.chains):
        out += rules.chains[c]
    out += [f"-X {c}" for c in sorted(stale_chains)]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def ipset_create_payload(sets: list[IpSet]) -> str:
    """`ipset restore` text creating and filling new sets."""
    out = []
    for s in sets:
        out.append(f"create {s.name} {s.type} family inet -exist")
        out += [f"add {s.name} {e} -exist" for e in s.entries]
    return "\n".join(out) + ("\n" if out else "")


def ipset_destroy_payload(names: list[str]) -> str:
    """`ipset restore` text destroying sets no rule uses any more."""
    return "".join(f"destroy {n}\n" for n in names)


def hook_state(saved_filter: str) -> str:
    """From `iptables-save -t filter`: "" when our jump is FORWARD's first rule, else insert/move."""
    forward = [ln.strip() for ln in saved_filter.splitlines() if ln.startswith("-A FORWARD ")]
    if forward and forward[0] == HOOK:
        return ""
    return "move" if HOOK in forward else "insert"


def saved_chains(saved_filter: str) -> set[str]:
    """Our chains present in `iptables-save -t filter` output."""
    return {ln[1:].split()[0] for ln in saved_filter.splitlines()
            if ln.startswith(":") and ln[1:].startswith(CHAIN_PREFIXES)}

