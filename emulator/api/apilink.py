"""A node's connection to the API server, cut while the node's link to the fabric is down.

Every API client on a node (kubelet, its Lease, kube-proxy's and the NetworkPolicy
enforcer's informers) talks to the ApiServer actor through one `NodeApiClient`. While
the node is partitioned or crashed (emulator/node/chaos.py), its calls fail with
`ApiUnreachable`, as a request to an API server the node cannot reach does; a watch that
was waiting when the link went down delivers nothing (`generation` moved on), and the
informers list again once the link is back, as client-go's reflector does after its
watch broke.
"""
from __future__ import annotations

import threading
from typing import Any, Callable


class ApiUnreachable(ConnectionError):
    """The node cannot reach the API server (its link is down)."""


class _GatedMethod:
    """An actor method whose `.remote()` fails while the node is cut off."""

    def __init__(self, client: "NodeApiClient", name: str, method: Any) -> None:
        self._client, self._name, self._method = client, name, method

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        if not self._client.reachable:
            raise ApiUnreachable(f"{self._client.node}: API server unreachable ({self._name})")
        return self._method.remote(*args, **kwargs)

    def options(self, **kwargs: Any) -> "_GatedMethod":
        return _GatedMethod(self._client, self._name, self._method.options(**kwargs))


class NodeApiClient:
    """Wraps the ApiServer actor handle; `set_reachable(False)` cuts the node off."""

    def __init__(self, api: Any, node: str) -> None:
        self.api, self.node = api, node
        self.generation = 0          # bumped on every cut: a reply sent before it is lost
        self._up = threading.Event()
        self._up.set()
        self._listeners: list[Callable[[bool], None]] = []   # told of each change (shared informers)

    @property
    def reachable(self) -> bool:
        return self._up.is_set()

    def set_reachable(self, up: bool) -> None:
        """Link up (calls go through) or down (calls fail, replies in flight are lost)."""
        changed = up != self._up.is_set()
        if up:
            self._up.set()
        elif self._up.is_set():
            self.generation += 1
            self._up.clear()
        if changed:
            for fn in list(self._listeners):
                fn(up)

    def add_link_listener(self, fn: Callable[[bool], None]) -> None:
        """Call `fn(up)` after each change of the link (in the thread that changes it)."""
        self._listeners.append(fn)

    def remove_link_listener(self, fn: Callable[[bool], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _GatedMethod(self, name, getattr(self.api, name))


def generation_of(api: Any) -> int:
    """The client's cut count (0 for a plain ApiServer handle, which is never cut off)."""
    return api.generation if isinstance(api, NodeApiClient) else 0


def answered(api: Any, generation: int) -> bool:
    """True if a reply to a call made at `generation` reached the node (no cut since)."""
    return not isinstance(api, NodeApiClient) or (api.reachable and api.generation == generation)
