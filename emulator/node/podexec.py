"""Run a pod's processes contained (the adapter of sandbox.py): long-running or one-shot.

`start_in_pod` starts a container's command with its output in a log file opened here,
outside the sandbox; `exec_in_pod` runs one command to completion (exec probes, and the
entry point for a later `kubectl exec`). Both refuse to run anything uncontained when
bubblewrap is missing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
from typing import Iterator

from emulator.kernel.netns import netns_path
from emulator.paths import ETC_NETNS
from emulator.node.sandbox import (ETC_SECRET_DIRS, ETC_SECRET_FILES, SYSTEM_DIRS, ExecResult,
                                   HostLayout, Identity, SandboxError, SandboxSpec, container_env,
                                   sandboxed_argv)
from emulator.workloads.agnhost import WorkloadArgsError, parse_connect_args
from emulator.workloads.connect import connect


OUTER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def host_layout() -> HostLayout:
    """The host's system directories (or usr-merge symlinks) and the /etc secrets it has."""
    system = []
    for p in SYSTEM_DIRS:
        if os.path.islink(p):
            system.append((p, os.readlink(p)))
        elif os.path.isdir(p):
            system.append((p, None))
    return HostLayout(tuple(system),
                      tuple(f for f in ETC_SECRET_FILES if os.path.isfile(f) and not os.path.islink(f)),
                      tuple(d for d in ETC_SECRET_DIRS if os.path.isdir(d) and not os.path.islink(d)))


def container_sandbox(container: dict, who: Identity, netns: str, pod_name: str,
                      run_id: str | None, host_network: bool = False, etc_dir: str | None = None,
                      extra_env: dict[str, str] | None = None,
                      data_files: tuple[tuple[str, str], ...] = ()) -> SandboxSpec:
    """The sandbox a container's command (and its exec probes and execs) runs in: the pod's
    /etc/netns/<netns> resolv.conf and hosts over the host's; for a hostNetwork pod, the
    files of `etc_dir` (the kubelet's resolv.conf for its dnsPolicy), if any."""
    etc = etc_dir or os.path.join(ETC_NETNS, netns)
    # Bound where the host's file really is: /etc/resolv.conf may be a symlink into /run.
    etc_files = () if host_network and etc_dir is None else tuple(
        (os.path.join(etc, f), os.path.realpath(f"/etc/{f}")) for f in ("resolv.conf", "hosts")
        if os.path.isfile(os.path.join(etc, f)))
    argv = tuple(str(a) for a in list(container.get("command") or []) + list(container.get("args") or []))
    return SandboxSpec(netns_path=netns_path(netns), argv=argv, hostname=pod_name, uid=who.uid,
                       gid=who.gid, etc_files=etc_files, data_files=data_files,
                       env=container_env(container, pod_name, run_id, extra_env),
                       cwd=container.get("workingDir") or "/")


def bwrap_path() -> str:
    """bubblewrap's path; SandboxError when it is not installed (never run uncontained)."""
    path = shutil.which("bwrap", path=OUTER_PATH)
    if path is None:
        raise SandboxError("bubblewrap (bwrap) is not installed: kubemu runs pod commands only "
                           "inside a sandbox (scripts/setup.sh installs it)")
    return path


def argv_for(spec: SandboxSpec, fds: tuple[int, ...] = ()) -> list[str]:
    """The full command line for `spec` on this host (`fds`: its data files, opened)."""
    return sandboxed_argv(spec, host_layout(), bwrap_path(), fds)


@contextlib.contextmanager
def _data_fds(spec: SandboxSpec) -> Iterator[tuple[int, ...]]:
    """The sandbox's data files opened read-only here (as root), closed once bwrap has them."""
    fds: list[int] = []
    try:
        for src, _ in spec.data_files:
            fds.append(os.open(src, os.O_RDONLY))
        yield tuple(fds)
    finally:
        for fd in fds:
            os.close(fd)


