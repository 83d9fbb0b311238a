"""The aiohttp application: authentication, discovery and OpenAPI routes, resource verbs, tables."""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from typing import Any, Callable

from aiohttp import web
from ruamel.yaml import YAML, YAMLError

from emulator.kubeapi import discovery, protobuf, schemas, streams
from emulator.kubeapi.backend import ExecBackend, LogsBackend, StoreClient
from emulator.kubeapi.crud import Crud
from emulator.kubeapi.patch import APPLY
from emulator.kubeapi.printers import table
from emulator.kubeapi.routes import Target, parse_target
from emulator.kubeapi.watch import Watcher, encode_event
from emulator.kubeapi.wire import StatusError

log = logging.getLogger(__name__)
JSON = "application/json"
TABLE_MARK = "as=Table"


def json_response(data: Any, status: int = 200, content_type: str = JSON,
                  warnings: list[str] | None = None) -> web.Response:
    """A JSON body (with Warning headers)."""
    headers = [("Warning", f'299 - "{w}"') for w in warnings or []]
    resp = web.Response(body=json.dumps(data).encode(), status=status, content_type=content_type.split(";")[0])
    if ";" in content_type:
        resp.headers["Content-Type"] = content_type
    for k, v in headers:
        resp.headers.add(k, v)
    return resp


