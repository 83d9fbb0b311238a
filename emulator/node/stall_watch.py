"""A node host's stall watch: every thread's stack, written when the process stops running Python.

All the nodes of a node host share one interpreter, so one thread that holds the GIL (a
long C call, a vfork'ed child that does not exec) stops every node's servers, leases and
kube-proxy at once. A watcher thread re-arms `faulthandler.dump_traceback_later` every
`tick`; the dump comes from faulthandler's own C thread, which needs no GIL, so it is
written while the stall lasts. The watcher also counts stalls (ticks that came more than
`limit` late) and logs each one as a warning in the node host's log.
"""
from __future__ import annotations

import faulthandler
import logging
import threading
import time
from typing import IO

log = logging.getLogger(__name__)


class StallWatch:
    """Dump all threads' stacks to `path` when the process runs no Python for `limit` seconds."""

    def __init__(self, path: str, limit: float = 5.0, tick: float = 0.5, max_dumps: int = 5) -> None:
        self.path, self.limit, self.tick, self.max_dumps = path, limit, tick, max_dumps
        self.stalls: list[tuple[float, float]] = []   # (epoch when it ended, seconds late)
        self._file: IO[str] = open(path, "a")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-watch", daemon=True)

    def start(self) -> "StallWatch":
        self._thread.start()
        return self

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            if len(self.stalls) < self.max_dumps:   # then only counted: a dump of every thread is long
                faulthandler.dump_traceback_later(self.limit, repeat=False, file=self._file)
            self._stop.wait(self.tick)
            now = time.monotonic()
            late = now - last - self.tick
            last = now
            if late > self.limit:
                self.stalls.append((time.time(), round(late, 3)))
                log.warning("this node host ran no Python for %.1f s (stacks in %s)", late, self.path)
        faulthandler.cancel_dump_traceback_later()

    def summary(self) -> dict:
        """How many stalls over `limit` seconds, and the longest."""
        return {"stalls": len(self.stalls), "max_s": max((s for _, s in self.stalls), default=0.0)}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.tick + 1)
        self._file.close()