def _outer_env(spec: SandboxSpec) -> dict[str, str]:
    """nsenter/setpriv/bwrap's own environment: a PATH and the run id, nothing of kubemu's."""
    env = {"PATH": OUTER_PATH}
    run_id = dict(spec.env).get("KUBEMU_RUN_ID")
    if run_id:
        env["KUBEMU_RUN_ID"] = run_id
    return env


SANDBOXES_FILE = "sandboxes.json"


def save_sandboxes(pod_dir: str, sandboxes: dict[str, SandboxSpec]) -> None:
    """Record a pod's container sandboxes (0600) so `kubectl exec`/`kubemu exec` run as they do."""
    os.makedirs(pod_dir, mode=0o700, exist_ok=True)
    path = os.path.join(pod_dir, SANDBOXES_FILE)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump({name: dataclasses.asdict(s) for name, s in sandboxes.items()}, f)


def load_sandbox(pod_dir: str, container: str | None, argv: list[str]) -> SandboxSpec:
    """The sandbox of a pod's container (its first one by default) running `argv` instead;
    SandboxError when the pod has none recorded here (not running on this machine)."""
    try:
        with open(os.path.join(pod_dir, SANDBOXES_FILE)) as f:
            recorded = json.load(f)
    except (OSError, ValueError) as e:
        raise SandboxError(f"no running pod here ({e.__class__.__name__})") from e
    if not recorded:
        raise SandboxError("the pod has no containers")
    name = container or next(iter(recorded))
    if name not in recorded:
        raise SandboxError(f"container {name!r} not found (the pod has {', '.join(recorded)})")
    d = recorded[name]
    tup = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v)
           for k, v in d.items() if isinstance(v, list)}
    return SandboxSpec(**{**d, **tup, "argv": tuple(argv)})


def popen_in_pod(spec: SandboxSpec, **kwargs) -> subprocess.Popen:
    """Start `spec` contained (Popen keyword arguments for its stdio); the caller waits for it."""
    with _data_fds(spec) as fds:
        return subprocess.Popen(argv_for(spec, fds), env=_outer_env(spec), cwd="/", pass_fds=fds, **kwargs)


def start_in_pod(spec: SandboxSpec, log_path: str) -> subprocess.Popen:
    """Start `spec` in its own process group, stdout and stderr appended to `log_path`."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    out = open(log_path, "ab")
    try:
        with _data_fds(spec) as fds:
            return subprocess.Popen(argv_for(spec, fds), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=_outer_env(spec), cwd="/", pass_fds=fds)
    finally:
        out.close()


def exec_in_pod(spec: SandboxSpec, stdin: bytes | None = None, timeout: float = 30.0) -> ExecResult:
    """Run `spec` to completion; its exit code, stdout and stderr (code -1 on timeout).
    `agnhost connect` runs built in (emulator/workloads/connect.py), in the pod's namespace."""
    if len(spec.argv) > 1 and os.path.basename(spec.argv[0]) == "agnhost" and spec.argv[1] == "connect":
        return agnhost_connect(spec, timeout)
    try:
        with _data_fds(spec) as fds:
            res = subprocess.run(argv_for(spec, fds), input=stdin if stdin is not None else b"",
                                 capture_output=True, timeout=timeout, env=_outer_env(spec),
                                 cwd="/", start_new_session=True, pass_fds=fds)
    except subprocess.TimeoutExpired as e:
        return ExecResult(-1, e.stdout or b"", e.stderr or b"", timed_out=True)
    return ExecResult(res.returncode, res.stdout, res.stderr)


def agnhost_connect(spec: SandboxSpec, timeout: float) -> ExecResult:
    """`agnhost connect HOST:PORT ...` built in: exit code and stderr as upstream's."""
    try:
        cfg = parse_connect_args(list(spec.argv))
    except WorkloadArgsError as e:
        return ExecResult(1, b"", f"UNKNOWN: {e}\n".encode())
    resolv = next((src for src, dst in spec.etc_files if dst.endswith("resolv.conf")), None)
    code, err = connect(cfg, spec.netns_path, resolv, cap=timeout)
    return ExecResult(code, b"", err.encode())