def status_response(e: StatusError) -> web.Response:
    """A failure as a Status object."""
    return json_response(e.status(), e.code)


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8 or ::1 (IPv4-mapped included)."""
    try:
        ip = ipaddress.ip_address((host or "").split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class KubeApp:
    """Serves one run's API: `token` guards every request; `open_listeners` are (host, port) that
    accept peers beyond loopback (the emulated network's)."""

    def __init__(self, store: StoreClient, token: str, exec_backend: ExecBackend | None = None,
                 logs_backend: LogsBackend | None = None,
                 server_address: Callable[[], str] = lambda: "127.0.0.1:443") -> None:
        self.crud = Crud(store)
        self.store = store
        self.token = token
        self.exec_backend = exec_backend
        self.logs_backend = logs_backend
        self.server_address = server_address
        self.open_listeners: set[tuple[str, int]] = set()
        self.active_watches = 0

    def application(self) -> web.Application:
        """The aiohttp app."""
        app = web.Application(middlewares=[self._guard], client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    def _peer_allowed(self, request: web.Request) -> bool:
        transport = request.transport
        if transport is None:
            return False
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        if peer and is_loopback(peer[0]):
            return True
        return bool(sock) and (sock[0], sock[1]) in self.open_listeners

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if not self._peer_allowed(request):
            return status_response(StatusError(403, "forbidden: connections only from loopback", "Forbidden"))
        auth = request.headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        given = given.strip() if scheme.lower() == "bearer" else ""   # the scheme is case-insensitive
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return status_response(StatusError(401, "Unauthorized", "Unauthorized"))
        try:
            return await handler(request)
        except StatusError as e:
            return status_response(e)
        except (ConnectionResetError, web.HTTPException):
            raise
        except Exception as e:   # the client gets a Status; the log keeps the trace
            log.exception("%s %s failed", request.method, request.path)
            return status_response(StatusError(500, f"internal error: {e}", "InternalError"))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"].rstrip("/")
        accept = request.headers.get("Accept", "")
        if request.method == "GET":
            doc = self._non_resource(path, accept)
            if doc is not None:
                return doc
        t = parse_target(path)
        if t is None:
            raise StatusError(404, "the server could not find the requested resource", "NotFound")
        return await self._resource(request, t)

    def _non_resource(self, path: str, accept: str) -> web.StreamResponse | None:
        agg = discovery.AGGREGATED in accept.replace(" ", "")
        if path == "/version":
            return json_response(discovery.version_info())
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/api":
            return json_response(discovery.aggregated(True), content_type=discovery.AGGREGATED) if agg \
                else json_response(discovery.api_versions(self.server_address()))
        if path == "/apis":
            return json_response(discovery.aggregated(False), content_type=discovery.AGGREGATED) if agg \
                else json_response(discovery.api_group_list())
        if path == "/openapi/v3":
            return json_response(schemas.openapi_v3_index())
        if path.startswith("/openapi/v3/"):
            doc = schemas.openapi_v3_document(_gv_of_openapi(path[len("/openapi/v3/"):]))
            if doc is None:
                raise StatusError(404, "the server could not find the requested resource", "NotFound")
            return web.Response(body=doc, content_type=JSON)
        segs = [s for s in path.split("/") if s]
        if len(segs) == 2 and segs[0] == "api":
            doc = discovery.resource_list("", segs[1])
        elif len(segs) == 2 and segs[0] == "apis":
            doc = discovery.api_group(segs[1])
        elif len(segs) == 3 and segs[0] == "apis":
            doc = discovery.resource_list(segs[1], segs[2])
        else:
            return None
        if doc is None:
            raise StatusError(404, "the server could not find the requested resource", "NotFound")
        return json_response(doc)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        ctype = request.content_type
        if ctype == "application/vnd.kubernetes.protobuf":
            return protobuf.decode_body(raw)
        if "protobuf" in ctype or "cbor" in ctype:
            raise StatusError(415, f"the body of the request was in an unknown format - accepted media types "
                              f"include: application/json, application/yaml", "UnsupportedMediaType")
        try:
            if ctype == APPLY or "yaml" in ctype:
                return YAML(typ="safe").load(raw.decode())
            return json.loads(raw)
        except (ValueError, YAMLError) as e:
            raise StatusError(400, f"the body of the request could not be decoded: {e}") from None

    async def _resource(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        m = request.method
        manager = q.get("fieldManager") or request.headers.get("User-Agent", "unknown").split("/")[0]
        want_table = TABLE_MARK in request.headers.get("Accept", "")
        if t.sub in ("exec", "attach") or (t.sub == "log"):
            if t.sub == "log" and m == "GET":
                return await streams.serve_logs(request, t, self.logs_backend, self.crud)
            if t.sub == "exec" and m in ("GET", "POST"):
                return await streams.serve_exec(request, t, self.exec_backend, self.crud)
            raise StatusError(405, f"method {m} not allowed on {t.resource.plural}/{t.sub}", "MethodNotAllowed")
        if m != "GET" and "create" not in t.resource.verbs:
            raise StatusError(405, f"{t.resource.plural} are read-only here (derived from other objects)",
                              "MethodNotAllowed")
        if t.name is None:
            if m == "GET" and q.get("watch", "").lower() in ("1", "true"):
                return await self._watch(request, t, want_table)
            if m == "GET":
                objs, rv, token = await self.crud.list(t, q)
                if want_table:
                    return json_response(table(t.resource.kind, objs, str(rv), q.get("includeObject", "Metadata"),
                                               continue_token=token))
                return json_response(self.crud.list_object(t.resource, objs, rv, token))
            if m == "POST":
                if t.namespace is None and t.resource.namespaced:
                    raise StatusError(405, "POST on a cluster-wide list of a namespaced resource", "MethodNotAllowed")
                out, warnings = await self.crud.create(t, await self._body(request), q, manager)
                return json_response(out, 201, warnings=warnings)
            if m == "DELETE":
                objs, rv, _ = await self.crud.list(t, q)
                body = await self._body(request)
                for o in objs:
                    item = Target(t.resource, o["metadata"].get("namespace"), o["metadata"]["name"], None)
                    await self.crud.delete(item, body or {}, q)
                return json_response(self.crud.list_object(t.resource, objs, rv, ""))
            raise StatusError(405, f"method {m} not allowed", "MethodNotAllowed")
        if t.sub == "scale":
            if m == "GET":
                return json_response(self.crud.scale_of(await self.crud.fetch(t)))
            if m in ("PUT", "PATCH"):
                ctype = request.content_type if m == "PATCH" else None
                return json_response(await self.crud.write_scale(t, ctype, await self._body(request), q, manager))
            raise StatusError(405, f"method {m} not allowed", "MethodNotAllowed")
        if m == "GET" and q.get("watch", "").lower() in ("1", "true"):
            return await self._watch(request, t, want_table)
        if m == "GET":
            obj = await self.crud.fetch(t)
            if want_table:
                return json_response(table(t.resource.kind, [obj], obj["metadata"].get("resourceVersion", ""),
                                           q.get("includeObject", "Metadata")))
            return json_response(obj)
        if m == "PUT":
            out, warnings = await self.crud.update(t, await self._body(request), q, manager)
            return json_response(out, warnings=warnings)
        if m == "PATCH":
            out, warnings = await self.crud.patch(t, request.content_type, await self._body(request), q, manager)
            return json_response(out, warnings=warnings)
        if m == "DELETE" and t.sub is None:
            body = await self._body(request)
            return json_response(await self.crud.delete(t, body if isinstance(body, dict) else {}, q))
        raise StatusError(405, f"method {m} not allowed", "MethodNotAllowed")

    async def _watch(self, request: web.Request, t: Target, want_table: bool) -> web.StreamResponse:
        q = request.query
        include = q.get("includeObject", "Metadata")
        wrap = None
        if want_table:
            def wrap(obj: dict, first: bool) -> dict:
                return table(t.resource.kind, [obj], obj["metadata"].get("resourceVersion", ""), include,
                             headers=first)
        watcher = Watcher(self.store, t, q, wrap)
        self.active_watches += 1
        try:
            return await self._stream_watch(request, watcher)
        finally:
            self.active_watches -= 1

    async def _stream_watch(self, request: web.Request, watcher: Watcher) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": JSON, "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        async def send(ev: dict) -> None:
            await resp.write(encode_event(ev))

        try:
            try:
                await watcher.run(send, lambda: request.transport is not None and not request.transport.is_closing())
            except StatusError as e:
                await send({"type": "ERROR", "object": e.status()})
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):   # the client left (write_eof too)
            pass
        return resp


def _gv_of_openapi(path: str) -> str:
    """api/v1 -> v1; apis/apps/v1 -> apps/v1."""
    segs = path.split("?")[0].strip("/").split("/")
    return segs[1] if segs[0] == "api" else "/".join(segs[1:3])

