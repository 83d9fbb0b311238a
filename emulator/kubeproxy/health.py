"""kube-proxy's health-check HTTP servers: per-Service healthCheckNodePort and /healthz.

For each Service with externalTrafficPolicy Local, a server on its healthCheckNodePort
answers any path with 200 when this node has local ready endpoints (503 otherwise),
the JSON body kube-proxy writes and `X-Load-Balancing-Endpoint-Weight`. Port 10256
serves `/healthz` and `/livez`. Sockets come from `make_socket(port)` so the node agent
can create them inside the node's namespace.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import socket
from typing import Callable

from aiohttp import web

from emulator.gke import HEALTHZ_PORT
from emulator.kubeproxy.model import NamespacedName
from emulator.kubeproxy.proxier import Proxier, SyncResult

log = logging.getLogger(__name__)
_JSON_HEADERS = {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"}


def go_time(ts: float | None) -> str:
    """A Unix time printed like Go's time.Time.String() in UTC."""
    if ts is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    dt = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return dt.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " +0000 UTC"


def service_health_body(namespace: str, name: str, count: int, healthy: bool) -> str:
    """The body kube-proxy's service health handler prints (tab-indented JSON)."""
    return (f'{{\n\t"service": {{\n\t\t"namespace": "{namespace}",\n\t\t"name": "{name}"\n\t}},\n'
            f'\t"localEndpoints": {count},\n\t"serviceProxyHealthy": {str(healthy).lower()}\n}}')


class _Listener:
    """One aiohttp server on one socket."""

    def __init__(self, runner: web.ServerRunner, site: web.SockSite) -> None:
        self.runner, self.site = runner, site

    @classmethod
    async def open(cls, handler: Callable[[web.BaseRequest], object], sock: socket.socket) -> "_Listener":
        runner = web.ServerRunner(web.Server(handler, access_log=None), handle_signals=False,  # type: ignore[arg-type]
                                  shutdown_timeout=1.0)
        await runner.setup()
        site = web.SockSite(runner, sock)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        return cls(runner, site)

    async def close(self) -> None:
        await self.runner.cleanup()


class HealthServer:
    """The node's kube-proxy health servers, kept in step with the Proxier's Services."""

    def __init__(self, loop: asyncio.AbstractEventLoop, make_socket: Callable[[int], socket.socket],
                 proxier: Proxier, healthz_port: int = HEALTHZ_PORT) -> None:
        self.loop = loop
        self.make_socket = make_socket
        self.proxier = proxier
        self.healthz_port = healthz_port
        self._healthz: _Listener | None = None
        self._services: dict[NamespacedName, tuple[int, _Listener]] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        proxier.add_sync_listener(self._after_sync)

    @property
    def service_ports(self) -> dict[NamespacedName, int]:
        """Health-check node ports currently served."""
        return {svc: port for svc, (port, _) in self._services.items()}

    async def start(self) -> None:
        """Serve /healthz and /livez, then the per-Service servers known so far."""
        if self._healthz is None:
            self._healthz = await _Listener.open(self._handle_healthz, self.make_socket(self.healthz_port))
        await self.update()

    async def update(self) -> None:
        """Open servers for new healthCheckNodePorts and close those no longer wanted."""
        async with self._lock:
            if self._closed:
                return
            wanted = self.proxier.health_check_node_ports()
            for svc, (port, listener) in list(self._services.items()):
                if wanted.get(svc) != port:
                    del self._services[svc]
                    await listener.close()
            for svc, port in wanted.items():
                if svc in self._services:
                    continue
                try:
                    listener = await _Listener.open(self._service_handler(svc), self.make_socket(port))
                except OSError as exc:
                    log.error("health check port %d for %s/%s: %s", port, svc[0], svc[1], exc)
                    continue
                self._services[svc] = (port, listener)

    def request_update(self) -> None:
        """Thread-safe: schedule `update()` on the loop."""
        if not self._closed:
            self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self.update()))

    def _after_sync(self, result: SyncResult) -> None:
        self.request_update()

    async def stop(self) -> None:
        """Close every listening socket."""
        async with self._lock:
            self._closed = True
            for _, listener in self._services.values():
                await listener.close()
            self._services.clear()
            if self._healthz is not None:
                await self._healthz.close()
                self._healthz = None

    def _service_handler(self, svc: NamespacedName) -> Callable[[web.BaseRequest], object]:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            count = self.proxier.local_ready_endpoints().get(svc, 0)
            healthy = self.proxier.health().healthy
            status = 200 if count and healthy else 503
            headers = dict(_JSON_HEADERS)
            headers["X-Load-Balancing-Endpoint-Weight"] = str(count)
            return web.Response(status=status, headers=headers,
                                body=service_health_body(svc[0], svc[1], count, healthy).encode())
        return handle

    async def _handle_healthz(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path not in ("/healthz", "/livez"):
            return web.Response(status=404, body=b"404 page not found\n",
                                headers={"Content-Type": "text/plain; charset=utf-8",
                                         "X-Content-Type-Options": "nosniff"})
        h = self.proxier.health()
        healthy = h.healthy and (h.node_eligible or request.path == "/livez")
        last = h.current_time if healthy else h.last_updated
        body = f'{{"lastUpdated": "{go_time(last)}","currentTime": "{go_time(h.current_time)}"'
        body += f', "nodeEligible": {str(h.node_eligible).lower()}}}' if request.path == "/healthz" else "}"
        return web.Response(status=200 if healthy else 503, headers=dict(_JSON_HEADERS), body=body.encode())
