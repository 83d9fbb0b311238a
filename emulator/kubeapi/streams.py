"""`kubectl exec` over WebSocket (channel.k8s.io protocols) and `kubectl logs` streams.

Channels: 0 stdin, 1 stdout, 2 stderr, 3 error (a Status: Success, or NonZeroExitCode with
an ExitCode cause), 4 resize ({"Width","Height"}); v5 adds 255 = close a channel.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from emulator.kubeapi.backend import ExecBackend, ExecSession, LogsBackend
from emulator.kubeapi.routes import Target, is_true
from emulator.kubeapi.wire import StatusError

log = logging.getLogger(__name__)
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def exit_status(code: int, argv: list[str]) -> dict:
    """The error channel's Status for an exit code."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {argv}, exit code {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


async def _pod(crud: Any, t: Target) -> dict:
    return await crud.fetch(Target(t.resource, t.namespace, t.name, None))


async def serve_exec(request: web.Request, t: Target, backend: ExecBackend | None, crud: Any) -> web.StreamResponse:
    """Upgrade to a WebSocket and run the command through the exec backend."""
    q = request.query
    argv = q.getall("command", [])
    if backend is None:
        raise StatusError(400, "exec is not available: this kubemu run has no exec backend", "BadRequest")
    if not argv:
        raise StatusError(400, "you must specify at least 1 command", "BadRequest")
    pod = await _pod(crud, t)
    container = q.get("container") or ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name")
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
    if not ws.can_prepare(request).ok:
        raise StatusError(400, "exec needs a WebSocket upgrade with protocol v5.channel.k8s.io or "
                          "v4.channel.k8s.io", "BadRequest")
    await ws.prepare(request)
    try:
        session = await backend.exec(t.namespace or "default", t.name or "", container, argv,
                                     is_true(q.get("tty")), is_true(q.get("stdin")))
    except Exception as e:     # no such container, runtime down: the error channel says why
        await ws.send_bytes(bytes([ERROR]) + json.dumps(
            {"metadata": {}, "status": "Failure", "message": str(e), "reason": "InternalError"}).encode())
        await ws.close()
        return ws
    await _run_session(ws, session, argv, is_true(q.get("stdout", "true")), is_true(q.get("stderr", "true")))
    return ws


async def _pump(ws: web.WebSocketResponse, channel: int, chunks: Any, send: bool = True) -> None:
    async for data in chunks:
        if send and data and not ws.closed:
            await ws.send_bytes(bytes([channel]) + data)


async def _read_client(ws: web.WebSocketResponse, session: ExecSession) -> None:
    async for msg in ws:
        if msg.type != WSMsgType.BINARY or not msg.data:
            continue
        channel, data = msg.data[0], msg.data[1:]
        if channel == STDIN and data:
            await session.write_stdin(data)
        elif channel == RESIZE and data:
            try:
                size = json.loads(data)
                session.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
            except (ValueError, TypeError):
                pass
        elif channel == CLOSE and data[:1] == bytes([STDIN]):
            await session.close_stdin()
    await session.close_stdin()


async def _run_session(ws: web.WebSocketResponse, session: ExecSession, argv: list[str],
                       stdout: bool, stderr: bool) -> None:
    pumps = [asyncio.ensure_future(_pump(ws, STDOUT, session.stdout(), stdout)),
             asyncio.ensure_future(_pump(ws, STDERR, session.stderr(), stderr))]
    reader = asyncio.ensure_future(_read_client(ws, session))
    try:
        waiter = asyncio.ensure_future(session.wait())
        done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done and ws.closed:      # the client went away: stop the command
            await session.kill()
        code = await waiter
        await asyncio.gather(*pumps, return_exceptions=True)
        if not ws.closed:
            await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(code, argv)).encode())
            await ws.close()
    finally:
        for task in pumps + [reader]:
            task.cancel()


async def serve_logs(request: web.Request, t: Target, backend: LogsBackend | None, crud: Any) -> web.StreamResponse:
    """Stream a container's log as text/plain (follow keeps the stream open)."""
    q = request.query
    pod = await _pod(crud, t)
    if backend is None:
        raise StatusError(400, "logs are not available: this kubemu run has no logs backend", "BadRequest")
    container = q.get("container") or ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name")
    tail = int(q["tailLines"]) if q.get("tailLines") else None
    since = int(q["sinceSeconds"]) if q.get("sinceSeconds") else None
    chunks = backend.read(t.namespace or "default", t.name or "", container, is_true(q.get("follow")), tail, since)
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        async for data in chunks:
            await resp.write(data)
    except (ConnectionResetError, ConnectionError):
        return resp
    await resp.write_eof()
    return resp
