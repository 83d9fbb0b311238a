"""The SDN controller: os-ken running the VPC router app in background threads.

A plain class; the driver wraps it with `ray.remote` as an actor. os-ken's AppManager is
a process-wide singleton, so there is at most one `SdnController` per process (the actor
gives it its own process). Everything that crosses the actor boundary is JSON-able.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Iterable

from emulator.errors import KernelError, KubemuError, Timeout

LOG = logging.getLogger(__name__)
APP_MODULE = "controllers.vpc_app"

_lock = threading.Lock()
_active: "SdnController | None" = None
_listeners: list[socket.socket] = []


def _install_listen_hook() -> None:
    """Record os-ken's listening sockets so `stop()` can close them (os-ken never does)."""
    from os_ken.lib import hub
    if getattr(hub.listen, "_kubemu", False):
        return
    original = hub.listen

    def listen(*args: Any, **kwargs: Any) -> socket.socket:
        sock = original(*args, **kwargs)
        _listeners.append(sock)
        return sock
    listen._kubemu = True  # type: ignore[attr-defined]
    hub.listen = listen


class SdnController:
    """os-ken with the VPC router app, listening for OpenFlow switches.

    `listen_host` is an address (TCP on `listen_port`) or the path of a unix socket
    (OVS target `unix:PATH`): a unix socket reaches bridges whose ovs-vswitchd runs in
    another network namespace of the same machine.
    """

    def __init__(self, listen_port: int, listen_host: str = "127.0.0.1", autostart: bool = True,
                 start_timeout: float = 10.0) -> None:
        self.listen_port = listen_port
        self.listen_host = listen_host
        self._app: Any = None
        self._manager: Any = None
        self.start_seconds = 0.0
        if autostart:
            self.start(start_timeout)

    def start(self, timeout: float = 10.0) -> None:
        """Start os-ken in daemon threads and wait until it listens."""
        global _active
        with _lock:
            if _active is not None:
                raise KubemuError("an SDN controller already runs in this process (os-ken is a singleton)")
            _active = self
        t0 = time.monotonic()
        try:
            self._start_osken()
            self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        LOG.info("SDN controller listening on %s:%d (%.2fs)", self.listen_host, self.listen_port,
                 self.start_seconds)

    def _start_osken(self) -> None:
        """Configure os-ken and instantiate the apps from a daemon thread (so theirs are too)."""
        from os_ken import cfg
        from os_ken.base import app_manager
        import os_ken.controller.controller  # noqa: F401  (registers the ofp_* options)

        _install_listen_hook()
        conf = cfg.CONF
        conf.set_override("ofp_listen_host", self.listen_host)
        conf.set_override("ofp_tcp_listen_port", self.listen_port)
        errors: list[BaseException] = []

        def boot() -> None:
            try:
                app_manager.AppManager._instance = None
                manager = app_manager.AppManager.get_instance()
                manager.load_apps([APP_MODULE])
                contexts = manager.create_contexts()
                manager.instantiate_apps(**contexts)
                self._manager = manager
                from controllers.vpc_app import APP_NAME
                self._app = manager.applications[APP_NAME]
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)

        thread = threading.Thread(target=boot, name="osken-boot", daemon=True)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]

    def _wait_listening(self, timeout: float) -> None:
        """Poll until the OpenFlow port accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(_bound_to(s, self.listen_port, self.listen_host) for s in _listeners):
                return
            time.sleep(0.02)
        raise KernelError(f"os-ken did not listen on {self.listen_host}:{self.listen_port} "
                          "(port in use?)")

    @property
    def target(self) -> str:
        """The OVS controller target for this controller (`unix:PATH` or `tcp:HOST:PORT`)."""
        if self.listen_host.startswith("/"):
            return f"unix:{self.listen_host}"
        return f"tcp:{self.listen_host}:{self.listen_port}"

    # --- API (JSON-able in and out) ---
    def set_state(self, state: dict[str, Any], timeout: float = 10.0) -> None:
        """Adopt a new VPC state (see `VpcState.from_dict`); returns when switches have it."""
        from controllers.vpc_core import VpcState
        self._require_app().set_state(VpcState.from_dict(state), timeout)

    def connected_datapaths(self) -> list[int]:
        """Datapath ids that are connected and carry the current flows."""
        return self._require_app().ready_dpids()

    def wait_connected(self, dpids: Iterable[int], timeout: float = 15.0) -> None:
        """Block until every given datapath is connected and programmed, else Timeout."""
        want = sorted(set(dpids))
        if not self._require_app().wait_ready(want, timeout):
            raise Timeout(f"datapaths {[hex(d) for d in want]} did not connect within {timeout:.0f}s "
                          f"(connected: {[hex(d) for d in self.connected_datapaths()]})")

    def flow_stats(self, dpid: int) -> list[dict[str, Any]]:
        """Per-flow counters of one bridge: table, priority, cookie, match, packets, bytes, note.

        Load balancers: `lb NAME -> BACKEND` flows count the packets of connections recorded
        on that backend, `lb NAME: select` the packets that chose one (see `group_stats`).
        """
        return self._require_app().flow_stats(dpid)

    def group_stats(self, dpid: int) -> list[dict[str, Any]]:
        """Per-group counters of one bridge: group_id, name (the load balancer), packets, bytes,
        and `buckets` [{note (backend endpoint), packets, bytes}], in bucket order. A bucket
        counts the packets that selected it: about one per new connection."""
        return self._require_app().group_stats(dpid)

    def _require_app(self) -> Any:
        if self._app is None:
            raise KubemuError("the SDN controller is not running")
        return self._app

    def stop(self) -> None:
        """Disconnect switches, stop the apps and free the port (switches keep their flows)."""
        global _active
        app, manager = self._app, self._manager
        self._app = self._manager = None
        if app is not None:
            for sw in list(app.switches.values()):
                _shutdown(sw.dp.socket)
        for sock in list(_listeners):
            if _bound_to(sock, self.listen_port):
                _shutdown(sock)
                sock.close()
                _listeners.remove(sock)
        if manager is not None:
            try:
                manager.close()
            except Exception as exc:  # os-ken teardown is best effort
                LOG.warning("os-ken close: %s", exc)
            from os_ken.base import app_manager
            app_manager.AppManager._instance = None
        with _lock:
            if _active is self:
                _active = None


def _bound_to(sock: socket.socket, port: int, host: str = "") -> bool:
    """True when a (still open) socket is bound to the given port (or unix path `host`)."""
    try:
        if sock.family == socket.AF_UNIX:
            return sock.fileno() >= 0 and sock.getsockname() == host
        return sock.fileno() >= 0 and sock.getsockname()[1] == port
    except OSError:
        return False


def _shutdown(sock: socket.socket) -> None:
    """shutdown(RDWR), ignoring sockets that are already closed."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
