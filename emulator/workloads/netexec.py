"""A server compatible with agnhost `netexec`, serving one pod from sockets made in its namespace.

The node agent creates each pod's listening sockets inside the pod's network namespace
(`emulator.kernel.netns.socket_in`) and hands them here; every pod's server then runs on one
shared asyncio loop (see `WorkloadHost`). Behaviour follows agnhost netexec: HTTP `/`,
`/hostname`, `/hostName`, `/clientip`, `/echo`, `/header`, `/healthz`, `/readyz`, `/redirect`,
`/dial`, `/exit`, `/shutdown`; any other path answers like `/` (Go's ServeMux). UDP answers `hostname`, `echo X`, `clientip`, and
kubemu's own `kubemu` (a JSON object with pod, node and client). Every HTTP response
also carries `X-Kubemu-Pod`, `X-Kubemu-Node`, `X-Kubemu-Client-Ip` and
`X-Kubemu-Client-Port`, so a load generator learns who answered and which client
address the pod saw without extra requests.
"""
from __future__ import annotations

import asyncio
import datetime
import json
import os
import socket
from typing import Callable, Mapping, Sequence

from aiohttp import web
from yarl import URL

from emulator.workloads import dial
from emulator.workloads.agnhost import NetexecConfig, WorkloadArgsError, go_duration, parse_netexec_args

__all__ = ["NetexecServer", "NetexecConfig", "WorkloadArgsError", "parse_netexec_args",
           "format_hostport", "HDR_POD", "HDR_NODE", "HDR_CLIENT_IP", "HDR_CLIENT_PORT"]

HDR_POD = "X-Kubemu-Pod"
HDR_NODE = "X-Kubemu-Node"
HDR_CLIENT_IP = "X-Kubemu-Client-Ip"
HDR_CLIENT_PORT = "X-Kubemu-Client-Port"
_NOT_SUPPORTED = ("/shell", "/upload")


def klog_line(msg: str, now: datetime.datetime | None = None) -> str:
    """`I1204 15:23:46.123456       1 netexec.go] MSG` and a newline (klog's header)."""
    now = now or datetime.datetime.now()
    return f"I{now:%m%d %H:%M:%S.%f}       1 netexec.go] {msg}\n"


