"""Watchers parked until a write they care about: by kind, and a kubelet's Pods by node.

The API server wakes only the watchers of the kind written (and, for a Pod, the kubelet
watch of the Pod's node), not every watcher on every write: at 1000 nodes a Lease renewal
would otherwise wake a thousand kubelet Pod watches for nothing.
"""
from __future__ import annotations

import asyncio

WaitKey = tuple[str, "str | None"]


def wait_keys(kinds: list[str], node_name: str | None) -> list[WaitKey]:
    """What a watch of `kinds` (Pods only of `node_name` when given) waits on."""
    return [(k, node_name if k == "Pod" else None) for k in kinds]


def wake_keys(obj: dict) -> list[WaitKey]:
    """The watches a write of `obj` concerns."""
    keys: list[WaitKey] = [(obj["kind"], None)]
    node = (obj.get("spec") or {}).get("nodeName") if obj["kind"] == "Pod" else None
    if node:
        keys.append(("Pod", node))
    return keys


class Waiters:
    """Futures of parked watch calls, by wait key (one event loop, no locks)."""

    def __init__(self) -> None:
        self._by_key: dict[WaitKey, set[asyncio.Future]] = {}

    async def wait(self, keys: list[WaitKey], timeout: float) -> None:
        """Return when a write wakes one of `keys`, or after `timeout` seconds."""
        fut = asyncio.get_running_loop().create_future()
        for k in keys:
            self._by_key.setdefault(k, set()).add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            for k in keys:
                parked = self._by_key.get(k)
                if parked is not None:
                    parked.discard(fut)
                    if not parked:
                        del self._by_key[k]

    def wake(self, obj: dict | None) -> None:
        """Wake the watches a write of `obj` concerns (None: nothing was written)."""
        if obj is None:
            return
        for k in wake_keys(obj):
            for fut in self._by_key.pop(k, ()):
                if not fut.done():
                    fut.set_result(None)

    def parked(self) -> int:
        """How many watch calls wait now."""
        return len({f for futs in self._by_key.values() for f in futs})
