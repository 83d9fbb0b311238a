"""The API server's durable state (its etcd): every change appended as one JSON line.

A restarted API server replays the journal: same objects, same resourceVersion; its
event log starts empty, so informers that watch from before the restart get Gone and
relist (as with a compacted etcd). The file lives in the run's state directory, which
cleanup removes.
"""
from __future__ import annotations

import json
import os

from emulator.api.store import WatchEvent, key_of


class Journal:
    """Appends events to `path`; `replay()` rebuilds (objects, resourceVersion)."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._file = open(path, "a", encoding="utf-8", buffering=1)

    def append(self, event: WatchEvent) -> None:
        """One line per change; written through to the kernel (survives the process)."""
        self._file.write(json.dumps({"rv": event.rv, "type": event.type, "obj": event.obj},
                                    separators=(",", ":"), default=str) + "\n")

    def replay(self) -> tuple[list[dict], int]:
        """The objects and resourceVersion after every journaled change."""
        objs: dict = {}
        rv = 0
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:   # a line cut short by the crash
                    continue
                k = key_of(e["obj"])
                if e["type"] == "DELETED":
                    objs.pop(k, None)
                else:
                    objs[k] = e["obj"]
                rv = e["rv"]
        return list(objs.values()), rv