def format_hostport(peer: tuple | None) -> str:
    """`ip:port` (or `[ip6]:port`) like Go's `RemoteAddr`."""
    if not peer:
        return ""
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _UdpProtocol(asyncio.DatagramProtocol):
    """agnhost netexec's UDP commands: `hostname`, `echo X`, `clientip` (plus `kubemu`)."""

    def __init__(self, server: "NetexecServer") -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def reply(self, data: bytes, addr: tuple) -> bytes | None:
        return self.server.udp_reply(data, addr)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        reply = self.reply(data, addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class _HostnameUdp(_UdpProtocol):
    """serve-hostname --udp: every datagram gets the hostname."""

    def reply(self, data: bytes, addr: tuple) -> bytes | None:
        return self.server.pod_name.encode()

    def error_received(self, exc: Exception) -> None:
        """ICMP errors for earlier replies (client gone): nothing to do, like agnhost."""


class NetexecServer:
    """One pod's agnhost-netexec-compatible HTTP and UDP servers on pre-made sockets."""

    def __init__(self, pod_name: str, node_name: str, http_sock: socket.socket | None,
                 udp_sock: socket.socket | Sequence[socket.socket] | None = None,
                 config: NetexecConfig | None = None, shutdown_timeout: float = 1.0,
                 tcp_sock: socket.socket | None = None, pod_ns: str | None = None,
                 on_exit: Callable[[int], None] | None = None, log_path: str | None = None) -> None:
        self.pod_name, self.node_name = pod_name, node_name
        self.log_path = log_path
        self._log = None   # the pod's log file (what `kubectl logs` shows), opened by start()
        self.tcp_sock, self.pod_ns, self.on_exit = tcp_sock, pod_ns, on_exit
        self.terminating = False   # SIGTERM received: /readyz fails (netexec --delay-shutdown)
        self._tcp: asyncio.base_events.Server | None = None
        self.config = config or NetexecConfig()
        self.http_sock = http_sock
        if udp_sock is None:
            self.udp_socks: list[socket.socket] = []
        elif isinstance(udp_sock, socket.socket):
            self.udp_socks = [udp_sock]
        else:
            self.udp_socks = list(udp_sock)
        self.shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._udp: list[asyncio.DatagramTransport] = []
        override = self.config.http_override
        self._override = URL(override if override.startswith("/") else "/" + override) if override else None
        self._routes = {"/hostname": self._hostname, "/hostName": self._hostname,
                        "/clientip": self._clientip, "/echo": self._echo,
                        "/healthz": self._healthz, "/redirect": self._redirect,
                        "/readyz": self._readyz}

    # --- lifecycle ---
    async def start(self) -> None:
        """Start serving on the sockets (call on the loop that will run the server)."""
        loop = asyncio.get_running_loop()
        if self.log_path:
            os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
            self._log = open(self.log_path, "a", buffering=1)
        try:
            udp = _HostnameUdp if self.config.udp_hostname else _UdpProtocol
            for sock in self.udp_socks:
                sock.setblocking(False)
                transport, _ = await loop.create_datagram_endpoint(lambda: udp(self), sock=sock)
                self._udp.append(transport)  # type: ignore[arg-type]
            if self.tcp_sock is not None:   # serve-hostname --tcp: the hostname, then close
                self.tcp_sock.setblocking(False)
                self._tcp = await asyncio.start_server(self._tcp_hostname, sock=self.tcp_sock)
            if self.http_sock is not None:
                self.http_sock.setblocking(False)
                app = web.Application(handler_args={"max_field_size": 16384})
                app.router.add_route("*", "/{tail:.*}", self._handle)
                self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                             shutdown_timeout=self.shutdown_timeout)
                await self._runner.setup()
                site = web.SockSite(self._runner, self.http_sock)
                await site.start()
                self.log_line(f"Started HTTP server on port {self.http_port}")
            for port in self.udp_ports:
                self.log_line(f"Started UDP server on port {port}")
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop serving and close the sockets: new connections are refused afterwards."""
        for transport in self._udp:
            transport.close()
        self._udp.clear()
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        if self.tcp_sock is not None:
            self.tcp_sock.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self.http_sock is not None:
            self.http_sock.close()
        for sock in self.udp_socks:
            sock.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_line(self, msg: str) -> None:
        """One klog-style line in the pod's log, as agnhost writes (`I1204 15:23:46.123456 1 netexec.go] ...`)."""
        if self._log is not None:
            self._log.write(klog_line(msg))

    @property
    def http_port(self) -> int | None:
        """The bound HTTP port (useful when bound to port 0)."""
        return None if self.http_sock is None else self.http_sock.getsockname()[1]

    @property
    def udp_ports(self) -> list[int]:
        """The bound UDP ports."""
        return [s.getsockname()[1] for s in self.udp_socks]

    # --- UDP ---
    def udp_reply(self, data: bytes, addr: tuple) -> bytes | None:
        """The reply to one datagram, or None (agnhost ignores unknown commands)."""
        text = data.decode("utf-8", "replace").strip().lower()
        if text == "hostname":
            return self.pod_name.encode()
        if text.startswith("echo "):
            return text.split(" ", 1)[1].encode()
        if text == "clientip":
            return format_hostport(addr).encode()
        if text == "kubemu":
            return json.dumps({"pod": self.pod_name, "node": self.node_name,
                               "client_ip": addr[0], "client_port": addr[1]}).encode()
        return None

    # --- HTTP ---
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Dispatch like Go's ServeMux: exact paths, everything else is `/`."""
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if request.path != "/healthz":   # the kubelet's probes would drown the requests
            self.log_line(f"{request.method} {request.path_qs} from {format_hostport(peer)}")
        path, query = request.path, request.query
        if self._override is not None:
            path, query = self._override.path, self._override.query
        if self.config.fixed_body is not None:   # porter: one answer per port
            resp = web.Response(text=self.config.fixed_body)
        elif path == "/header":  # agnhost: the value of the request header named by `key`
            resp = web.Response(text=request.headers.get(query.get("key", ""), ""))
        elif path == "/dial":
            resp = await dial.handle(query, self.pod_ns)
        elif path in ("/exit", "/shutdown"):
            resp = self._exit(query if path == "/exit" else {})
        elif path in _NOT_SUPPORTED:
            resp = web.Response(status=501, text=f"kubemu: {path} is not supported by the built-in netexec\n")
        else:
            resp = self._routes.get(path, self._root)(query, peer)
        resp.headers[HDR_POD] = self.pod_name
        resp.headers[HDR_NODE] = self.node_name
        if peer:
            resp.headers[HDR_CLIENT_IP] = str(peer[0])
            resp.headers[HDR_CLIENT_PORT] = str(peer[1])
        if self.config.close_each_request:
            resp.force_close()
        return resp

    def _root(self, query: Mapping[str, str], peer: tuple | None) -> web.Response:
        return web.Response(text=f"NOW: {datetime.datetime.now().astimezone()}")

    def _hostname(self, query: Mapping[str, str], peer: tuple | None) -> web.Response:
        return web.Response(text=self.pod_name)

    def _clientip(self, query: Mapping[str, str], peer: tuple | None) -> web.Response:
        return web.Response(text=format_hostport(peer))

    def _echo(self, query: Mapping[str, str], peer: tuple | None) -> web.Response:
        msg, code = query.get("msg", ""), query.get("code", "")
        if code:
            try:
                return web.Response(status=int(code), text=msg)
            except ValueError:
                return web.Response(text=f"argument 'code' must be an integer or empty, got {code!r}\n")
        return web.Response(text=msg)

    def _readyz(self, query: Mapping[str, str], peer: tuple | None) -> web.Response:
        """200, or 503 once SIGTERM arrived (netexec --delay-shutdown)."""
        return web.Response(status=503 if self.terminating else 200)

    def _exit(self, query: Mapping[str, str]) -> web.Response:
        """/exit?code=N&wait=D and /shutdown: the container exits (its servers stop)."""
        code_s = query.get("code", "")
        try:
            code = int(code_s) if code_s else 0
            wait = go_duration(query.get("wait", ""), "wait", None)
        except (ValueError, WorkloadArgsError):
            return web.Response(text=f"argument 'code' must be an integer [0-127] or empty, got {code_s!r}\n")
        asyncio.get_running_loop().call_later(wait, lambda: asyncio.ensure_future(self._exit_now(code)))
        return web.Response(text="")

    async def _exit_now(self, code: int) -> None:
        """Stop serving, then tell the kubelet the container exited with `code`."""
        await self.stop()
        if self.on_exit is not None:
            self.on_exit(code)

    async def _tcp_hostname(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """serve-hostname --tcp: write the hostname and close."""
        try:
            writer.write(self.pod_name.encode())
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def _healthz(self, query: Mapping[str, str], peer: tuple | None) -> web.Response:
        """200 once the UDP server runs, 412 otherwise (agnhost ties readiness to UDP)."""
        return web.Response(status=200 if self._udp else 412)

    def _redirect(self, query: Mapping[str, str], peer: tuple | None) -> web.Response:
        code = query.get("code", "")
        try:
            status = int(code) if code else 302
        except ValueError:
            return web.Response(text=f"argument 'code' must be an integer or empty, got {code!r}\n")
        return web.Response(status=status, headers={"Location": query.get("location", "")})
