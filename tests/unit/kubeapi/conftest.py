"""A KubeApiEndpoint over HTTPS on loopback in front of a local ApiServer (no Ray, no cluster),
with exec and logs backends that run commands on this host."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from typing import AsyncIterator

import pytest

from emulator.api.server import ApiServer
from emulator.kubeapi.endpoint import KubeApiEndpoint

KUBECTL = "/usr/bin/kubectl" if os.path.exists("/usr/bin/kubectl") else shutil.which("kubectl")


class ProcessSession:
    """A local process standing in for a container's command."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def write_stdin(self, data: bytes) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    async def _read(self, stream: asyncio.StreamReader | None) -> AsyncIterator[bytes]:
        while stream is not None:
            data = await stream.read(65536)
            if not data:
                return
            yield data

    def stdout(self) -> AsyncIterator[bytes]:
        return self._read(self.proc.stdout)

    def stderr(self) -> AsyncIterator[bytes]:
        return self._read(self.proc.stderr)

    def resize(self, width: int, height: int) -> None:
        self.resized = (width, height)

    async def wait(self) -> int:
        return await self.proc.wait()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


class LocalExec:
    """Runs the argv on this host; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def exec(self, namespace, pod, container, argv, tty, stdin):
        self.calls.append((namespace, pod, container, list(argv), tty, stdin))
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return ProcessSession(proc)


class LocalLogs:
    """Serves fixed lines per pod; `follow` then waits for `more` lines until `done`."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}
        self.more: asyncio.Queue | None = None

    async def read(self, namespace, pod, container, follow, tail_lines, since_seconds):
        lines = self.lines.get(f"{namespace}/{pod}", [])
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines else []
        for line in lines:
            yield (line + "\n").encode()
        if follow and self.more is not None:
            while (line := await self.more.get()) is not None:
                yield (line + "\n").encode()


@pytest.fixture
def endpoint(tmp_path):
    """A started endpoint with namespaces default and kube-system; stopped after the test."""
    api = ApiServer("10.96.0.0/16")
    ep = KubeApiEndpoint(api, run_id="t1", state_dir=str(tmp_path / "state"),
                         exec_backend=LocalExec(), logs_backend=LocalLogs())
    ep.start()
    ep.local_api = api

    async def seed():
        for n in ("default", "kube-system"):
            await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}})
    ep.run = lambda coro: asyncio.run_coroutine_threadsafe(coro, ep._loop).result(30)
    ep.run(seed())
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(ep.kubeconfig("kubemu-t1")))
    ep.kubeconfig_path = str(kubeconfig)
    yield ep
    ep.stop()


@pytest.fixture
def kubectl(endpoint):
    """Run the real kubectl against the endpoint: kubectl("get", "ns") -> CompletedProcess (stderr shown on failure)."""
    if KUBECTL is None:
        pytest.skip("needs kubectl (scripts/setup.sh installs kubernetes-client)")

    def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run([KUBECTL, "--kubeconfig", endpoint.kubeconfig_path, *args], input=stdin,
                           capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {p.returncode}\nstdout: {p.stdout}\n"
                                 f"stderr: {p.stderr}")
        return p
    return run
