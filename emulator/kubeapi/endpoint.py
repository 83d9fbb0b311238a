"""KubeApiEndpoint: the HTTPS Kubernetes API of one run, served from a daemon thread's event loop."""
from __future__ import annotations

import asyncio
import base64
import os
import ssl
import threading
from typing import Any

from aiohttp import web

from emulator.kubeapi import certs
from emulator.kubeapi.app import KubeApp
from emulator.kubeapi.backend import ExecBackend, LogsBackend, StoreClient

START_TIMEOUT = 30.0


class KubeApiEndpoint:
    """An HTTPS endpoint (CA, server certificate and bearer token made per run, in `state_dir`, 0600)
    in front of `api` (a Ray actor handle of ApiServer, or a local ApiServer). Loopback only unless
    `add_listener` opens an address of the emulated network."""

    def __init__(self, api: Any, *, run_id: str, state_dir: str, host: str = "127.0.0.1", port: int = 0,
                 exec_backend: ExecBackend | None = None, logs_backend: LogsBackend | None = None,
                 extra_sans: list[str] | tuple[str, ...] = ()) -> None:
        """`extra_sans`: more IP addresses for the server certificate, where clients reach the
        endpoint through a forwarder (e.g. the in-cluster `kubernetes` Service), not bound here."""
        self.api = api
        self.run_id = run_id
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.exec_backend = exec_backend
        self.logs_backend = logs_backend
        self.url = ""
        self.ca_pem = ""
        self.token = ""
        self._ca: certs.KeyPair | None = None
        self._ips: list[str] = [host, *(ip for ip in extra_sans if ip != host)]
        self._pending: list[tuple[str, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ssl: ssl.SSLContext | None = None
        self._app: KubeApp | None = None
        self.bound: list[tuple[str, int]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Make the CA, certificate and token, bind, and serve from a daemon thread."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self._ca = certs.make_ca(self.run_id)
        self.ca_pem = self._ca.cert_pem.decode()
        self.token = certs.new_token()
        certs.write_private(os.path.join(self.state_dir, "ca.crt"), self._ca.cert_pem)
        certs.write_private(os.path.join(self.state_dir, "ca.key"), self._ca.key_pem)
        certs.write_private(os.path.join(self.state_dir, "token"), self.token)
        self._ips += [h for h, _ in self._pending]
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._load_server_cert()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, errors),
                                        name=f"kubemu{self.run_id}-kubeapi", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT):
            raise RuntimeError("the Kubernetes API endpoint did not start")
        if errors:
            raise errors[0]
        self.url = f"https://{_host_text(self.bound[0][0])}:{self.bound[0][1]}"

    def _load_server_cert(self) -> None:
        assert self._ca is not None and self._ssl is not None
        server = certs.make_server_cert(self._ca, self._ips, self.run_id)
        crt, key = os.path.join(self.state_dir, "apiserver.crt"), os.path.join(self.state_dir, "apiserver.key")
        certs.write_private(crt, server.cert_pem)
        certs.write_private(key, server.key_pem)
        self._ssl.load_cert_chain(crt, key)   # new connections use the new certificate

    def _serve(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        except BaseException as e:   # reported to start()'s caller
            errors.append(e)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(self._teardown())
        loop.close()

    async def _setup(self) -> None:
        self._app = KubeApp(StoreClient(self.api), self.token, self.exec_backend, self.logs_backend,
                            lambda: f"{_host_text(self.bound[0][0])}:{self.bound[0][1]}" if self.bound else "")
        self._runner = web.AppRunner(self._app.application(), handle_signals=False, access_log=None,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await self._bind(self.host, self.port, open_to_network=False)
        for h, p in self._pending:
            await self._bind(h, p, open_to_network=True)

    async def _bind(self, host: str, port: int, open_to_network: bool) -> None:
        assert self._runner is not None and self._app is not None
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        actual = sockets[0].getsockname()[:2] if sockets else (host, port)
        self.bound.append((actual[0], actual[1]))
        if open_to_network:
            self._app.open_listeners.add((actual[0], actual[1]))

    async def _teardown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Close the listeners and end the thread."""
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop = None
        self._thread = None

    def add_listener(self, host: str, port: int) -> None:
        """Also listen on host:port (an address of the emulated network): its peers need not be loopback.
        Before start() the address joins the certificate; after, the certificate is reissued."""
        if self._loop is None:
            self._pending.append((host, port))
            return
        if host not in self._ips:
            self._ips.append(host)
            self._load_server_cert()
        fut = asyncio.run_coroutine_threadsafe(self._bind(host, port, open_to_network=True), self._loop)
        fut.result(START_TIMEOUT)

    # -- clients -----------------------------------------------------------------------------
    def kubeconfig(self, context_name: str) -> dict:
        """A kubeconfig (as a dict) with one cluster, user and context, all named `context_name`."""
        return {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": context_name, "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(self.ca_pem.encode()).decode()}}],
            "users": [{"name": context_name, "user": {"token": self.token}}],
            "contexts": [{"name": context_name, "context": {"cluster": context_name, "user": context_name,
                                                            "namespace": "default"}}],
            "current-context": context_name,
        }

    def __enter__(self) -> "KubeApiEndpoint":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host
