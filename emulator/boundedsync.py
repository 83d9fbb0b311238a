"""The thread that drives a rule syncer like kube-proxy's BoundedFrequencyRunner.

Shared by kube-proxy's Proxier and the NetworkPolicy enforcer. Events call `notify()`;
bursts are merged so that syncs are at least `min_sync_period` apart; a periodic sync runs
every `sync_period` (after checking the canary chain, so a flushed table gets a full
resync). A failed sync is retried at the next period. Time comes from the injected `clock`.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Protocol

from emulator.errors import KernelError

log = logging.getLogger(__name__)


class Syncer(Protocol):
    """What the runner drives: kube-proxy's Proxier or the NetworkPolicy enforcer."""

    node_name: str
    min_sync_period: float
    sync_period: float
    on_change: Callable[[], None] | None

    def mark_queued(self) -> None: ...

    def check_canary(self) -> bool: ...

    def sync(self) -> Any: ...


class BoundedSyncRunner:
    """Runs `proxier.sync()` in its own thread, rate-limited and periodic."""

    def __init__(self, proxier: Syncer, on_sync: Callable[[Any], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.proxier = proxier
        self.on_sync = on_sync
        self.clock = clock
        self.syncs = 0
        self._cv = threading.Condition()
        self._pending = True          # the first sync happens as soon as the thread starts
        self._stopping = False
        self._thread: threading.Thread | None = None
        proxier.on_change = self.notify

    def notify(self) -> None:
        """Ask for a sync (merged with others within min_sync_period)."""
        with self._cv:
            self._pending = True
            self._cv.notify()

    def start(self) -> None:
        """Start the sync thread (feed the initial Services and slices first)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"kube-proxy-{self.proxier.node_name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread after the sync in progress, if any."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "BoundedSyncRunner":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        min_period, period = self.proxier.min_sync_period, self.proxier.sync_period
        last_sync = float("-inf")
        next_periodic = self.clock() + period
        while True:
            with self._cv:
                while True:
                    if self._stopping:
                        return
                    now = self.clock()
                    due = max(last_sync + min_period, now) if self._pending else float("inf")
                    wake = min(due, next_periodic)
                    if wake <= now:
                        break
                    self._cv.wait(wake - now)
                periodic = not self._pending or now >= next_periodic
                self._pending = False
            self._sync_once(periodic)
            last_sync = self.clock()
            next_periodic = last_sync + period

    def _sync_once(self, periodic: bool) -> None:
        try:
            if periodic:
                self.proxier.mark_queued()
                self.proxier.check_canary()
            result = self.proxier.sync()
        except KernelError as exc:
            log.error("kube-proxy %s: %s", self.proxier.node_name, exc)
            return
        except Exception:
            log.exception("kube-proxy %s: sync crashed", self.proxier.node_name)
            return
        self.syncs += 1
        if self.on_sync is not None:
            self.on_sync(result)
