"""Real HTTP health-check probes, sent from inside a network namespace (the prober host).

`probe_batch` opens one TCP connection per target from the given namespace, sends
`GET path HTTP/1.1` like Google's health checkers (`User-Agent: GoogleHC/1.0`), and
counts a probe as passed when the status line says 200 within the timeout. All probes of
a batch run concurrently on non-blocking sockets in the calling thread (no thread per
probe). The prober host's role object exposes it as a method (`ProberHost.http_probes`,
emulator/node/roles.py), which the cloud controller calls through the host's NodeAgent.

Answers late from load (emulator/lateness.py): with `late_cap`, a probe whose connection
was accepted early enough for two round trips to fit in the timeout waits up to `late_cap`
seconds for its answer and counts by its status, marked late; the caller reports late
answers as load. A node that is down, partitioned or impaired beyond the timeout never
connects in time and fails at the timeout, as before.
"""
from __future__ import annotations

import errno
import selectors
import socket
import time
from typing import Sequence

from emulator.gke import HC_USER_AGENT
from emulator.kernel.netns import entered
from emulator.lateness import may_answer_late

_MAX_STATUS_LINE = 4096


class _Probe:
    """One HTTP probe's connection and progress."""

    def __init__(self, sock: socket.socket, ip: str, port: int, path: str) -> None:
        self.sock = sock
        self.request = (f"GET {path or '/'} HTTP/1.1\r\nHost: {ip}:{port}\r\n"
                        f"User-Agent: {HC_USER_AGENT}\r\nConnection: close\r\n\r\n").encode()
        self.sent = 0
        self.buf = b""
        self.result: bool | None = None
        self.connected_s: float | None = None   # seconds from the start of the batch
        self.answered_s: float | None = None

    def on_writable(self) -> bool:
        """Connected (or failed) / more of the request sent; True when reading may start."""
        if self.sent == 0:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.result = False
                return False
        self.sent += self.sock.send(self.request[self.sent:])
        return self.sent >= len(self.request)

    def on_readable(self) -> None:
        chunk = self.sock.recv(_MAX_STATUS_LINE)
        if not chunk:
            self.result = self._status_ok()
            return
        self.buf += chunk
        if b"\r\n" in self.buf or len(self.buf) >= _MAX_STATUS_LINE:
            self.result = self._status_ok()

    def _status_ok(self) -> bool:
        line = self.buf.split(b"\r\n", 1)[0].split()
        return len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1] == b"200"


def probe_batch(netns: str | None, targets: Sequence[Sequence], timeout: float,
                late_cap: float | None = None) -> list[tuple[bool, bool]]:
    """HTTP GET each (ip, port, path) from namespace `netns` (None: this one): (passed, late) per
    target. Passed: a 200, in time or (with `late_cap`) late as the module docstring says;
    late: the answer came after `timeout`."""
    targets = [(str(t[0]), int(t[1]), str(t[2]) if len(t) > 2 else "/") for t in targets]
    if not targets:
        return []
    socks = _sockets(netns, len(targets))
    probes = [_Probe(s, ip, port, path) for s, (ip, port, path) in zip(socks, targets)]
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    in_time, deadline = start + timeout, start + max(timeout, late_cap or 0.0)
    cut = False   # the timeout has passed: only probes that connected early enough still wait
    try:
        for p, (ip, port, _) in zip(probes, targets):
            try:
                rc = p.sock.connect_ex((ip, port))
            except OSError:
                rc = errno.EHOSTUNREACH
            if rc not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                p.result = False
                continue
            sel.register(p.sock, selectors.EVENT_WRITE, p)
        pending = sum(1 for p in probes if p.result is None)
        while pending:
            now = time.monotonic()
            if not cut and now >= in_time:
                cut = True
                for p in probes:
                    if p.result is None and not may_answer_late(p.connected_s, timeout, late_cap):
                        p.result = False
                        sel.unregister(p.sock)
                        pending -= 1
                continue
            left = (in_time if not cut else deadline) - now
            if left <= 0:
                break
            for key, events in sel.select(left):
                p: _Probe = key.data
                try:
                    if events & selectors.EVENT_WRITE:
                        if p.sent == 0 and p.connected_s is None:
                            p.connected_s = time.monotonic() - start
                        if p.on_writable():
                            sel.modify(p.sock, selectors.EVENT_READ, p)
                    elif events & selectors.EVENT_READ:
                        p.on_readable()
                except OSError:
                    p.result = False
                if p.result is not None:
                    p.answered_s = time.monotonic() - start
                    sel.unregister(p.sock)
                    pending -= 1
    finally:
        sel.close()
        for p in probes:
            p.sock.close()
    return [(bool(p.result), p.answered_s is not None and p.answered_s > timeout and p.result is not None)
            for p in probes]


def _sockets(netns: str | None, n: int) -> list[socket.socket]:
    """`n` non-blocking TCP sockets created in `netns` (entered once for the whole batch)."""
    def make() -> list[socket.socket]:
        out = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            out.append(s)
        return out
    if netns is None:
        return make()
    with entered(netns):
        return make()
