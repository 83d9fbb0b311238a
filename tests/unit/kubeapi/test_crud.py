"""Crud against a local ApiServer, without HTTP: races with controllers, admission, status."""
from __future__ import annotations

import asyncio

import pytest

from emulator.api.server import ApiServer
from emulator.kubeapi.backend import StoreClient
from emulator.kubeapi.crud import Crud
from emulator.kubeapi.patch import MERGE_PATCH
from emulator.kubeapi.routes import parse_target

pytestmark = pytest.mark.unit


class RacingApiServer(ApiServer):
    """An ApiServer where a controller writes the object just before the first update lands."""

    raced = 0

    async def update(self, obj, expect_rv=None):
        if not self.raced:
            self.raced += 1
            m = obj["metadata"]
            await self.patch_status(obj["kind"], m.get("namespace", ""), m["name"], {"phase": "Running"})
        return await super().update(obj, expect_rv)


def test_patch_is_retried_when_a_controller_wrote_in_between():
    async def run():
        api = RacingApiServer("10.96.0.0/16")
        crud = Crud(StoreClient(api))
        t = parse_target("/api/v1/namespaces/default/pods")
        await crud.create(t, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                              "spec": {"containers": [{"name": "c"}]}}, {}, "test")
        out, _ = await crud.patch(parse_target("/api/v1/namespaces/default/pods/p"), MERGE_PATCH,
                                  {"metadata": {"labels": {"a": "b"}}}, {}, "test")
        assert api.raced == 1
        assert out["metadata"]["labels"] == {"a": "b"} and out["status"] == {"phase": "Running"}
    asyncio.run(run())


def test_service_writes_keep_the_status_a_controller_set():
    async def run():
        api = ApiServer("10.96.0.0/16")
        crud = Crud(StoreClient(api))
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
        out, _ = await crud.create(parse_target("/api/v1/namespaces/default/services"), svc, {}, "test")
        assert out["spec"]["clusterIP"].startswith("10.96.") and out["spec"]["ports"][0]["nodePort"] >= 30000
        await api.patch_status("Service", "default", "s", {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}]}})
        t = parse_target("/api/v1/namespaces/default/services/s")
        out, _ = await crud.patch(t, MERGE_PATCH, {"status": {"loadBalancer": {}}, "metadata": {"labels": {"x": "1"}}},
                                  {}, "test")
        assert out["status"]["loadBalancer"]["ingress"] == [{"ip": "203.0.113.5"}]     # main resource: status kept
        st = parse_target("/api/v1/namespaces/default/services/s/status")
        out, _ = await crud.patch(st, MERGE_PATCH, {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}},
                                                    "spec": {"type": "ClusterIP"}}, {}, "test")
        assert out["status"]["loadBalancer"]["ingress"] == [{"ip": "203.0.113.9"}] and out["spec"]["type"] == "LoadBalancer"
    asyncio.run(run())


def test_scale_is_retried_when_a_controller_wrote_in_between():
    async def run():
        api = RacingApiServer("10.96.0.0/16")
        crud = Crud(StoreClient(api))
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}},
                        "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c"}]}}}}
        await crud.create(parse_target("/apis/apps/v1/namespaces/default/deployments"), dep, {}, "test")
        scale = await crud.write_scale(parse_target("/apis/apps/v1/namespaces/default/deployments/w/scale"),
                                       MERGE_PATCH, {"spec": {"replicas": 4}}, {}, "test")
        assert api.raced == 1 and scale["spec"]["replicas"] == 4
    asyncio.run(run())
