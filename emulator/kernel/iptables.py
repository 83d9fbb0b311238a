"""iptables of one namespace: iptables-restore / iptables-save / conntrack -D, and the backend.

kube-proxy's and the NetworkPolicy enforcer's only kernel adapter. One `restore` is one
`iptables-restore --noflush --counters` process fed on stdin. The backend is chosen
explicitly: `legacy` (x_tables, ~50x faster at 10k Services), `nft` (nf_tables), or
`auto` = legacy when `iptables-legacy-restore` is installed.

Every emulated node is its own machine, so each has its own xtables lock file
(`XTABLES_LOCKFILE`, honoured by the iptables tools): nodes never wait on each other's
restores at the host's one /run/xtables.lock, and the tools of one node still do. Such a
runner waits for its lock without a limit (`-w`, bounded by the command's timeout): with
`-w N` the tools arm `alarm(N)` when they take the lock and never cancel it, so a restore
still reading its input N seconds later (a busy machine) has its read interrupted and
fails with "COMMIT expected".

A namespace's runner starts its tools from a thread that entered the namespace (the child
inherits it), not through `ip netns exec`: the tools need no /etc/netns files, and the
mount namespace `ip netns exec` makes and tears down per call took the host-wide mount
lock and an expedited RCU grace period each time, which a hundred nodes' syncs queued on.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from typing import Sequence

from emulator.errors import KernelError, PrerequisiteError
from emulator.kernel.netns import entered, ns_exec_prefix

BACKENDS = ("legacy", "nft")
NO_FLOW_DELETED = "0 flow entries have been deleted"   # conntrack -D matched nothing (exit 1)
_LINE_RE = re.compile(r"line:? (\d+)")
LOCK_ENV = "XTABLES_LOCKFILE"


def node_lock_file(state_dir: str, netns: str) -> str:
    """The xtables lock file of the node (or host) whose namespace is `netns`, in the run's state dir."""
    return os.path.join(state_dir, "xtables", f"{netns}.lock")


def choose_backend(backend: str = "auto") -> str:
    """Resolve `auto` to `legacy` when iptables-legacy-restore exists, else `nft`."""
    if backend == "auto":
        return "legacy" if shutil.which("iptables-legacy-restore") else "nft"
    if backend not in BACKENDS:
        raise ValueError(f"iptables backend must be auto, legacy or nft, not {backend!r}")
    return backend


def backend_in_use(netns: str) -> str:
    """The backend a running node's kube-proxy writes: `legacy` when its legacy nat table has KUBE- chains."""
    proc = subprocess.run([*ns_exec_prefix(netns), "iptables-legacy-save", "-t", "nat"],
                          capture_output=True, text=True)
    return "legacy" if "KUBE-" in proc.stdout else "nft"


def failing_line(text: str, output: str) -> str:
    """The payload line iptables-restore complained about, with its number, or ""."""
    match = _LINE_RE.search(output)
    if not match:
        return ""
    number = int(match.group(1))
    lines = text.splitlines()
    if 1 <= number <= len(lines):
        return f"line {number}: {lines[number - 1]}"
    return f"line {number}"


class IptablesRunner:
    """Runs the iptables tools of one backend in a namespace (`netns`, entered by the calling
    thread) or with a command prefix (`ns_exec`)."""

    def __init__(self, ns_exec: Sequence[str], backend: str = "auto", wait_seconds: int | None = 5,
                 timeout: float = 300.0, lock_file: str | None = None, netns: str | None = None) -> None:
        self.ns_exec = list(ns_exec)
        self.netns = netns
        self.backend = choose_backend(backend)
        self.wait_seconds = wait_seconds
        self.timeout = timeout
        self.lock_file = lock_file   # None: the host's /run/xtables.lock
        self.env = None if lock_file is None else {**os.environ, LOCK_ENV: lock_file}
        if lock_file is not None:
            os.makedirs(os.path.dirname(lock_file), exist_ok=True)
        for tool in (self._tool("restore"), self._tool("save"), self._tool("")):
            if shutil.which(tool) is None:
                raise PrerequisiteError(f"{tool} not found (iptables backend {self.backend})")

    @classmethod
    def in_netns(cls, netns: str, backend: str = "auto", lock_file: str | None = None) -> "IptablesRunner":
        """The runner of the named namespace; with its own xtables lock file, it waits for it
        without a limit (see the module docstring)."""
        return cls([], backend=backend, lock_file=lock_file, wait_seconds=5 if lock_file is None else None,
                   netns=netns)

    def _wait(self) -> list[str]:
        """`-w N`, or `-w` (no limit, no alarm) when wait_seconds is None."""
        return ["-w"] if self.wait_seconds is None else ["-w", str(self.wait_seconds)]

    def _tool(self, kind: str) -> str:
        return f"iptables-{self.backend}" + (f"-{kind}" if kind else "")

    def _run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            with entered(self.netns) if self.netns else contextlib.nullcontext():
                return subprocess.run(self.ns_exec + argv, input=stdin, capture_output=True, text=True,
                                      timeout=self.timeout, check=False, env=self.env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KernelError(f"{argv[0]} could not run", " ".join(argv), str(exc)) from exc

    def restore(self, text: str) -> None:
        """Apply a payload in one `iptables-restore --noflush --counters` run."""
        argv = [self._tool("restore"), "--noflush", "--counters", *self._wait()]
        proc = self._run(argv, stdin=text)
        if proc.returncode != 0:
            output = (proc.stderr or "") + (proc.stdout or "")
            where = failing_line(text, output)
            raise KernelError(f"iptables-restore failed{': ' + where if where else ''}",
                              " ".join(argv), output)

    def save(self, tables: Sequence[str] = ("filter", "nat")) -> str:
        """`iptables-save` of the given tables, concatenated (no tables: one save of them all)."""
        parts = []
        for table in tables or (None,):
            argv = [self._tool("save"), *(["-t", table] if table else [])]
            proc = self._run(argv)
            if proc.returncode != 0:
                raise KernelError("iptables-save failed", " ".join(argv), proc.stderr)
            parts.append(proc.stdout)
        return "".join(parts)

    def chain_exists(self, table: str, chain: str) -> bool:
        """True when the chain exists (how the canary is watched)."""
        argv = [self._tool(""), *self._wait(), "-t", table, "-S", chain, "1"]
        proc = self._run(argv)
        if proc.returncode == 0:
            return True
        if proc.returncode == 1:          # 4 would be a resource problem (lock, modules)
            return False
        raise KernelError(f"cannot check chain {chain} in table {table}", " ".join(argv), proc.stderr)

    def clear_conntrack(self, filters: Sequence[Sequence[str]]) -> None:
        """`conntrack -D FILTER...` for each filter (stale UDP flows); none matching is fine."""
        if filters and shutil.which("conntrack") is None:
            raise KernelError("conntrack not found: stale UDP flows cannot be cleared", "conntrack -D", "")
        errors = []
        for f in filters:
            argv = ["conntrack", "-D", *f]
            proc = self._run(argv)
            if proc.returncode != 0 and NO_FLOW_DELETED not in (proc.stderr or ""):
                errors.append(f"{' '.join(argv)}: {(proc.stderr or '').strip()}")
        if errors:
            raise KernelError("conntrack -D failed", errors[0], "\n".join(errors))
