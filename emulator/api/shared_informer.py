"""Shared informers: one watch per kind set for a whole node host, fanned out to its nodes.

As client-go's shared informers do within one process, a `SharedInformer` lists and
watches its kinds once (on the plain ApiServer handle) and hands every event to the
`Subscription` of each node that asked for those kinds. A subscription keeps its own
view (a cache of the shared objects) and keeps a node's partition semantics
(emulator/api/apilink.py): while the node's link is down nothing reaches it, and once the
link is back it lists again, from the shared cache, emitting the differences as the
node's own informer would after its broken watch. A subscription answers the
`Informer` calls its users make: `start`, `stop`, `list`, `synced`, `rv`. A subscription
may keep only some objects (a kubelet's: the Pods bound to its node), as a field selector
on the node's own watch would.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from emulator.api.apilink import NodeApiClient
from emulator.api.client import Handler, Informer, relist_events
from emulator.api.store import key_of

log = logging.getLogger(__name__)
Key = tuple[str, str, str]


def _rv(obj: dict) -> str | None:
    return obj["metadata"].get("resourceVersion")


class Subscription:
    """One node's view of a shared informer: its cache, its handler, its link."""

    def __init__(self, shared: "SharedInformer", api, handler: Handler | None,
                 accept: Callable[[dict], bool] | None = None) -> None:
        self.shared, self.api, self.handler, self.accept = shared, api, handler, accept
        self.kinds = shared.kinds
        self.cache: dict[Key, dict] = {}
        self.lock = threading.RLock()
        self.synced = threading.Event()
        self.active = False
        self.stale = True          # must list (from the shared cache) before taking events
        self.rv = 0                # the newest resourceVersion this view is known to include
        self.generation = -1       # the node link's cut count at that list

    # --- the Informer interface ---
    def start(self) -> "Subscription":
        self.active = True
        if isinstance(self.api, NodeApiClient):
            self.api.add_link_listener(self._link_changed)
        self.shared.add(self)
        return self

    def stop(self) -> None:
        self.active = False
        if isinstance(self.api, NodeApiClient):
            self.api.remove_link_listener(self._link_changed)
        self.shared.remove(self)

    def list(self, kind: str) -> list[dict]:
        with self.lock:
            return [o for (k, _, _), o in self.cache.items() if k == kind]

    # --- called by the shared informer, under its fan-out lock ---
    def _linked(self) -> bool:
        """The node reaches the API server and has not been cut off since its last list."""
        if not isinstance(self.api, NodeApiClient):
            return True
        return self.api.reachable and self.api.generation == self.generation

    def deliver(self, type_: str, obj: dict) -> None:
        """One event of the shared watch: applied and handled, unless the node is cut off."""
        if not self.active:
            return
        if not self._linked():
            self.stale = True       # the node's watch broke: it lists again when its link is back
            return
        if self.stale:
            self.catch_up()         # the shared cache already holds this event
            return
        if self.accept is not None and not self.accept(obj):
            return
        k = key_of(obj)
        with self.lock:
            old = self.cache.get(k)
            if type_ == "DELETED":
                if old is None:
                    return          # seen in the list this subscription caught up from
                del self.cache[k]
            else:
                if old is not None and _rv(old) == _rv(obj):
                    return
                self.cache[k] = obj
            self.rv = max(self.rv, int(_rv(obj) or 0))
        self._emit(type_, obj)

    def catch_up(self) -> None:
        """List again, from the shared cache: emit what changed since this view's last list."""
        if not self.active or not self.shared.informer.synced.is_set():
            return
        if isinstance(self.api, NodeApiClient):
            if not self.api.reachable:
                self.stale = True
                return
            self.generation = self.api.generation
        rv, fresh = self.shared.snapshot()
        if self.accept is not None:
            fresh = {k: o for k, o in fresh.items() if self.accept(o)}
        with self.lock:
            old, self.cache = self.cache, fresh
            self.rv = max(self.rv, rv)
        for type_, o in relist_events(old, fresh):
            self._emit(type_, o)
        self.stale = False
        self.synced.set()

    def needs_catch_up(self) -> bool:
        return self.active and (self.stale or not self._linked())

    def _emit(self, type_: str, obj: dict) -> None:
        if self.handler is not None:
            try:
                self.handler(type_, obj)
            except Exception:  # a handler bug must not stop the other nodes' events
                log.exception("informer handler failed for %s %s", type_, key_of(obj))

    def _link_changed(self, up: bool) -> None:
        """The node's link came back: list again at once (its informer's relist)."""
        if up:
            with self.shared.fan_lock:
                self.catch_up()


class SharedInformer:
    """One list+watch of `kinds` fanned out to the subscriptions of a process's nodes."""

    def __init__(self, api, kinds: list[str], poll_timeout: float = 2.0) -> None:
        self.kinds = list(kinds)
        self.subs: list[Subscription] = []
        self.fan_lock = threading.RLock()
        self.informer = Informer(api, self.kinds, self._fanout, poll_timeout=poll_timeout, on_round=self._round)
        self._start_lock = threading.Lock()
        self._started = False

    def add(self, sub: Subscription) -> None:
        with self.fan_lock:
            self.subs.append(sub)
            sub.catch_up()          # at once when the shared cache is synced, else after its first list
        with self._start_lock:
            if not self._started:
                self._started = True
                self.informer.start()

    def remove(self, sub: Subscription) -> None:
        with self.fan_lock:
            if sub in self.subs:
                self.subs.remove(sub)

    def snapshot(self) -> tuple[int, dict[Key, dict]]:
        """(a resourceVersion the objects are at least as new as, the objects)."""
        rv = self.informer.rv
        with self.informer.lock:
            return rv, dict(self.informer.cache)

    def stop(self) -> None:
        self.informer.stop()

    def _fanout(self, type_: str, obj: dict) -> None:
        with self.fan_lock:
            for sub in list(self.subs):
                sub.deliver(type_, obj)

    def _round(self) -> None:
        """After each list or watch reply: views cut off or not yet listed catch up when they can."""
        with self.fan_lock:
            for sub in list(self.subs):
                if sub.needs_catch_up():
                    sub.catch_up()


class SharedInformers:
    """The shared informers of one process, one per kind set, made on first use."""

    def __init__(self) -> None:
        self.by_kinds: dict[tuple[str, ...], SharedInformer] = {}
        self._lock = threading.Lock()

    def subscribe(self, api, kinds: list[str], handler: Handler | None,
                  accept: Callable[[dict], bool] | None = None) -> Subscription:
        """A node's informer of `kinds` (not yet started) on the process's shared watch;
        `api`: the node's NodeApiClient (its link) or a plain ApiServer handle; `accept`:
        which objects the node's view keeps (all without it)."""
        raw = api.api if isinstance(api, NodeApiClient) else api
        with self._lock:
            shared = self.by_kinds.get(tuple(kinds))
            if shared is None:
                shared = self.by_kinds[tuple(kinds)] = SharedInformer(raw, kinds)
        return Subscription(shared, api, handler, accept)

    def stop(self) -> None:
        for shared in self.by_kinds.values():
            shared.stop()
