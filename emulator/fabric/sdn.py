"""The SDN controller: os-ken running the VPC router app in background threads.

A plain class; the driver wraps it with `ray.remote` as an actor. os-ken's AppManager is
a process-wide singleton, so there is at most one `SdnController` per process (the actor
gives it its own process). Everything that crosses the actor boundary is JSON-able.
"""
from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from typing import Any, Iterable

from controllers.vpc_core import VpcState
from emulator.errors import KernelError, KubemuError, Timeout
from emulator.fabric import pki

LOG = logging.getLogger(__name__)
APP_MODULE = "controllers.vpc_app"
ECHO_INTERVAL, ECHO_MISSES = 1.0, 3   # a silent switch is dropped after about 4 s

_lock = threading.Lock()
_active: "SdnController | None" = None
_listeners: list[socket.socket] = []
_prebound: dict[Any, socket.socket] = {}   # listen address -> the socket SdnController bound


class _UnixConnection(socket.socket):
    """An accepted unix-socket connection that ignores TCP options (os-ken sets TCP_NODELAY
    on every datapath's socket, which fails on a unix socket)."""

    def setsockopt(self, level: int, *args: Any) -> None:  # type: ignore[override]
        if level != socket.IPPROTO_TCP:
            super().setsockopt(level, *args)


class _UnixListener(socket.socket):
    """A listening unix socket whose connections are `_UnixConnection`s."""

    def accept(self) -> tuple[socket.socket, Any]:
        fd, addr = self._accept()  # type: ignore[attr-defined]
        return _UnixConnection(self.family, self.type, self.proto, fileno=fd), addr


def _install_listen_hook() -> None:
    """Hand os-ken the socket the controller bound itself (no window in which another process
    can take the port), and record its listening sockets so `stop()` can close them."""
    from os_ken.lib import hub   # os-ken (eventlet) loads only in the SDN controller's process
    if getattr(hub.listen, "_kubemu", False):
        return
    original = hub.listen

    def listen(addr: Any, *args: Any, **kwargs: Any) -> socket.socket:
        sock = _prebound.pop(addr if isinstance(addr, str) else tuple(addr), None) or original(addr, *args, **kwargs)
        _listeners.append(sock)
        return sock
    listen._kubemu = True  # type: ignore[attr-defined]
    hub.listen = listen


