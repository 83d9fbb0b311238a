"""netexec's `/dial`: the pod connects to another address `tries` times and reports.

`/dial?request=hostname&host=10.0.0.5&port=8080&protocol=http|udp&tries=N` answers
JSON `{"responses": [...], "errors": [...]}` like agnhost (keys present only when
non-empty). The sockets are made in the pod's own namespace, so the connection leaves
from the pod as upstream's does.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
from typing import Mapping

from aiohttp import web

from emulator.kernel import netns
from emulator.paths import ETC_NETNS
from emulator.workloads.connect import resolve

DIAL_TIMEOUT = 5.0   # agnhost's HTTP client and UDP read deadline


def _socket(pod_ns: str | None, kind: int) -> socket.socket:
    """A non-blocking socket in the pod's namespace (this process's own when None)."""
    if pod_ns is not None:
        return netns.socket_in(pod_ns, socket.AF_INET, kind, listen=None, reuse=False)
    s = socket.socket(socket.AF_INET, kind)
    s.setblocking(False)
    return s


async def _address(host: str, pod_ns: str | None) -> str:
    """`host` as an IPv4 address, resolving names through the pod's DNS."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    conf = os.path.join(ETC_NETNS, pod_ns, "resolv.conf") if pod_ns else None

    def lookup() -> str:
        if pod_ns is None:
            return resolve(host, conf, DIAL_TIMEOUT)
        with netns.entered(pod_ns):
            return resolve(host, conf, DIAL_TIMEOUT)
    return await asyncio.to_thread(lookup)


def http_body(raw: bytes) -> bytes:
    """The body of a raw HTTP/1.1 response (Content-Length or chunked)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        return out
    return body


async def dial_http(request: str, ip: str, port: int, pod_ns: str | None) -> str:
    """GET http://ip:port/request from the pod; the body."""
    sock = _socket(pod_ns, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (ip, port)), DIAL_TIMEOUT)
        req = f"GET /{request} HTTP/1.1\r\nHost: {ip}:{port}\r\nConnection: close\r\n\r\n"
        await loop.sock_sendall(sock, req.encode())
        raw = b""
        while True:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), DIAL_TIMEOUT)
            if not chunk:
                break
            raw += chunk
        return http_body(raw).decode("utf-8", "replace")
    finally:
        sock.close()


async def dial_udp(request: str, ip: str, port: int, pod_ns: str | None) -> str:
    """Send `request` to ip:port over UDP from the pod; the reply."""
    sock = _socket(pod_ns, socket.SOCK_DGRAM)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, (ip, port))
        await loop.sock_sendall(sock, request.encode())
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 2048), DIAL_TIMEOUT)
        except (asyncio.TimeoutError, OSError) as e:
            raise OSError(f"reading from udp connection failed. err:'{e or 'i/o timeout'}'") from None
        if not data:
            raise OSError("reading from udp connection failed. err:'<nil>'")
        return data.decode("utf-8", "replace")
    finally:
        sock.close()


async def handle(query: Mapping[str, str], pod_ns: str | None) -> web.Response:
    """The /dial handler."""
    host, port_s = query.get("host", ""), query.get("port", "")
    request, protocol = query.get("request", ""), query.get("protocol", "").lower()
    try:
        tries = int(query.get("tries") or 1)
    except ValueError as e:
        return web.Response(status=400, text=f"tries parameter is invalid. {e}\n")
    if not request:
        return web.Response(status=400, text="request parameter not specified. <nil>\n")
    if protocol not in ("", "http", "udp"):
        return web.Response(status=400, text=f"unsupported protocol. {protocol}\n")
    try:
        port = int(port_s)
        ip = await _address(host, pod_ns)
    except (ValueError, OSError) as e:
        return web.Response(status=400, text=f"host and/or port param are invalid. {e}\n")
    dialer = dial_udp if protocol == "udp" else dial_http
    responses, errors = [], []
    for _ in range(max(0, tries)):
        try:
            responses.append(await dialer(request, ip, port, pod_ns))
        except (OSError, asyncio.TimeoutError, ValueError) as e:
            errors.append(str(e) or "i/o timeout")
    out = {}
    if responses:
        out["responses"] = responses
    if errors:
        out["errors"] = errors
    return web.Response(text=json.dumps(out, separators=(",", ":")))
