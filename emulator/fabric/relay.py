"""A byte relay from a unix socket to a TCP address, for OpenFlow connections.

ovs-vswitchd runs inside the machine's fabric namespace, which has no route out. On
one host it reaches the SDN controller's own unix socket directly; on real machines the
controller listens on TCP on machine 0, and each machine's actor runs this relay in the
root namespace: OVS connects to the unix socket, each connection is piped to the
controller's TCP address, looked up again for every connection (a restarted controller
may listen on another port), over TLS when given a context (`pki.client_context`: the
relay presents the run's switch certificate and checks the controller's).
"""
from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl
import threading
from typing import Callable

log = logging.getLogger(__name__)


class UnixToTcpRelay:
    """Accepts on `unix_path`; pipes each connection to `tcp_addr` (or the address a callable
    returns at that moment) until either side closes."""

    def __init__(self, unix_path: str, tcp_addr: tuple[str, int] | Callable[[], tuple[str, int]],
                 tls: ssl.SSLContext | None = None) -> None:
        self.unix_path, self.tcp_addr, self.tls = unix_path, tcp_addr, tls
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> "UnixToTcpRelay":
        if os.path.exists(self.unix_path):
            os.unlink(self.unix_path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.unix_path)
        os.chmod(self.unix_path, 0o600)
        srv.listen(16)
        self._server = srv
        threading.Thread(target=self._accept, name="of-relay", daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                addr = self.tcp_addr() if callable(self.tcp_addr) else self.tcp_addr
                upstream = socket.create_connection(addr, timeout=5)
                if self.tls is not None:
                    upstream = self.tls.wrap_socket(upstream, server_hostname=addr[0])
                upstream.settimeout(None)
            except Exception as e:   # OSError, or the lookup of a restarting controller
                log.info("controller %s unreachable: %s", self.tcp_addr, e)
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            with self._lock:
                self._conns |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), name="of-pipe", daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(1.0):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
                    while isinstance(key.fileobj, ssl.SSLSocket) and key.fileobj.pending():
                        key.data.sendall(key.fileobj.recv(65536))   # decrypted, invisible to select
        except OSError:
            return
        finally:
            sel.close()
            for s in (a, b):
                with self._lock:
                    self._conns.discard(s)
                s.close()

    def drop_connections(self) -> None:
        """Close every relayed connection (OVS reconnects at once)."""
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        if os.path.exists(self.unix_path):
            os.unlink(self.unix_path)
