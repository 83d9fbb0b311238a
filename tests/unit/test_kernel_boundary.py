"""Only emulator/kernel/ touches the kernel: no other module of emulator/ or controllers/
imports pyroute2, mininet or ctypes (setns by hand), or runs a kernel tool (ip, iptables*,
ipset, tc, conntrack, ethtool, sysctl, ovs-*, ovsdb-*, nsenter...) as a program."""
from __future__ import annotations

import ast
import os

import pytest

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCANNED = ("emulator", "controllers")
KERNEL_LAYER = "emulator/kernel/"
FORBIDDEN_IMPORTS = {"pyroute2": "netlink belongs to emulator/kernel/",
                     "mininet": "Mininet hosts belong to emulator/kernel/host.py",
                     "ctypes": "namespace entry (setns) belongs to emulator/kernel/netns.py"}
KERNEL_TOOLS = {"ip", "ipset", "tc", "conntrack", "ethtool", "sysctl", "nsenter", "modprobe", "mnexec", "bridge"}
KERNEL_TOOL_PREFIXES = ("iptables", "ip6tables", "ovs-", "ovsdb-")
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput",
                    "system", "popen", "create_subprocess_exec", "create_subprocess_shell",
                    "execv", "execvp", "execve", "execvpe", "spawnv", "spawnvp"}
# Workload execution, not kernel configuration: the pod sandbox enters the pod's network
# namespace with nsenter before dropping privileges (setpriv) and confining (bwrap).
ALLOWED = {("emulator/node/sandbox.py", "nsenter")}


def is_kernel_tool(word: str) -> bool:
    """True for the name (or path) of a program that configures the kernel."""
    name = os.path.basename(word.split()[0]) if word.strip() else ""
    return name in KERNEL_TOOLS or name.startswith(KERNEL_TOOL_PREFIXES)


def _first_word(node: ast.AST) -> str | None:
    """The program a list/tuple argv literal (or a shell string) starts with, if it is a constant."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        first = node.elts[0]
        return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def violations(rel: str, source: str) -> list[tuple[str, int, str, str]]:
    """(file, line, tool or module, why) for every kernel access in one module outside the layer."""
    if rel.startswith(KERNEL_LAYER):
        return []
    out = []
    for node in ast.walk(ast.parse(source, rel)):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module]
        else:
            mods = []
        for mod in mods:
            top = mod.split(".")[0]
            if top in FORBIDDEN_IMPORTS:
                out.append((rel, node.lineno, top, f"imports {mod}: {FORBIDDEN_IMPORTS[top]}"))
        if isinstance(node, ast.List):
            word = _first_word(node)
            if word is not None and is_kernel_tool(word):
                out.append((rel, node.lineno, os.path.basename(word), "an argv list runs a kernel tool"))
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            word = _first_word(node.args[0])
            if name in SUBPROCESS_CALLS and not isinstance(node.args[0], ast.List) and word is not None \
                    and is_kernel_tool(word):
                out.append((rel, node.lineno, os.path.basename(word.split()[0]), f"{name}() runs a kernel tool"))
    return [v for v in out if (v[0], v[2]) not in ALLOWED]


def scan() -> list[tuple[str, int, str, str]]:
    """Every violation in emulator/ and controllers/."""
    found = []
    for top in SCANNED:
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    with open(path) as fh:
                        found += violations(os.path.relpath(path, ROOT), fh.read())
    return found


def test_no_module_outside_the_kernel_layer_touches_the_kernel() -> None:
    """The boundary holds: no module outside emulator/kernel/ touches the kernel."""
    bad = scan()
    assert not bad, "kernel access outside emulator/kernel/:\n" + "\n".join(
        f"{f}:{line}: {why} ({what})" for f, line, what, why in bad)


@pytest.mark.parametrize("source,what", [
    ("import subprocess\nsubprocess.run(['ip', 'link', 'show'])\n", "ip"),
    ("import subprocess\nargv = ['/usr/sbin/iptables-legacy-save', '-t', 'nat']\n", "iptables-legacy-save"),
    ("import subprocess\nsubprocess.Popen(('ovs-vsctl', 'show'))\n", "ovs-vsctl"),
    ("import subprocess\nsubprocess.check_output('tc qdisc show', shell=True)\n", "tc"),
    ("import os\nos.system('conntrack -F')\n", "conntrack"),
    ("from pyroute2 import IPRoute\n", "pyroute2"),
    ("import mininet.node\n", "mininet"),
    ("import ctypes\n", "ctypes"),
    ("import subprocess\nsubprocess.run(['nsenter', '--net=/run/netns/x', 'sysctl', '-a'])\n", "nsenter"),
])
def test_the_scan_catches_kernel_access(source: str, what: str) -> None:
    """Each kind of kernel access is reported with its file and line."""
    found = violations("emulator/somewhere.py", source)
    assert [(f, what_) for f, _line, what_, _why in found] == [("emulator/somewhere.py", what)]
    assert found[0][1] == source.count("\n")


def test_the_scan_leaves_the_kernel_layer_and_traffic_tools_alone() -> None:
    """Inside emulator/kernel/ anything goes; ping, iperf3 and dig are traffic tools, not kernel."""
    assert violations("emulator/kernel/links.py", "import pyroute2\nimport subprocess\n"
                      "subprocess.run(['ip', 'link'])\n") == []
    assert violations("emulator/traffic/x.py", "import subprocess\nsubprocess.run(['ping', '-c1', 'x'])\n"
                      "subprocess.run(['iperf3', '-c', 'x'])\nsubprocess.run(['dig', 'x'])\n") == []
    assert violations("emulator/runner/x.py", "TOOLS = ('ip', 'mnexec')\n") == []
