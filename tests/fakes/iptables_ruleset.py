"""An in-memory model of iptables tables that applies restore text like the kernel would.

Used as the fake kernel of unit tests (kube-proxy's own tests do the same): it parses
`iptables-restore` payloads with `--noflush` semantics (`:CHAIN` creates or flushes,
`-A`/`-I`/`-X`, per-table atomic COMMIT), rejects jumps to missing chains and deletion
of referenced chains, and prints `iptables-save`-like text. `FakeRunner` plugs it into
the Proxier in place of `IptablesRunner`.
"""
from __future__ import annotations

import copy
import dataclasses
import shlex
from typing import Sequence

from emulator.errors import KernelError

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "MARK", "DNAT", "SNAT", "MASQUERADE", "LOG"}
FLAG_OPTIONS = {"--set", "--rcheck", "--update", "--remove", "--reap", "--rttl", "--random-fully",
                "--random", "--persistent"}


class RuleSyntaxError(ValueError):
    """A rule the model cannot parse."""


@dataclasses.dataclass(frozen=True)
class Match:
    """One match option: module, option, value ('' for flags), negated."""

    module: str
    option: str
    value: str
    negated: bool = False


@dataclasses.dataclass(frozen=True)
class Rule:
    """One parsed rule: its matches, target and target options."""

    chain: str
    spec: str
    matches: tuple[Match, ...]
    target: str = ""
    target_options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str | None:
        """Value of a target option (e.g. `--to-destination`), or None."""
        for key, value in self.target_options:
            if key == name:
                return value
        return None


def parse_rule(chain: str, spec: str) -> Rule:
    """Parse the part of a rule after `-A CHAIN`."""
    try:
        tokens = shlex.split(spec)
    except ValueError as exc:
        raise RuleSyntaxError(f"bad quoting in {spec!r}") from exc
    matches: list[Match] = []
    module = ""
    negated = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            negated = True
            i += 1
            continue
        if tok in ("-j", "--jump"):
            target = tokens[i + 1]
            opts = []
            j = i + 2
            while j < len(tokens):
                key = tokens[j]
                if key in FLAG_OPTIONS or j + 1 >= len(tokens) or tokens[j + 1].startswith("--"):
                    opts.append((key, ""))
                    j += 1
                else:
                    opts.append((key, tokens[j + 1]))
                    j += 2
            return Rule(chain, spec, tuple(matches), target, tuple(opts))
        if tok == "-m" or tok == "--match":
            module = tokens[i + 1]
            i += 2
            continue
        short = {"-s": "src", "--source": "src", "-d": "dst", "--destination": "dst",
                 "-p": "proto", "--protocol": "proto", "-i": "in", "-o": "out"}
        if tok in short:
            matches.append(Match("", short[tok], tokens[i + 1], negated))
            i += 2
        elif tok.startswith("--"):
            if tok in FLAG_OPTIONS:
                matches.append(Match(module, tok, "", negated))
                i += 1
            else:
                if i + 1 >= len(tokens):
                    raise RuleSyntaxError(f"option {tok} needs a value in {spec!r}")
                matches.append(Match(module, tok, tokens[i + 1], negated))
                i += 2
        else:
            raise RuleSyntaxError(f"unexpected {tok!r} in {spec!r}")
        negated = False
    return Rule(chain, spec, tuple(matches))


