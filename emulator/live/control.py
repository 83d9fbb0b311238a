"""The live driver's control socket: one JSON request per connection, one JSON answer.

A unix socket in the run's state dir (0600; files are not namespaced by netns and the
state dir is root's). Ops are handler names (`traffic`, `down`, `info`); a handler's
KubemuError comes back as `{"error": message}`, which `request` raises again.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from typing import Callable

from emulator.errors import KubemuError

log = logging.getLogger(__name__)
Handler = Callable[[dict], dict]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    handlers: dict[str, Handler] = {}


class _Request(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            req = json.loads(self.rfile.readline() or b"{}")
            fn = self.server.handlers.get(req.get("op", ""))  # type: ignore[attr-defined]
            if fn is None:
                out = {"error": f"unknown op {req.get('op')!r}"}
            else:
                out = fn(req)
        except KubemuError as e:
            out = {"error": str(e)}
        except Exception as e:  # noqa: BLE001 - the driver keeps running; the caller sees one line
            log.exception("control request failed")
            out = {"error": f"internal error: {e}"}
        self.wfile.write(json.dumps(out, default=str).encode() + b"\n")


class ControlServer:
    """Serves `handlers` on a unix socket at `path` from a background thread."""

    def __init__(self, path: str, handlers: dict[str, Handler]) -> None:
        if os.path.exists(path):
            os.unlink(path)
        self.path = path
        self.server = _Server(path, _Request, bind_and_activate=False)
        self.server.handlers = handlers
        old = os.umask(0o177)   # the socket file is created 0600
        try:
            self.server.server_bind()
        finally:
            os.umask(old)
        self.server.server_activate()
        self.thread = threading.Thread(target=self.server.serve_forever, name="kubemu-control", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def request(path: str, op: str, timeout: float | None = 30.0, **args) -> dict:
    """Send one request to a live driver; its answer, or KubemuError."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        raise KubemuError(f"the live run's driver does not answer on {path}: {e}") from e
    try:
        out = json.loads(data)
    except ValueError as e:
        raise KubemuError(f"the live run's driver sent no answer to {op}") from e
    if "error" in out:
        raise KubemuError(out["error"])
    return out
