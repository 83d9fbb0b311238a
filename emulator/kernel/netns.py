"""Network namespaces: create, name, delete, enter (pyroute2 `setns`), and start programs in one.

A socket belongs to the namespace it was created in, whatever the process does later,
so one process can serve many pods: enter the pod's namespace in the calling thread,
create the socket, and return to the original namespace (`setns` affects only the
calling thread).
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from typing import Iterator

from pyroute2.netns import setns

from emulator.kernel.command import run

NETNS_RUN_DIR = "/run/netns"


def netns_path(name_or_path: str) -> str:
    """`/run/netns/NAME` for a name; a path is returned unchanged."""
    return name_or_path if name_or_path.startswith("/") else os.path.join(NETNS_RUN_DIR, name_or_path)


@contextlib.contextmanager
def entered(name_or_path: str) -> Iterator[None]:
    """Run the body of the `with` in the given network namespace (this thread only)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(name_or_path), os.O_RDONLY)
    except OSError:
        os.close(own)
        raise
    try:
        setns(target, flags=0)
        try:
            yield
        finally:
            setns(own, flags=0)
    finally:
        os.close(target)
        os.close(own)


def socket_in(name_or_path: str, family: int = socket.AF_INET, type_: int = socket.SOCK_STREAM,
              bind: tuple[str, int] | None = None, listen: int | None = 128,
              reuse: bool = True) -> socket.socket:
    """A socket created (and bound, and listening for TCP) inside the namespace."""
    with entered(name_or_path):
        sock = socket.socket(family, type_)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if bind is not None:
            sock.bind(bind)
        if listen is not None and type_ == socket.SOCK_STREAM:
            sock.listen(listen)
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise


def ns_exec_prefix(name: str) -> list[str]:
    """Command prefix that runs a command in the named namespace (with its /etc/netns files)."""
    return ["ip", "netns", "exec", name]


def popen(name: str, argv: list[str], **kwargs) -> subprocess.Popen:
    """Start `argv` in the named namespace (`ip netns exec`: its /etc/netns files mounted)."""
    return subprocess.Popen([*ns_exec_prefix(name), *argv], **kwargs)


def run_in(name: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the named namespace and capture its text output (any exit code)."""
    return subprocess.run([*ns_exec_prefix(name), *argv], capture_output=True, text=True, timeout=timeout)


def add(name: str) -> None:
    """A new named namespace (`ip netns add`: the bind mount under /run/netns)."""
    run(["ip", "netns", "add", name])


def attach(name: str, pid: int) -> None:
    """Give the network namespace of process `pid` a name (bind mount in /run/netns)."""
    run(["ip", "netns", "attach", name, str(pid)])


def delete(name: str) -> None:
    """Remove a namespace's name (the namespace goes when nothing holds it); no error if gone."""
    run(["ip", "netns", "del", name], check=False)


def pids(name: str) -> list[int]:
    """The processes inside a named namespace, this one excepted (callers kill what it lists)."""
    out = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def names() -> list[str]:
    """Every named namespace on the machine."""
    try:
        return os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []


def mounted_inode(name: str) -> str | None:
    """`net:[inode]` of a named namespace whose name is mounted in this process's mount namespace;
    None for a name whose bind mount lives elsewhere (another mount namespace: another "VM")."""
    path = os.path.join(NETNS_RUN_DIR, name)
    try:
        st, nsfs = os.stat(path), os.stat("/proc/self/ns/net")
    except OSError:
        return None
    return f"net:[{st.st_ino}]" if st.st_dev == nsfs.st_dev else None
