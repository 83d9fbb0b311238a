"""A node cut off from the API server: its calls fail, a watch reply in flight is lost, and
its informers list again once the link is back (client-go's reflector after a broken watch)."""
from __future__ import annotations

import threading
import time

import pytest

from emulator.api import client as client_mod
from emulator.api.client import Informer
from emulator.api.apilink import ApiUnreachable, NodeApiClient, answered

pytestmark = pytest.mark.unit


class _Call:
    """An actor method stand-in: `.remote()` runs it at once (ray.get is patched to identity)."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def remote(self, *a, **kw):
        return self.fn(*a, **kw)

    def options(self, **_kw):
        return self


class FakeApi:
    """A tiny API server: Services with resourceVersions and a log of watch events."""

    def __init__(self) -> None:
        self.rv, self.objs, self.events, self.lists = 0, {}, [], 0
        self.during_watch = None           # run once inside the next watch (while it waits)
        self.list = _Call(self._list)
        self.resource_version = _Call(lambda: self.rv)
        self.watch = _Call(self._watch)

    def put(self, name: str) -> None:
        self.rv += 1
        obj = {"kind": "Service", "metadata": {"name": name, "namespace": "default", "resourceVersion": str(self.rv)}}
        self.objs[name] = obj
        self.events.append((self.rv, {"type": "ADDED", "obj": obj}))

    def _list(self, kind, *_a):
        self.lists += 1
        return list(self.objs.values()), self.rv

    def _watch(self, kinds, rv, timeout, node):
        hook, self.during_watch = self.during_watch, None
        if hook is not None:
            hook()
        time.sleep(0.01)
        return {"events": [e for r, e in self.events if r > rv], "rv": self.rv}


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch):
    monkeypatch.setattr(client_mod.ray, "get", lambda x: x)


def wait(cond, timeout: float = 5.0) -> None:
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "condition not met in time"
        time.sleep(0.01)


def test_calls_fail_while_cut_off_and_a_reply_from_before_the_cut_is_lost():
    api = NodeApiClient(FakeApi(), "n1")
    assert api.resource_version.remote() == 0 and api.reachable
    gen = api.generation
    api.set_reachable(False)
    with pytest.raises(ApiUnreachable, match="n1: API server unreachable"):
        api.list.remote("Service")
    with pytest.raises(ConnectionError):
        api.watch.options(num_returns=1).remote(["Service"], 0)
    api.set_reachable(True)
    assert api.list.remote("Service") == ([], 0)
    assert not answered(api, gen) and answered(api, api.generation)


def test_informer_stalls_while_cut_off_and_relists_when_the_link_is_back():
    fake = FakeApi()
    fake.put("a")
    api = NodeApiClient(fake, "n1")
    seen: list[tuple[str, str]] = []
    inf = Informer(api, ["Service"], lambda t, o: seen.append((t, o["metadata"]["name"])), poll_timeout=0.01)
    inf.start()
    try:
        wait(lambda: ("ADDED", "a") in seen)
        # b is created while a watch waits, and the link goes down before the reply comes
        fake.during_watch = lambda: (fake.put("b"), api.set_reachable(False))
        time.sleep(0.3)
        assert ("ADDED", "b") not in seen and not api.reachable   # stalled: b never arrived
        lists = fake.lists
        api.set_reachable(True)
        wait(lambda: ("ADDED", "b") in seen)
        assert fake.lists > lists                                  # by a relist, as after a broken watch
        assert [n for _, n in seen].count("a") == 1                # a was not emitted again
    finally:
        inf.stop()
