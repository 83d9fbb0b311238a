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


def test_shared_informer_fans_one_watch_out_and_keeps_each_nodes_partition():
    """Nodes of one process share one list+watch; a cut-off node hears nothing, and lists
    again (from the shared cache) once its link is back, as its own informer would."""
    from emulator.api.shared_informer import SharedInformers
    fake = FakeApi()
    fake.put("a")
    links = {n: NodeApiClient(fake, n) for n in ("n1", "n2")}
    seen: dict[str, list[tuple[str, str]]] = {n: [] for n in links}
    hub = SharedInformers()
    subs = {n: hub.subscribe(api, ["Service"], lambda t, o, n=n: seen[n].append((t, o["metadata"]["name"])))
            for n, api in links.items()}
    for s in subs.values():
        s.shared.informer.poll_timeout = 0.01
        s.start()
    try:
        assert len(hub.by_kinds) == 1
        for s in subs.values():
            assert s.synced.wait(5)
        wait(lambda: all(("ADDED", "a") in v for v in seen.values()))
        assert fake.lists == 1                                     # one list for both nodes
        links["n1"].set_reachable(False)
        fake.put("b")
        wait(lambda: ("ADDED", "b") in seen["n2"])
        time.sleep(0.1)
        assert ("ADDED", "b") not in seen["n1"]                   # cut off: b never arrived
        assert [o["metadata"]["name"] for o in subs["n1"].list("Service")] == ["a"]
        links["n1"].set_reachable(True)
        wait(lambda: ("ADDED", "b") in seen["n1"])                # listed again when the link came back
        assert seen["n1"] == seen["n2"] == [("ADDED", "a"), ("ADDED", "b")]
        assert sorted(o["metadata"]["name"] for o in subs["n1"].list("Service")) == ["a", "b"]
        subs["n2"].stop()
        fake.put("c")
        wait(lambda: ("ADDED", "c") in seen["n1"])
        time.sleep(0.1)
        assert ("ADDED", "c") not in seen["n2"]                   # a stopped informer hears nothing
        assert fake.lists == 1
    finally:
        for s in subs.values():
            s.stop()
        hub.stop()


def test_shared_informer_cut_and_back_between_events_lists_again():
    """A cut that ends before the next event still breaks the node's watch: it lists again."""
    from emulator.api.shared_informer import SharedInformers
    fake = FakeApi()
    api = NodeApiClient(fake, "n1")
    seen: list[tuple[str, str]] = []
    hub = SharedInformers()
    sub = hub.subscribe(api, ["Service"], lambda t, o: seen.append((t, o["metadata"]["name"])))
    sub.shared.informer.poll_timeout = 0.01
    sub.start()
    try:
        assert sub.synced.wait(5)
        api.remove_link_listener(sub._link_changed)   # no relist at link-up: the rounds must notice
        api.set_reachable(False)
        api.set_reachable(True)
        assert sub.needs_catch_up()
        fake.put("x")
        wait(lambda: ("ADDED", "x") in seen)
        wait(lambda: not sub.needs_catch_up())
        assert seen == [("ADDED", "x")]
    finally:
        sub.stop()
        hub.stop()


def test_a_filtered_subscription_keeps_only_its_objects_in_its_list_and_its_events():
    """A kubelet's view of the shared Pod watch: only what its filter accepts, listed or watched."""
    from emulator.api.shared_informer import SharedInformers
    fake = FakeApi()
    fake.put("a1")
    fake.put("b1")
    links = {n: NodeApiClient(fake, n) for n in ("a", "b")}
    seen: dict[str, list[str]] = {n: [] for n in links}
    hub = SharedInformers()
    subs = {n: hub.subscribe(api, ["Service"], lambda t, o, n=n: seen[n].append(o["metadata"]["name"]),
                             accept=lambda o, n=n: o["metadata"]["name"].startswith(n)).start()
            for n, api in links.items()}
    try:
        for s in subs.values():
            s.shared.informer.poll_timeout = 0.01
            assert s.synced.wait(5)
        fake.put("a2")
        fake.put("b2")
        wait(lambda: "a2" in seen["a"] and "b2" in seen["b"])
        assert seen == {"a": ["a1", "a2"], "b": ["b1", "b2"]}
        assert sorted(o["metadata"]["name"] for o in subs["a"].list("Service")) == ["a1", "a2"]
        assert len(hub.by_kinds) == 1 and fake.lists == 1
    finally:
        for s in subs.values():
            s.stop()
        hub.stop()
