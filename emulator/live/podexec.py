"""`kubectl exec` and `kubectl logs` of emulated pods: the API endpoint's exec and logs backends.

A pod is a network namespace on this machine: exec runs the command there, contained
as the pod's container is (`pod_exec_spec`: the sandbox its kubelet recorded), with pipes or a pty
(`-t`); logs read the pod's log file in the run directory, where the kubelet sends a
command container's output and the built-in netexec server writes one line per request.
"""
from __future__ import annotations

import asyncio
import datetime
import fcntl
import os
import struct
import subprocess
import termios
from dataclasses import replace
from typing import AsyncIterator

from emulator.errors import KubemuError
from emulator.naming import RunNames
from emulator.node.podexec import SANDBOXES_FILE, load_sandbox, popen_in_pod
from emulator.node.sandbox import SandboxError, SandboxSpec
from emulator.node.serviceaccount import pod_state_dir

CHUNK = 65536


class PodNotFound(KubemuError, LookupError):
    """No such pod is running in the run (on this machine)."""


def pod_exec_spec(names: RunNames, namespace: str, pod: str, container: str | None, argv: list[str],
                  tty: bool = False) -> SandboxSpec:
    """How `argv` runs in the pod: in its container's sandbox, as the kubelet runs the container
    (emulator/node/podexec.py); `tty` keeps kubemu's own pty as its controlling terminal."""
    try:
        spec = load_sandbox(pod_state_dir(names.run_id, namespace, pod), container, list(argv))
    except SandboxError as e:
        raise PodNotFound(f"pod {namespace}/{pod}: {e}") from e
    if tty:
        spec = replace(spec, tty=True, env=(*spec.env, ("TERM", os.environ.get("TERM", "xterm"))))
    return spec


def pod_running(names: RunNames, namespace: str, pod: str) -> bool:
    """The pod runs on this machine (its kubelet recorded its sandboxes)."""
    return os.path.exists(os.path.join(pod_state_dir(names.run_id, namespace, pod), SANDBOXES_FILE))


def pod_log_dir(run_dir: str, namespace: str, pod: str) -> str:
    """Where the kubelet writes a pod's container logs (`<container>.log`)."""
    return os.path.join(run_dir, "pods", f"{namespace}_{pod}")


def pod_log_path(run_dir: str, namespace: str, pod: str, container: str | None) -> str | None:
    """The container's log file; without a container, the pod's only (or first) one; None if none."""
    d = pod_log_dir(run_dir, namespace, pod)
    if container:
        return os.path.join(d, f"{container}.log")
    try:
        logs = sorted(f for f in os.listdir(d) if f.endswith(".log"))
    except FileNotFoundError:
        return None
    return os.path.join(d, logs[0]) if logs else None


class ExecSession:
    """One running command: stdin/stdout/stderr as async byte streams, its exit code.

    Both spellings of the streams are served: `stdout()`/`stderr()` (emulator.kubeapi's
    ExecSession protocol) and `read_stdout()`/`read_stderr()`."""

    def __init__(self, proc: subprocess.Popen, master: int | None) -> None:
        self.proc, self.master = proc, master
        self._out = master if master is not None else proc.stdout.fileno()
        self._in = master if master is not None else (proc.stdin.fileno() if proc.stdin else None)

    async def write_stdin(self, data: bytes) -> None:
        if self._in is not None and data:
            await asyncio.to_thread(os.write, self._in, data)

    async def close_stdin(self) -> None:
        """EOF for the command (once; later calls do nothing)."""
        if self._in is None:
            return
        if self.master is not None:
            await self.write_stdin(b"\x04")   # EOF at the terminal
        elif self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self._in = None

    async def read_stdout(self) -> AsyncIterator[bytes]:
        async for chunk in _read_fd(self._out):
            yield chunk

    async def read_stderr(self) -> AsyncIterator[bytes]:
        if self.master is None and self.proc.stderr is not None:
            async for chunk in _read_fd(self.proc.stderr.fileno()):
                yield chunk

    def stdout(self) -> AsyncIterator[bytes]:
        return self.read_stdout()

    def stderr(self) -> AsyncIterator[bytes]:
        return self.read_stderr()

    def resize(self, cols: int, rows: int) -> None:
        """The terminal's size (width, height), as the TIOCSWINSZ the command sees."""
        if self.master is not None and cols > 0 and rows > 0:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    async def wait(self) -> int:
        rc = await asyncio.to_thread(self.proc.wait)
        if self.master is not None:
            os.close(self.master)
            self.master = None
        return rc

    async def kill(self) -> None:
        """Stop the command and everything it started (the client went away)."""
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass


async def _read_fd(fd: int) -> AsyncIterator[bytes]:
    """Chunks from a pipe or pty until EOF (a pty reports EIO when the other side closed)."""
    while True:
        try:
            data = await asyncio.to_thread(os.read, fd, CHUNK)
        except OSError:
            return
        if not data:
            return
        yield data


class ExecBackend:
    """`exec(namespace, pod, container, argv, tty, stdin)` for the API endpoint."""

    def __init__(self, run_id: str) -> None:
        self.names = RunNames(run_id)

    async def exec(self, namespace: str, pod: str, container: str | None, argv: list[str],
                   tty: bool, stdin: bool) -> ExecSession:
        if not pod_running(self.names, namespace, pod):
            raise PodNotFound(f"pod {namespace}/{pod} is not running")
        if not argv:
            raise KubemuError("exec needs a command")
        spec = pod_exec_spec(self.names, namespace, pod, container, list(argv), tty)
        if tty:
            master, slave = os.openpty()
            try:
                proc = popen_in_pod(spec, stdin=slave, stdout=slave, stderr=slave,
                                    start_new_session=True, preexec_fn=_controlling_tty)
            finally:
                os.close(slave)
            return ExecSession(proc, master)
        proc = popen_in_pod(spec, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        return ExecSession(proc, None)


def _controlling_tty() -> None:
    """In the child (after setsid): make its stdin, the pty, the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class LogsBackend:
    """`read(namespace, pod, container, follow, tail_lines, since_seconds)` for the API endpoint."""

    def __init__(self, run_id: str, run_dir: str, poll: float = 0.2) -> None:
        self.names, self.run_dir, self.poll = RunNames(run_id), run_dir, poll

    def read(self, namespace: str, pod: str, container: str | None = None, follow: bool = False,
             tail_lines: int | None = None, since_seconds: int | None = None) -> AsyncIterator[bytes]:
        if not pod_running(self.names, namespace, pod) and not os.path.isdir(
                pod_log_dir(self.run_dir, namespace, pod)):
            raise PodNotFound(f"pod {namespace}/{pod} is not running")
        path = pod_log_path(self.run_dir, namespace, pod, container)
        return self._read(namespace, pod, path, follow, tail_lines, since_seconds)

    async def _read(self, namespace: str, pod: str, path: str | None, follow: bool,
                    tail_lines: int | None, since_seconds: int | None) -> AsyncIterator[bytes]:
        data = b""
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
        pos = len(data)
        lines = data.splitlines(keepends=True)
        if since_seconds is not None:
            lines = select_since(lines, datetime.datetime.now() - datetime.timedelta(seconds=since_seconds))
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines > 0 else []
        if lines:
            yield b"".join(lines)
        while follow and pod_running(self.names, namespace, pod):
            await asyncio.sleep(self.poll)
            if path is None:
                path = pod_log_path(self.run_dir, namespace, pod, None)
                continue
            try:
                with open(path, "rb") as f:
                    f.seek(pos)
                    more = f.read()
            except FileNotFoundError:
                continue
            if more:
                pos += len(more)
                yield more


def select_since(lines: list[bytes], cutoff: datetime.datetime) -> list[bytes]:
    """Lines from the first klog-stamped one (`I1204 15:23:46.123456 ...`) at or after `cutoff`."""
    for i, line in enumerate(lines):
        try:
            t = datetime.datetime.strptime(line[1:21].decode(), "%m%d %H:%M:%S.%f").replace(year=cutoff.year)
        except (ValueError, UnicodeDecodeError):
            continue
        if t >= cutoff:
            return lines[i:]
    return []
