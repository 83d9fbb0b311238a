"""What the endpoint talks to: the ApiServer (Ray actor or local object), exec and logs backends."""
from __future__ import annotations

from typing import Any, AsyncIterator, Protocol


class StoreClient:
    """Calls the ApiServer's async methods on a Ray actor handle or a local `ApiServer` alike."""

    def __init__(self, api: Any) -> None:
        self._api = api

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`await api.method.remote(...)` for an actor, `await api.method(...)` for a local object."""
        fn = getattr(self._api, method)
        remote = getattr(fn, "remote", None)
        if remote is not None:
            return await remote(*args, **kwargs)
        return await fn(*args, **kwargs)


class ExecSession(Protocol):
    """A running command in a container."""

    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    def stdout(self) -> AsyncIterator[bytes]: ...
    def stderr(self) -> AsyncIterator[bytes]: ...
    def resize(self, width: int, height: int) -> None: ...
    async def wait(self) -> int: ...
    async def kill(self) -> None: ...


class ExecBackend(Protocol):
    """Starts commands in pods' containers (`kubectl exec`)."""

    async def exec(self, namespace: str, pod: str, container: str | None, argv: list[str],
                   tty: bool, stdin: bool) -> ExecSession: ...


class LogsBackend(Protocol):
    """Reads containers' logs (`kubectl logs`)."""

    def read(self, namespace: str, pod: str, container: str | None, follow: bool,
             tail_lines: int | None, since_seconds: int | None) -> AsyncIterator[bytes]: ...
