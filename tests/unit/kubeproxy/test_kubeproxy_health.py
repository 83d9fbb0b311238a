"""Health-check servers answer like kube-proxy's (status, headers, JSON body)."""
import asyncio
import json
import socket

import aiohttp
import pytest

from emulator.kubeproxy.health import HealthServer, go_time, service_health_body
from kubeproxy_helpers import NODE, REMOTE_POD, apply, endpoint, make_proxier, service, slice_

pytestmark = pytest.mark.unit


def lb_local(name, hc_port, node_port):
    return service(name, "10.8.0.30", type="LoadBalancer", externalTrafficPolicy="Local",
                   healthCheckNodePort=hc_port, ports=[{"port": 80, "nodePort": node_port}])


class Sockets:
    """make_socket for tests: each wanted port gets an ephemeral loopback port."""

    def __init__(self):
        self.actual = {}

    def __call__(self, port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        self.actual[port] = sock.getsockname()[1]
        return sock


async def get(session, port, path="/"):
    async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, dict(resp.headers), await resp.text()


def test_body_is_kube_proxys_tab_indented_json():
    body = service_health_body("ns", "web", 2, True)
    assert body.startswith('{\n\t"service": {\n\t\t"namespace": "ns",')
    assert json.loads(body) == {"service": {"namespace": "ns", "name": "web"}, "localEndpoints": 2,
                                "serviceProxyHealthy": True}
    assert go_time(None) == "0001-01-01 00:00:00 +0000 UTC"
    assert go_time(0.5) == "1970-01-01 00:00:00.5 +0000 UTC"


def test_service_health_follows_local_endpoints_and_servers_follow_services():
    async def scenario():
        proxier, _ = make_proxier()
        sockets = Sockets()
        server = HealthServer(asyncio.get_running_loop(), sockets, proxier)
        apply(proxier, lb_local("web", 32000, 30000), lb_local("idle", 32001, 30001),
              slice_("web", [endpoint("10.4.1.5", NODE), endpoint(REMOTE_POD)]),
              slice_("idle", [endpoint(REMOTE_POD)]))
        assert proxier.sync().ok
        await server.start()
        try:
            assert server.service_ports == {("default", "web"): 32000, ("default", "idle"): 32001}
            async with aiohttp.ClientSession() as session:
                status, headers, body = await get(session, sockets.actual[32000], "/any/path")
                assert status == 200
                assert headers["X-Load-Balancing-Endpoint-Weight"] == "1"
                assert headers["Content-Type"] == "application/json"
                assert json.loads(body) == {"service": {"namespace": "default", "name": "web"},
                                            "localEndpoints": 1, "serviceProxyHealthy": True}
                status, headers, body = await get(session, sockets.actual[32001])
                assert status == 503 and headers["X-Load-Balancing-Endpoint-Weight"] == "0"
                assert json.loads(body)["localEndpoints"] == 0
                status, _, body = await get(session, sockets.actual[10256], "/healthz")
                assert status == 200 and json.loads(body)["nodeEligible"] is True
                status, _, body = await get(session, sockets.actual[10256], "/livez")
                assert status == 200 and "nodeEligible" not in json.loads(body)
                status, _, _ = await get(session, sockets.actual[10256], "/other")
                assert status == 404
                # The Service goes away: its server closes after the next sync.
                apply(proxier, lb_local("idle", 32001, 30001), event="DELETED")
                assert proxier.sync().ok
                await asyncio.sleep(0.05)
                assert server.service_ports == {("default", "web"): 32000}
                with pytest.raises(aiohttp.ClientConnectionError):
                    await get(session, sockets.actual[32001])
                # Node being deleted: /healthz fails, /livez does not.
                proxier.node_eligible = False
                assert (await get(session, sockets.actual[10256], "/healthz"))[0] == 503
                assert (await get(session, sockets.actual[10256], "/livez"))[0] == 200
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_unapplied_updates_make_healthz_and_service_checks_fail():
    async def scenario():
        now = [1000.0]
        proxier, _ = make_proxier(sync_period=30.0, clock=lambda: now[0])
        sockets = Sockets()
        server = HealthServer(asyncio.get_running_loop(), sockets, proxier)
        apply(proxier, lb_local("web", 32000, 30000), slice_("web", [endpoint("10.4.1.5", NODE)]))
        assert proxier.sync().ok
        await server.start()
        try:
            apply(proxier, service("other", "10.8.0.31"))       # queued, never applied
            now[0] = 1061.0
            async with aiohttp.ClientSession() as session:
                status, _, body = await get(session, sockets.actual[10256], "/healthz")
                assert status == 503
                assert json.loads(body)["lastUpdated"] == go_time(1000.0)
                status, _, body = await get(session, sockets.actual[32000])
                assert status == 503 and json.loads(body)["serviceProxyHealthy"] is False
        finally:
            await server.stop()

    asyncio.run(scenario())
