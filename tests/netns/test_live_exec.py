"""`kubectl exec`/`logs` backends on a real pod namespace: pipes, a pty, the exit code, a followed log."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

import pytest

from emulator.live.podexec import ExecBackend, LogsBackend, PodNotFound
from emulator.naming import RunNames, new_run_id
from emulator.node import podexec
from emulator.node.sandbox import NOBODY, container_identity
from emulator.node.serviceaccount import pod_state_dir, remove_pod_serviceaccount
from emulator.runner.cleanup import state_dir
from tests.netns.fabric_helpers import leftovers, sh

pytestmark = pytest.mark.netns


@pytest.fixture
def pod():
    """A pod namespace and the sandbox its kubelet would record for its container."""
    names = RunNames(new_run_id())
    ns = names.pod_netns("default", "p")
    sh("ip", "netns", "add", ns)
    pod_dir = pod_state_dir(names.run_id, "default", "p")
    container = {"name": "c", "command": ["sleep", "inf"]}
    box = podexec.container_sandbox(container, container_identity({}, container), ns, "p", names.run_id)
    podexec.save_sandboxes(pod_dir, {"c": box})
    try:
        yield names
    finally:
        shutil.rmtree(state_dir(names.run_id), ignore_errors=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert leftovers(names.prefix) == []


async def _collect(it) -> bytes:
    return b"".join([c async for c in it])


def test_exec_with_pipes_passes_stdin_stdout_stderr_and_the_exit_code(pod):
    async def go():
        s = await ExecBackend(pod.run_id).exec("default", "p", None,
                                        ["sh", "-c", "read x; echo got:$x; ip -o link | wc -l; id -u; "
                                         "ls /root 2>/dev/null || echo no-root; echo oops >&2; exit 3"],
                                        tty=False, stdin=True)
        await s.write_stdin(b"hi\n")
        await s.close_stdin()
        out, err = await asyncio.gather(_collect(s.stdout()), _collect(s.stderr()))
        return out, err, await s.wait()
    out, err, rc = asyncio.run(go())
    # only lo: it ran in the pod's namespace, as the container's user, without the host's files
    assert out.split() == [b"got:hi", b"1", str(NOBODY).encode(), b"no-root"]
    assert err == b"oops\n" and rc == 3


def test_exec_with_a_tty_gives_the_command_a_terminal(pod):
    async def go():
        s = await ExecBackend(pod.run_id).exec("default", "p", None, ["sh", "-c", "tty; stty size"], tty=True, stdin=True)
        s.resize(100, 30)
        out = await _collect(s.read_stdout())
        return out, await s.wait()
    out, rc = asyncio.run(go())
    lines = out.decode().split()
    # a terminal (bubblewrap shows the caller's pty as /dev/console in the pod's own /dev)
    assert rc == 0 and (lines[0] == "/dev/console" or lines[0].startswith("/dev/pts/"))
    assert lines[1:] == ["30", "100"]


def test_exec_and_logs_of_a_missing_pod_say_so(pod, tmp_path):
    with pytest.raises(PodNotFound):
        asyncio.run(ExecBackend(pod.run_id).exec("default", "nope", None, ["true"], tty=False, stdin=False))
    with pytest.raises(PodNotFound):
        LogsBackend(pod.run_id, str(tmp_path)).read("default", "nope")


def test_logs_tail_and_follow_until_the_pod_goes(pod, tmp_path):
    d = tmp_path / "pods" / "default_p"
    d.mkdir(parents=True)
    log = d / "c.log"
    log.write_bytes(b"one\ntwo\nthree\n")

    async def go():
        it = LogsBackend(pod.run_id, str(tmp_path), poll=0.05).read("default", "p", None, True, 2, None)
        got = [await it.__anext__()]
        with open(log, "ab") as f:
            f.write(b"four\n")
        got.append(await it.__anext__())
        remove_pod_serviceaccount(pod.run_id, "default", "p")   # the kubelet stopped the pod
        got += [c async for c in it]      # ends once the pod is gone
        return got
    assert asyncio.run(go()) == [b"two\nthree\n", b"four\n"]
    assert os.path.exists(log)


def test_kill_stops_the_command_when_the_client_goes(pod):
    async def go():
        s = await ExecBackend(pod.run_id).exec("default", "p", None, ["sleep", "30"], tty=False, stdin=False)
        await s.kill()
        return await s.wait()
    assert asyncio.run(go()) == -9
