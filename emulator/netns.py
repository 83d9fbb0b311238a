"""Network-namespace helpers: enter a namespace in one thread, create sockets in it.

A socket belongs to the namespace it was created in, whatever the process does later,
so one process can serve many pods: enter the pod's namespace in the calling thread,
create the socket, and return to the original namespace (`setns` affects only the
calling thread).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from typing import Iterator

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name_or_path: str) -> str:
    """`/run/netns/NAME` for a name; a path is returned unchanged."""
    return name_or_path if name_or_path.startswith("/") else os.path.join(NETNS_RUN_DIR, name_or_path)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name_or_path: str) -> Iterator[None]:
    """Run the body of the `with` in the given network namespace (this thread only)."""
    own = os.open(f"/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns_path(name_or_path), os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
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