class SdnController:
    """os-ken with the VPC router app, listening for OpenFlow switches.

    `listen_host` is the path of a unix socket (OVS target `unix:PATH`; its directory is
    made 0700 and the socket 0600, so only root can act as a switch; it reaches bridges
    whose ovs-vswitchd runs in another network namespace of the same machine) or an
    address (TCP on `listen_port`; 0 picks a free port, remembered in `port_file` so that
    a restarted controller comes back on the same one when it can). The controller binds
    its socket itself before os-ken starts; `address()` tells where it listens. `tls`
    (PEMs from `pki.make_pki`) makes the TCP channel mutual TLS: only switches presenting
    the run's switch certificate are served (the files go to `pki/` next to `port_file`).
    """

    def __init__(self, listen_port: int = 0, listen_host: str = "127.0.0.1", autostart: bool = True,
                 start_timeout: float = 10.0, port_file: str | None = None,
                 tls: dict[str, str] | None = None) -> None:
        self.listen_port = listen_port
        self.listen_host = listen_host
        self.port_file = port_file
        self.tls = tls
        self._app: Any = None
        self._manager: Any = None
        self.start_seconds = 0.0
        self.started_at = 0.0
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
            self._bind()
            self._start_osken()
            self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        self.started_at = time.time()
        LOG.info("SDN controller listening on %s:%d (%.2fs)", self.listen_host, self.listen_port,
                 self.start_seconds)

    def _bind(self) -> None:
        """Bind and listen on the unix path, or the TCP port (a free one when 0), for os-ken."""
        if self.listen_host.startswith("/"):
            folder = os.path.dirname(self.listen_host)
            os.makedirs(folder, mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)
            if os.path.exists(self.listen_host):   # left by a crashed controller
                os.unlink(self.listen_host)
            sock = _UnixListener(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(self.listen_host)
            os.chmod(self.listen_host, 0o600)
            key: Any = self.listen_host
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            port = self.listen_port or _remembered_port(self.port_file)
            try:
                sock.bind((self.listen_host, port))
            except OSError:
                if self.listen_port:
                    sock.close()
                    raise KernelError(f"the SDN controller cannot listen on {self.listen_host}:{port} "
                                      "(port in use?)") from None
                sock.bind((self.listen_host, 0))   # the remembered port is taken: a new one
            self.listen_port = sock.getsockname()[1]
            if self.port_file:
                os.makedirs(os.path.dirname(self.port_file), exist_ok=True)
                with open(self.port_file, "w") as f:
                    f.write(str(self.listen_port))
            key = (self.listen_host, self.listen_port)
        sock.listen(50)
        _prebound[key] = sock

    def _start_osken(self) -> None:
        """Configure os-ken and instantiate the apps from a daemon thread (so theirs are too)."""
        # os-ken (eventlet) loads only in the SDN controller's process, not in the driver
        from os_ken import cfg
        from os_ken.base import app_manager
        import os_ken.controller.controller  # noqa: F401  (registers the ofp_* options)

        _install_listen_hook()
        conf = cfg.CONF
        conf.set_override("ofp_listen_host", self.listen_host)
        conf.set_override("ofp_tcp_listen_port", self.listen_port or 1)  # 0 would mean 6653 and 6633
        conf.set_override("ofp_ssl_listen_port", self.listen_port or 1)
        # A switch that stops answering (its machine failed without closing the connection)
        # is dropped after ECHO_MISSES unanswered echoes, releasing whoever waits for its
        # barrier: a state push must not wait for a dead machine (os-ken's default: never).
        conf.set_override("echo_request_interval", ECHO_INTERVAL)
        conf.set_override("maximum_unreplied_echo_requests", ECHO_MISSES)
        files: dict[str, str] = {}
        if self.tls:
            folder = os.path.join(os.path.dirname(self.port_file or "") or tempfile.mkdtemp(prefix="kubemu-sdn-"),
                                  "pki")
            files = pki.write(self.tls, folder, "controller")
        for opt, kind in (("ctl_privkey", "key"), ("ctl_cert", "cert"), ("ca_certs", "ca")):
            conf.set_override(opt, files.get(kind))   # None: plain TCP (the process-wide CONF may
                                                      # hold a previous controller's files)
        errors: list[BaseException] = []

        def boot() -> None:
            try:
                app_manager.AppManager._instance = None
                manager = app_manager.AppManager.get_instance()
                manager.load_apps([APP_MODULE])
                contexts = manager.create_contexts()
                manager.instantiate_apps(**contexts)
                self._manager = manager
                from controllers.vpc_app import APP_NAME   # an os-ken app: loads os-ken
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
        raise KernelError(f"os-ken did not take its socket {self.listen_host}:{self.listen_port} "
                          f"within {timeout:.0f}s")

    @property
    def target(self) -> str:
        """The OVS controller target for this controller (`unix:PATH` or `tcp:HOST:PORT`)."""
        if self.listen_host.startswith("/"):
            return f"unix:{self.listen_host}"
        return f"{'ssl' if self.tls else 'tcp'}:{self.listen_host}:{self.listen_port}"

    # --- API (JSON-able in and out) ---
    def address(self) -> dict[str, Any]:
        """Where the controller listens: OVS `target`, and `host`, `port` (TCP) or `path` (unix)."""
        if self.listen_host.startswith("/"):
            return {"target": self.target, "path": self.listen_host}
        return {"target": self.target, "host": self.listen_host, "port": self.listen_port, "tls": bool(self.tls)}

    def set_state(self, state: dict[str, Any], timeout: float = 10.0) -> None:
        """Adopt a new VPC state (see `VpcState.from_dict`); returns when switches have it."""
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

    def started(self) -> float:
        """When this controller (process) started listening, epoch seconds (a restart changes it)."""
        return self.started_at

    def changes_sent(self) -> dict[int, int]:
        """Flow and group mods sent to each datapath since this controller started."""
        return dict(self._require_app().changes_sent)

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
        for sock in list(_listeners) + list(_prebound.values()):
            if _bound_to(sock, self.listen_port, self.listen_host):
                _shutdown(sock)
                sock.close()
                if sock in _listeners:
                    _listeners.remove(sock)
        _prebound.clear()
        if self.listen_host.startswith("/") and os.path.exists(self.listen_host):
            os.unlink(self.listen_host)
        if manager is not None:
            try:
                manager.close()
            except Exception as exc:  # os-ken teardown is best effort
                LOG.warning("os-ken close: %s", exc)
            from os_ken.base import app_manager   # loaded by _start_osken already
            app_manager.AppManager._instance = None
        with _lock:
            if _active is self:
                _active = None


def _remembered_port(port_file: str | None) -> int:
    """The port a previous controller of this run listened on (0: none)."""
    try:
        with open(port_file or "") as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


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
