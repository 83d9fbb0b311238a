"""Per-node log files inside a node host process: RUN_DIR/logs/agent-<node>.log.

Many emulated nodes share one process, so the log file cannot follow the process: it
follows the thread. A call into a node runs `with tagged(node)`; every thread started
while a node is tagged (kubelet, informers, lease, event loop, executors' workers)
carries that node for its life. One root handler sends each record to the file of its
thread's node, and records of untagged threads to the process's own file.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Iterator

_local = threading.local()
_ATTR = "_kubemu_node"
_FORMAT = "%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s"


def current_node() -> str | None:
    """The node the calling thread works for (its call's tag, else its creator's); None if none."""
    node = getattr(_local, "node", None)
    if node is not None:
        return node
    thread = threading._active.get(threading.get_ident())  # type: ignore[attr-defined]  # no dummy made here
    return getattr(thread, _ATTR, None)


@contextlib.contextmanager
def tagged(node: str) -> Iterator[None]:
    """Within the block, the calling thread (and threads it starts) log into `node`'s file."""
    before = getattr(_local, "node", None)
    _local.node = node
    try:
        yield
    finally:
        _local.node = before


def _inherit_tags() -> None:
    """Make every new thread remember the node of the thread that created it (once per process)."""
    if getattr(threading.Thread, "_kubemu_tags", False):
        return
    original = threading.Thread.__init__

    def __init__(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        setattr(self, _ATTR, current_node())
    threading.Thread.__init__ = __init__  # type: ignore[method-assign]
    threading.Thread._kubemu_tags = True  # type: ignore[attr-defined]


class NodeLogRouter(logging.Handler):
    """A root handler writing each record to its thread's node file (agent-<node>.log)."""

    def __init__(self, log_dir: str, default: str) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.files: dict[str | None, logging.Handler] = {None: self._file(default)}
        self._files_lock = threading.Lock()

    def _file(self, component: str) -> logging.Handler:
        h = logging.FileHandler(os.path.join(self.log_dir, f"{component}.log"))
        h.setFormatter(logging.Formatter(_FORMAT))
        return h

    def add_node(self, node: str) -> None:
        """Open `node`'s file (agent-<node>.log)."""
        with self._files_lock:
            if node not in self.files:
                self.files[node] = self._file(f"agent-{node}")

    def emit(self, record: logging.LogRecord) -> None:
        node = current_node()
        handler = self.files.get(node) or self.files[None]
        handler.handle(record)

    def close(self) -> None:
        for h in self.files.values():
            h.close()
        super().close()


def setup_node_host_logging(run_dir: str, component: str, level: int = logging.INFO) -> NodeLogRouter:
    """Route this process's log records per node (see the module docstring); the router."""
    log_dir = os.path.join(run_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    _inherit_tags()
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_kubemu", False):
            root.removeHandler(h)
    router = NodeLogRouter(log_dir, component)
    router._kubemu = True  # type: ignore[attr-defined]
    root.addHandler(router)
    root.setLevel(level)
    return router
