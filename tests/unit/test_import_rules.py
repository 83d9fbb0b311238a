"""Every import in emulator/ and controllers/ follows docs/architecture.md's table; no import cycles.

Imports are read with `ast` (module level and inside functions), mapped to the package
they belong to (the longest key of ALLOWED that prefixes the module, after MAPPED), and
checked against ALLOWED. A failure names file:line of each offending import.
"""
from __future__ import annotations

import ast
import functools
import pathlib
import sys
from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.unit

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ("emulator", "controllers")

# Low level: every package may import these; they import only each other (no cycles).
BASE = {"emulator.errors", "emulator.naming", "emulator.paths", "emulator.gke", "emulator.labels",
        "emulator.logs", "emulator.boundedsync", "emulator.records", "emulator.lateness"}
KERNEL = {"emulator.kernel"} | BASE
CORE = {"emulator.config", "emulator.api", "emulator.control", "emulator.kubeapi"} | KERNEL
NODE_PARTS = {"emulator.kubeproxy", "emulator.netpol", "emulator.impair", "emulator.workloads",
              "emulator.traffic"}
BELOW_RUNNER = ({"emulator.node", "emulator.cloud", "emulator.fabric", "emulator.report", "controllers"}
                | NODE_PARTS | CORE)

# package -> the packages it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    **{m: BASE for m in BASE},
    "emulator.kernel": BASE,
    "controllers": BASE,
    "emulator.config": BASE,
    "emulator.api": {"emulator.config"} | KERNEL,
    "emulator.control": {"emulator.api", "emulator.config"} | KERNEL,
    "emulator.kubeapi": {"emulator.api", "emulator.config"} | KERNEL,
    "emulator.kubeproxy": KERNEL,
    "emulator.traffic": KERNEL,
    "emulator.workloads": KERNEL,
    "emulator.impair": {"emulator.config"} | KERNEL,
    "emulator.netpol": {"emulator.api"} | KERNEL,
    "emulator.cloud": {"emulator.api", "emulator.control"} | KERNEL,
    "emulator.fabric": {"controllers"} | KERNEL,
    "emulator.node": NODE_PARTS | CORE,
    "emulator.report": {"emulator.config"} | BASE,
    "emulator.runner": BELOW_RUNNER | {"emulator.runner.steps"},
    "emulator.runner.steps": BELOW_RUNNER | {"emulator.runner"},
    "emulator.live": BELOW_RUNNER | {"emulator.runner", "emulator.runner.steps"},
    "emulator.cli": BELOW_RUNNER | {"emulator.runner", "emulator.runner.steps", "emulator.live"},
    "emulator": set(),
}
# Modules that belong to another package than their folder says.
MAPPED = {
    "emulator.live.commands": "emulator.cli",       # the CLI's live-run commands (click)
}
# Modules whose function-local imports need no comment: a CLI command imports what it needs
# when it runs, so `kubemu --help` and `kubemu check` stay fast and never load Ray.
LATE_IMPORTS_BY_DESIGN = {"emulator.cli", "emulator.live.commands"}
# Which modules touch the kernel (pyroute2, mininet, ctypes, or running `ip`, iptables, tc,
# ovs-*...) is checked once, by tests/unit/test_kernel_boundary.py.


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is, and whether it sits inside a function."""

    source: str          # importing module
    target: str          # imported module (resolved as far as a module of ours exists)
    where: str           # path:line
    local: bool


def module_name(path: pathlib.Path) -> str:
    """emulator/node/agent.py -> emulator.node.agent (a package's __init__ -> the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def all_modules() -> dict[str, pathlib.Path]:
    """Every module of ours by dotted name."""
    return {module_name(p): p for src in SOURCES for p in sorted((ROOT / src).rglob("*.py"))}


@functools.cache
def _parsed(path: pathlib.Path) -> tuple[list[str], ast.Module]:
    """A module's lines and syntax tree (each file is read once per session)."""
    text = path.read_text()
    return text.splitlines(), ast.parse(text, str(path))


def imports_of(path: pathlib.Path, known: set[str], source: str | None = None) -> list[Import]:
    """Every import statement in `path` (module `source`), function-local ones included."""
    tree = _parsed(path)[1]
    source = source or module_name(path)
    local_ids = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            # `from emulator import paths` imports the module emulator.paths
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in dict.fromkeys(targets):
            found.append(Import(source, t, f"{rel}:{node.lineno}", id(node) in local_ids))
    return found


def package_of(module: str) -> str | None:
    """The package (a key of ALLOWED) `module` belongs to; None for a third-party module."""
    for m, pkg in MAPPED.items():
        if module == m or module.startswith(m + "."):
            return pkg
    keys = [k for k in ALLOWED if module == k or module.startswith(k + ".")]
    if keys:
        return max(keys, key=len)
    if module.split(".")[0] in SOURCES:
        return module          # unknown package of ours: it must be added to the table
    return None


def top_of(pkg: str) -> str:
    """The top-level package for the cycle check (emulator.runner.steps -> emulator.runner)."""
    parts = pkg.split(".")
    return ".".join(parts[:2]) if parts[0] == "emulator" else parts[0]


def violations(imports: list[Import]) -> list[str]:
    """One line per import that ALLOWED does not allow."""
    out = []
    for imp in imports:
        src, dst = package_of(imp.source), package_of(imp.target)
        if src not in ALLOWED:
            out.append(f"{imp.where}: package {src} is not in the table (tests/unit/test_import_rules.py "
                       f"ALLOWED, docs/architecture.md)")
            continue
        if dst is None or dst == src:
            continue
        if dst not in ALLOWED[src]:
            kind = "function-local import" if imp.local else "import"
            out.append(f"{imp.where}: {kind} of {imp.target} ({dst}) from {src}, which may import only "
                       f"{', '.join(sorted(ALLOWED[src])) or 'nothing of ours'}")
    return out


def package_cycles(imports: list[Import]) -> list[str]:
    """Every cycle of the top-level package graph, each with one import per edge."""
    edges: dict[str, dict[str, str]] = {}
    for imp in imports:
        src, dst = package_of(imp.source), package_of(imp.target)
        if dst is None or src is None or top_of(src) == top_of(dst):
            continue
        edges.setdefault(top_of(src), {}).setdefault(top_of(dst), imp.where)
    cycles, seen = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in edges.get(node, {}):
            if nxt in path:
                loop = path[path.index(nxt):] + [nxt]
                key = frozenset(loop)
                if key not in seen:
                    seen.add(key)
                    cycles.append(" -> ".join(f"{a} ({edges[a][b]})" for a, b in zip(loop, loop[1:]))
                                  + f" -> {nxt}")
            elif len(path) < 12:
                visit(nxt, path + [nxt])

    for start in sorted(edges):
        visit(start, [start])
    return cycles


def module_cycles(imports: list[Import], modules: set[str]) -> list[str]:
    """Cycles among modules through module-level imports (a late import is how one is broken)."""
    edges: dict[str, dict[str, str]] = {}
    for imp in imports:
        if not imp.local and imp.target in modules and imp.target != imp.source:
            edges.setdefault(imp.source, {}).setdefault(imp.target, imp.where)
    state: dict[str, int] = {}          # 1 on the current path, 2 done
    path: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt, where in edges.get(node, {}).items():
            if state.get(nxt) == 1:
                loop = path[path.index(nxt):] + [nxt]
                cycles.append(" -> ".join(f"{a} ({edges[a][b]})" for a, b in zip(loop, loop[1:])) + f" -> {nxt}")
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start)
    return cycles