class RuleSet:
    """Tables of chains of rules, changed only by restore payloads."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[Rule]]] = {}
        self.restores: list[str] = []

    def table(self, name: str) -> dict[str, list[Rule]]:
        """A table, created with its built-in chains on first use."""
        if name not in self.tables:
            self.tables[name] = {c: [] for c in BUILTIN_CHAINS.get(name, ())}
        return self.tables[name]

    def chain(self, table: str, chain: str) -> list[Rule]:
        """The rules of a chain (KeyError when it does not exist)."""
        return self.tables[table][chain]

    def chains(self, table: str) -> set[str]:
        """Names of every chain of a table."""
        return set(self.table(table))

    def restore(self, text: str, noflush: bool = True) -> None:
        """Apply a payload; raise KernelError naming the failing line, changing nothing."""
        self.restores.append(text)
        staged: dict[str, dict[str, list[Rule]]] = {}
        work: dict[str, list[Rule]] | None = None
        name = ""
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if line.startswith("*"):
                    name = line[1:]
                    work = copy.copy(self.table(name))
                    work = {c: list(r) for c, r in work.items()}
                    if not noflush:
                        work = {c: [] for c in BUILTIN_CHAINS.get(name, ())}
                elif work is None:
                    raise RuleSyntaxError("rule outside of a table")
                elif line == "COMMIT":
                    staged[name] = work
                    work = None
                else:
                    self._apply(name, work, line)
            except (RuleSyntaxError, KeyError, IndexError, ValueError) as exc:
                raise KernelError(f"iptables-restore failed: line {number}: {line}", "fake-restore",
                                  f"line {number} failed: {exc}") from exc
        if work is not None:
            raise KernelError("iptables-restore failed: no COMMIT", "fake-restore", "missing COMMIT")
        self.tables.update(staged)

    def _apply(self, table: str, work: dict[str, list[Rule]], line: str) -> None:
        builtins = BUILTIN_CHAINS.get(table, ())
        if line.startswith(":"):
            chain = line[1:].split()[0]
            if chain not in builtins:
                work[chain] = []
            return
        parts = line.split(None, 2)
        op, chain = parts[0], parts[1]
        rest = parts[2] if len(parts) > 2 else ""
        if op in ("-A", "-I"):
            if chain not in work:
                raise RuleSyntaxError(f"chain {chain} does not exist")
            position = 0
            if op == "-I" and rest.split(None, 1)[0].isdigit():
                index, _, rest = rest.partition(" ")
                position = int(index) - 1
            rule = parse_rule(chain, rest)
            if rule.target and rule.target not in TARGETS and rule.target not in work:
                raise RuleSyntaxError(f"Couldn't load target `{rule.target}'")
            if op == "-A":
                work[chain].append(rule)
            else:
                work[chain].insert(position, rule)
        elif op in ("-N",):
            if chain in work:
                raise RuleSyntaxError(f"chain {chain} already exists")
            work[chain] = []
        elif op == "-F":
            work[chain] = []
        elif op == "-X":
            if chain in builtins or chain not in work:
                raise RuleSyntaxError(f"cannot delete chain {chain}")
            if work[chain]:
                raise RuleSyntaxError(f"chain {chain} is not empty")
            for other, rules in work.items():
                if any(r.target == chain for r in rules):
                    raise RuleSyntaxError(f"chain {chain} is referenced by {other}")
            del work[chain]
        else:
            raise RuleSyntaxError(f"unsupported command {op}")

    def save(self, tables: Sequence[str] = ("filter", "nat")) -> str:
        """`iptables-save`-like text (rules printed as they were given)."""
        out = []
        for table in tables:
            chains = self.table(table)
            out.append(f"*{table}")
            builtins = BUILTIN_CHAINS.get(table, ())
            for chain in chains:
                out.append(f":{chain} {'ACCEPT' if chain in builtins else '-'} [0:0]")
            for chain, rules in chains.items():
                out.extend(f"-A {chain} {r.spec}".rstrip() for r in rules)
            out.append("COMMIT")
        return "\n".join(out) + "\n"

    def delete_chain(self, table: str, chain: str) -> None:
        """Remove a chain outright (tests use it to play `iptables -F; -X`)."""
        self.table(table).pop(chain, None)


class FakeRunner:
    """A Runner over a RuleSet: what unit tests give the Proxier."""

    backend = "fake"

    def __init__(self, ruleset: RuleSet | None = None) -> None:
        self.ruleset = ruleset or RuleSet()
        self.fail_next = False
        self.conntrack_deletions: list[list[str]] = []   # filters of `conntrack -D`, in order

    def restore(self, text: str) -> None:
        """Apply the payload to the model (or fail once when `fail_next` is set)."""
        if self.fail_next:
            self.fail_next = False
            raise KernelError("iptables-restore failed: injected failure", "fake-restore", "line 1 failed")
        self.ruleset.restore(text)

    def save(self, tables: Sequence[str] = ("filter", "nat")) -> str:
        return self.ruleset.save(tables)

    def chain_exists(self, table: str, chain: str) -> bool:
        return chain in self.ruleset.table(table)

    def clear_conntrack(self, filters: Sequence[Sequence[str]]) -> None:
        """Record the `conntrack -D` filters (the fake kernel has no conntrack table)."""
        self.conntrack_deletions += [list(f) for f in filters]

    @property
    def last_restore(self) -> str:
        """The payload of the latest restore ("" before any)."""
        return self.ruleset.restores[-1] if self.ruleset.restores else ""
