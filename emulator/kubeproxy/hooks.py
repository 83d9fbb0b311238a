"""The jump rules from built-in chains into kube-proxy's chains, added only when missing.

kube-proxy ensures these with `iptables -C`/`-I` outside its restore. Here a full sync
reads the tables once (`iptables-save`), and the restore inserts (`-I CHAIN 1`) only
the jumps that are absent, so repeated `--noflush` restores never duplicate them and
never flush a built-in chain that other components (CNI, kubelet) also use.
"""
from __future__ import annotations

import dataclasses
import re

from emulator.kubeproxy import names as n

NEW = "-m conntrack --ctstate NEW"


@dataclasses.dataclass(frozen=True)
class Jump:
    """One jump rule from a built-in chain to a kube-proxy chain."""

    table: str
    src: str
    dst: str
    comment: str = ""
    extra: str = ""

    def spec(self) -> str:
        """Match and target part of the rule, in kube-proxy's argument order."""
        parts = [self.extra] if self.extra else []
        if self.comment:
            parts.append(f'-m comment --comment "{self.comment}"')
        parts.append(f"-j {self.dst}")
        return " ".join(parts)

    def insert_line(self) -> str:
        """`-I SRC 1 ...`: prepend, as kube-proxy's EnsureRule(Prepend) does."""
        return f"-I {self.src} 1 {self.spec()}"

    def present_in(self, rules: list[str]) -> bool:
        """True when a saved rule of the source chain already jumps like this one."""
        prefix = f"-A {self.src} "
        target = re.compile(rf"(^|\s)-j {re.escape(self.dst)}(\s|$)")
        for line in rules:
            if not line.startswith(prefix) or not target.search(line):
                continue
            if self.comment and f'"{self.comment}"' not in line and f" {self.comment} " not in line:
                continue
            return True
        return False


# Order matters: each is prepended in turn, as kube-proxy does (iptablesJumpChains).
JUMPS: tuple[Jump, ...] = (
    Jump("filter", "INPUT", n.KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", NEW),
    Jump("filter", "FORWARD", n.KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", NEW),
    Jump("filter", "INPUT", n.KUBE_NODEPORTS, "kubernetes health check service ports"),
    Jump("filter", "FORWARD", n.KUBE_SERVICES, "kubernetes service portals", NEW),
    Jump("filter", "OUTPUT", n.KUBE_SERVICES, "kubernetes service portals", NEW),
    Jump("filter", "FORWARD", n.KUBE_FORWARD, "kubernetes forwarding rules"),
    Jump("filter", "INPUT", n.KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", NEW),
    Jump("filter", "OUTPUT", n.KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", NEW),
    Jump("filter", "FORWARD", n.KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", NEW),
    Jump("nat", "OUTPUT", n.KUBE_SERVICES, "kubernetes service portals"),
    Jump("nat", "PREROUTING", n.KUBE_SERVICES, "kubernetes service portals"),
    Jump("nat", "POSTROUTING", n.KUBE_POSTROUTING, "kubernetes postrouting rules"),
)
# kubelet's firewall chain, which kube-proxy also ensures (iptablesKubeletJumpChains).
KUBELET_JUMPS: tuple[Jump, ...] = (
    Jump("filter", "INPUT", n.KUBE_FIREWALL),
    Jump("filter", "OUTPUT", n.KUBE_FIREWALL),
)


def parse_save(text: str) -> dict[str, tuple[set[str], list[str]]]:
    """`iptables-save` text -> {table: (chain names, rule lines)}."""
    tables: dict[str, tuple[set[str], list[str]]] = {}
    chains: set[str] = set()
    rules: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            chains, rules = set(), []
            tables[line[1:]] = (chains, rules)
        elif line.startswith(":"):
            chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            rules.append(line)
    return tables


def missing_jumps(saved: dict[str, tuple[set[str], list[str]]], jumps: tuple[Jump, ...]) -> list[Jump]:
    """The jumps absent from the saved tables, in the order they must be inserted."""
    return [j for j in jumps if not j.present_in(saved.get(j.table, (set(), []))[1])]
