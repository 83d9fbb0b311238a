"""A TCP forwarder from a socket listening inside an emulated namespace to a root-namespace address.

A socket belongs to the namespace it was created in, not to the thread or process that
uses it: the live driver creates the listening socket inside the control-plane host's
namespace (`emulator.kernel.netns.socket_in`), and accepts on it and connects onward from its
own (root) namespace, where the API endpoint listens on loopback. So in-cluster clients
reach the endpoint through the emulated network, nothing listens on a root-namespace
address other than loopback, and the bytes (TLS) pass through untouched.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading

log = logging.getLogger(__name__)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class Forwarder:
    """Serves pre-made listening sockets on its own loop thread; each connection goes to `target`."""

    def __init__(self, target: tuple[str, int], name: str = "kubemu-forwarder") -> None:
        self.target = target
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.AbstractServer] = []
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def serve(self, sock: socket.socket) -> None:
        """Start accepting on a listening socket (made in whatever namespace)."""
        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(self._handle, sock=sock)
        self._servers.append(asyncio.run_coroutine_threadsafe(start(), self._loop).result(10))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError as e:
            log.warning("forwarding to %s:%s failed: %s", *self.target, e)
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()

    def stop(self) -> None:
        """Close the listening sockets and the loop."""
        if self._loop.is_closed():
            return

        async def close() -> None:
            for s in self._servers:
                s.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()
        try:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        except Exception:  # noqa: BLE001 - stopping anyway
            log.warning("closing the forwarder failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
