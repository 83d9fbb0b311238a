"""One asyncio loop thread that serves the built-in servers of many pods.

A socket belongs to the namespace it was created in, so the node agent creates each
pod's listening sockets inside the pod's namespace (from the calling thread, with
`socket_in`) and this host serves them all from one background loop: real sockets in
real namespaces without a Python process per pod. Methods are thread-safe and may be
called from Ray actor methods; they must not be called from the loop thread itself.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, replace
from typing import Callable

from emulator.errors import KubemuError
from emulator.kernel.netns import socket_in
from emulator.workloads.agnhost import NetexecConfig
from emulator.workloads.netexec import NetexecServer


class WorkloadError(KubemuError):
    """A pod's built-in server could not be started (port in use, namespace gone...)."""

    def __init__(self, pod_ns: str | None, message: str) -> None:
        self.pod_ns = pod_ns
        super().__init__(f"{pod_ns or 'own namespace'}: {message}")


@dataclass(frozen=True)
class PodServerInfo:
    """What was started for one pod: bound ports (real numbers even when asked for 0)."""

    pod_ns: str | None
    pod_name: str
    http_port: int | None
    udp_ports: tuple[int, ...]


class WorkloadHost:
    """Owns the loop thread and every pod's NetexecServer; `close()` stops them all."""

    def __init__(self, name: str = "kubemu-workloads", call_timeout: float = 10.0) -> None:
        self.call_timeout = call_timeout
        self._loop = asyncio.new_event_loop()
        self._servers: dict[str | None, list[NetexecServer]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop serving every pod (other servers of the node may share it)."""
        return self._loop

    def call(self, coro) -> object:
        """Run a coroutine on the loop from another thread and wait for its result."""
        return self._call(coro)

    def _call(self, coro, cancel_late: bool = False) -> object:
        """Run a coroutine on the loop and wait for its result; past `call_timeout`, a
        TimeoutError (the coroutine cancelled when `cancel_late`, else left to finish)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("WorkloadHost methods must not be called from its own loop thread")
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("WorkloadHost is closed")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(self.call_timeout)
        except TimeoutError:
            if cancel_late:
                fut.cancel()
            raise TimeoutError(f"the node's event loop did not answer within {self.call_timeout:g}s") from None

    def add_pod_server(self, pod_ns: str | None, pod_name: str, node_name: str,
                       config: NetexecConfig, bind_ip: str = "0.0.0.0",
                       family: int = socket.AF_INET, log_path: str | None = None,
                       on_exit: Callable[[int], None] | None = None) -> PodServerInfo | None:
        """Create the pod's sockets in its namespace and start serving; None for `pause`.

        `pod_ns=None` means this process's own namespace (tests on loopback); `log_path`:
        the pod's log file, one line per request. A porter gets one server per port;
        `on_exit(code)` runs when the server exits (/exit).
        """
        if not config.serves:
            return None
        if config.porter:
            infos = [self.add_pod_server(pod_ns, pod_name, node_name, replace(
                config, porter=(), http_port=port, fixed_body=body), bind_ip, family,
                log_path=log_path, on_exit=on_exit)
                for port, body in config.porter]
            return PodServerInfo(pod_ns, pod_name, infos[0].http_port if infos[0] else None, ())
        socks: list[socket.socket] = []
        try:
            tcp_sock = None
            if config.tcp_port is not None:
                tcp_sock = self._socket(pod_ns, family, socket.SOCK_STREAM, (bind_ip, config.tcp_port))
                socks.append(tcp_sock)
            http_sock = None
            if config.http_port is not None:
                http_sock = self._socket(pod_ns, family, socket.SOCK_STREAM, (bind_ip, config.http_port))
                socks.append(http_sock)
            udp_socks = []
            if config.udp_port is not None:
                for addr in config.udp_listen_addresses or (bind_ip,):
                    udp_family = socket.AF_INET6 if ":" in addr else family
                    udp_socks.append(self._socket(pod_ns, udp_family, socket.SOCK_DGRAM,
                                                  (addr, config.udp_port)))
                    socks.append(udp_socks[-1])
        except OSError as exc:
            for sock in socks:
                sock.close()
            raise WorkloadError(pod_ns, f"cannot create sockets for {pod_name}: {exc}") from exc
        server = NetexecServer(pod_name, node_name, http_sock, udp_socks, config, tcp_sock=tcp_sock,
                               pod_ns=pod_ns, on_exit=on_exit, log_path=log_path)
        try:
            self._call(server.start(), cancel_late=True)   # not serving later, unseen, on bound ports
        except BaseException as exc:
            self._discard(server)    # its sockets closed: a retry can bind the same ports
            if isinstance(exc, OSError):
                raise WorkloadError(pod_ns, f"cannot start server for {pod_name}: {exc}") from exc
            raise
        with self._lock:
            self._servers.setdefault(pod_ns, []).append(server)
        return PodServerInfo(pod_ns, pod_name, server.http_port, tuple(server.udp_ports))

    def _discard(self, server: NetexecServer) -> None:
        """Stop a server that failed to start, on the loop, without waiting for it."""
        if not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(server.stop(), self._loop)

    @staticmethod
    def _socket(pod_ns: str | None, family: int, type_: int, bind: tuple[str, int]) -> socket.socket:
        """A bound (and, for TCP, listening) non-blocking socket in the pod's namespace."""
        if pod_ns is not None:
            return socket_in(pod_ns, family, type_, bind=bind, listen=1024)
        sock = socket.socket(family, type_)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(bind)
            if type_ == socket.SOCK_STREAM:
                sock.listen(1024)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def remove_pod_server(self, pod_ns: str | None) -> bool:
        """Stop every server of the pod and close its sockets; False if it had none."""
        with self._lock:
            servers = self._servers.pop(pod_ns, [])
        for server in servers:
            self._call(server.stop())
        return bool(servers)

    def begin_pod_termination(self, pod_ns: str | None) -> float:
        """SIGTERM to the pod's servers: each starts failing /readyz and keeps serving for its
        --delay-shutdown; returns the longest such delay (0: stop it now)."""
        with self._lock:
            servers = list(self._servers.get(pod_ns, []))
        for server in servers:
            server.terminating = True
        return max((float(s.config.delay_shutdown) for s in servers), default=0.0)

    def pods(self) -> list[str | None]:
        """Namespaces of the pods currently served."""
        with self._lock:
            return list(self._servers)

    def close(self) -> None:
        """Stop all servers and the loop thread."""
        if self._loop.is_closed():
            return
        for pod_ns in self.pods():
            try:
                self.remove_pod_server(pod_ns)
            except Exception:  # noqa: BLE001 - keep closing the others
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> "WorkloadHost":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