def unexplained_local_imports(path: pathlib.Path) -> list[str]:
    """Function-local imports with no comment on their line or above their run of import lines."""
    if module_name(path) in LATE_IMPORTS_BY_DESIGN:
        return []
    lines = _parsed(path)[0]
    out = []
    for imp in imports_of(path, set()):
        if not imp.local:
            continue
        n = int(imp.where.rsplit(":", 1)[1]) - 1
        if "#" in lines[n]:
            continue
        above = n - 1
        while above >= 0 and lines[above].lstrip().startswith(("import ", "from ")):
            above -= 1
        if above < 0 or not lines[above].lstrip().startswith("#"):
            out.append(f"{imp.where}: function-local import of {imp.target} without a comment saying why "
                       f"(a cycle it breaks, or a heavy or optional import it defers)")
    return out


@functools.cache
def _all_imports() -> list[Import]:
    known = set(all_modules())
    return [imp for p in all_modules().values() for imp in imports_of(p, known)]


def test_every_import_follows_the_table():
    bad = violations(_all_imports())
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)


def test_no_import_cycle_between_packages():
    cycles = package_cycles(_all_imports())
    assert not cycles, "package import cycles:\n" + "\n".join(cycles)


def test_no_import_cycle_between_modules():
    cycles = module_cycles(_all_imports(), set(all_modules()))
    assert not cycles, "module import cycles (module level):\n" + "\n".join(cycles)


