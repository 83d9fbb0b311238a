"""Informers: list once, then watch, keeping a local cache and calling handlers.

Runs in a background thread of whatever process uses it (node agents, controllers);
talks to the ApiServer actor through Ray. On `Gone` it relists and emits the
differences as events, as client-go's reflector does; also after its node was cut off
from the API server (emulator/api/apilink.py).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

import ray

from emulator.api.store import key_of
from emulator.api.apilink import answered, generation_of

log = logging.getLogger(__name__)
Handler = Callable[[str, dict], None]


def relist_events(old: dict, fresh: dict) -> list[tuple[str, dict]]:
    """The events a relist emits: what left the cache, what came, what changed (by resourceVersion)."""
    out = [("DELETED", o) for k, o in old.items() if k not in fresh]
    for k, o in fresh.items():
        if k not in old:
            out.append(("ADDED", o))
        elif old[k]["metadata"].get("resourceVersion") != o["metadata"].get("resourceVersion"):
            out.append(("MODIFIED", o))
    return out


class Informer:
    """Keeps `cache[(kind, ns, name)] = obj` for the given kinds and calls `handler`."""

    def __init__(self, api, kinds: list[str], handler: Handler | None = None,
                 node_name: str | None = None, poll_timeout: float = 2.0,
                 on_round: Callable[[], None] | None = None) -> None:
        self.api, self.kinds, self.handler = api, kinds, handler
        self.node_name, self.poll_timeout = node_name, poll_timeout
        self.on_round = on_round   # called after each list and each watch reply (shared informers)
        self.cache: dict[tuple[str, str, str], dict] = {}
        self.rv = 0
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.RLock()

    def start(self) -> "Informer":
        self._thread = threading.Thread(target=self._run, name=f"informer-{'-'.join(self.kinds)}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def list(self, kind: str) -> list[dict]:
        with self.lock:
            return [o for (k, _, _), o in self.cache.items() if k == kind]

    def _emit(self, type_: str, obj: dict) -> None:
        if self.handler is not None:
            try:
                self.handler(type_, obj)
            except Exception:  # a handler bug must not kill the watch
                log.exception("informer handler failed for %s %s", type_, key_of(obj))

    def _relist(self) -> None:
        rv = ray.get(self.api.resource_version.remote())
        fresh: dict = {}
        for kind in self.kinds:
            items, _ = ray.get(self.api.list.remote(kind, None, None,
                                                    self.node_name if kind == "Pod" else None))
            for o in items:
                fresh[key_of(o)] = o
        with self.lock:
            old = self.cache
            self.cache = fresh
            self.rv = rv
        for type_, o in relist_events(old, fresh):
            self._emit(type_, o)

    def _run(self) -> None:
        relist, failing = True, False
        while not self._stop.is_set():
            gen = generation_of(self.api)
            try:
                if relist:
                    self._relist()
                    self.synced.set()
                    relist = False
                    self._round()
                res = ray.get(self.api.watch.remote(self.kinds, self.rv, self.poll_timeout, self.node_name))
            except Exception as e:  # API server restarting or out of reach: retry
                if self._stop.is_set():
                    return
                relist = relist or isinstance(e, ConnectionError)   # cut off: list again, then watch
                if not failing:
                    log.warning("watch failed (%s); retrying", e)
                failing = True
                self._stop.wait(0.5)
                continue
            failing = False
            if not answered(self.api, gen):   # the node was cut off meanwhile: the reply never came
                relist = True
                continue
            if res.get("gone"):
                self._relist()
                self._round()
                continue
            for ev in res["events"]:
                with self.lock:
                    k = key_of(ev["obj"])
                    if ev["type"] == "DELETED":
                        self.cache.pop(k, None)
                    else:
                        self.cache[k] = ev["obj"]
                self._emit(ev["type"], ev["obj"])
            self.rv = res["rv"]
            self._round()

    def _round(self) -> None:
        if self.on_round is not None:
            try:
                self.on_round()
            except Exception:
                log.exception("informer round hook failed")
