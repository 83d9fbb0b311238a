"""The scheduler's bind writes only the pod as it saw it: a stale copy must not wipe the kubelet's status."""
from __future__ import annotations

import types

import pytest

from emulator.api.store import ObjectStore
from emulator.control import manager
from emulator.control.workloads import Action

pytestmark = pytest.mark.unit


def test_a_stale_bind_conflicts_instead_of_overwriting_the_status(monkeypatch):
    store = ObjectStore()
    pod = store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "default"},
                        "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Pending"}})
    api = types.SimpleNamespace(update=types.SimpleNamespace(remote=lambda o, rv=None: (o, rv)))
    monkeypatch.setattr(manager.ray, "get", lambda ref: store.update(*ref))
    cm = manager.ControllerManager(api)
    cm._apply([Action("bind", {**pod, "spec": {**pod["spec"], "nodeName": "a"}})])     # the first bind
    store.patch("Pod", "default", "client", lambda o: o["status"].update(phase="Running", podIP="10.4.0.2"))
    cm._apply([Action("bind", {**pod, "spec": {**pod["spec"], "nodeName": "b"}})])     # again, from a stale cache
    got = store.get("Pod", "default", "client")
    assert (got["spec"]["nodeName"], got["status"]) == ("a", {"phase": "Running", "podIP": "10.4.0.2"})
    assert cm._dirty.is_set()   # the next pass sees the pod as it is