def test_function_local_imports_say_why():
    bad = [line for p in all_modules().values() for line in unexplained_local_imports(p)]
    assert not bad, "move these imports to the top of the module or say why they are late:\n" + "\n".join(bad)


def test_the_checks_catch_a_back_edge_and_a_cycle():
    """A made-up back-edge (api -> node) is reported with its place, and with node -> api it is a cycle."""
    back = Import("emulator.api.client", "emulator.node.agent", "emulator/api/client.py:7", False)
    forth = Import("emulator.node.agent", "emulator.api.client", "emulator/node/agent.py:9", True)
    assert violations([back]) == [
        "emulator/api/client.py:7: import of emulator.node.agent (emulator.node) from emulator.api, which may "
        "import only " + ", ".join(sorted(ALLOWED["emulator.api"]))]
    assert violations([forth]) == []
    assert package_cycles([back, forth]) == [
        "emulator.api (emulator/api/client.py:7) -> emulator.node (emulator/node/agent.py:9) -> emulator.api"]
    mods = {"emulator.api.client", "emulator.node.agent"}
    assert module_cycles([back, forth], mods) == []           # the way back is a late import
    forth_top = Import("emulator.node.agent", "emulator.api.client", "emulator/node/agent.py:9", False)
    assert module_cycles([back, forth_top], mods) == [
        "emulator.api.client (emulator/api/client.py:7) -> emulator.node.agent (emulator/node/agent.py:9)"
        " -> emulator.api.client"]


def test_imports_are_read_inside_functions_and_resolved(tmp_path):
    """Function-local and `from emulator import x` imports are both seen."""
    mod = ROOT / "emulator" / "api" / "client.py"
    found = imports_of(mod, set(all_modules()))
    assert any(i.target == "emulator.api.apilink" and not i.local for i in found)
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from emulator import kernel\n")
    (imp,) = imports_of(path, set(all_modules()), "emulator.api.probe")
    assert (imp.target, imp.local, imp.where) == ("emulator.kernel", True, "probe.py:2")
    assert package_of(imp.target) == "emulator.kernel"


def test_a_late_import_without_a_reason_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "late.py"
    path.write_text("def f():\n    import json\n\n\ndef g():\n    # scipy takes a second\n"
                    "    import scipy\n    import numpy\n\n\ndef h():\n    import ray  # only in actors\n")
    monkeypatch.setattr(sys.modules[__name__], "module_name", lambda p: "emulator.late")
    assert unexplained_local_imports(path) == [
        "late.py:2: function-local import of json without a comment saying why (a cycle it breaks, "
        "or a heavy or optional import it defers)"]
