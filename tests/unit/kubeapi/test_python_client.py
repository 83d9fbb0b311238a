"""The official Python client (kubernetes on PyPI) against the endpoint: CRUD, patch, watch, 410 relist, auth."""
from __future__ import annotations

import json
import os
import socket
import time
import ssl
import urllib.error
import urllib.request

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.unit


def api_client(endpoint) -> client.ApiClient:
    return config.new_client_from_config(config_file=endpoint.kubeconfig_path)


def pod(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def test_create_list_patch_delete(endpoint):
    v1 = client.CoreV1Api(api_client(endpoint))
    for i in range(5):
        v1.create_namespaced_pod("default", pod(f"p{i}", app="web" if i % 2 else "db"))
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod("default", pod("p0"))
    assert e.value.status == 409 and "AlreadyExists" in e.value.body
    names = [p.metadata.name for p in v1.list_namespaced_pod("default", label_selector="app=web").items]
    assert names == ["p1", "p3"]
    assert [p.metadata.name for p in v1.list_namespaced_pod("default", label_selector="app!=web").items] == \
        ["p0", "p2", "p4"]
    assert [p.metadata.name for p in v1.list_pod_for_all_namespaces(field_selector="metadata.name=p2").items] == ["p2"]
    # Paging with an opaque continue token.
    page = v1.list_namespaced_pod("default", limit=2)
    got = [p.metadata.name for p in page.items]
    while page.metadata._continue:
        page = v1.list_namespaced_pod("default", limit=2, _continue=page.metadata._continue)
        got += [p.metadata.name for p in page.items]
    assert got == ["p0", "p1", "p2", "p3", "p4"]
    out = v1.patch_namespaced_pod("p1", "default", {"metadata": {"labels": {"extra": "yes"}}})
    assert out.metadata.labels == {"app": "web", "extra": "yes"}
    assert out.metadata.creation_timestamp is not None and out.metadata.uid
    # A stale resourceVersion on update is a conflict.
    stale = v1.read_namespaced_pod("p1", "default")
    v1.patch_namespaced_pod("p1", "default", {"metadata": {"labels": {"again": "1"}}})
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_pod("p1", "default", stale)
    assert e.value.status == 409
    v1.delete_namespaced_pod("p1", "default")
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_pod("p1", "default")
    assert e.value.status == 404


def test_watch_from_resource_version_and_relist_on_410(endpoint):
    v1 = client.CoreV1Api(api_client(endpoint))
    v1.create_namespaced_pod("default", pod("a"))
    rv = v1.list_namespaced_pod("default").metadata.resource_version
    v1.create_namespaced_pod("default", pod("b"))
    v1.patch_namespaced_pod("b", "default", {"metadata": {"labels": {"x": "1"}}})
    v1.delete_namespaced_pod("a", "default")
    w = watch.Watch()
    seen = []
    for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]
    # The store forgets old events (a restarted API server): an old rv gets 410 Expired.
    endpoint.run(_forget_log(endpoint.local_api))
    with pytest.raises(ApiException) as e:
        for _ in watch.Watch().stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=5):
            pass
    assert e.value.status == 410
    # Relisting gives a resourceVersion that works again.
    fresh = v1.list_namespaced_pod("default").metadata.resource_version
    v1.create_namespaced_pod("default", pod("c"))
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=fresh, timeout_seconds=5):
        assert (ev["type"], ev["object"].metadata.name) == ("ADDED", "c")
        w.stop()


async def _forget_log(api) -> None:
    api.store.restore([o for o in api.store._objs.values()], api.store.resource_version)


def test_apps_scale_and_status(endpoint):
    apps = client.AppsV1Api(api_client(endpoint))
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
    apps.create_namespaced_deployment("default", dep)
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment_scale("web", "default").spec.replicas == 3
    apps.patch_namespaced_deployment_status("web", "default", {"status": {"readyReplicas": 2, "replicas": 3}})
    d = apps.read_namespaced_deployment("web", "default")
    assert d.spec.replicas == 3 and d.status.ready_replicas == 2
    # The main resource ignores status; the status subresource ignores spec.
    apps.patch_namespaced_deployment("web", "default", {"status": {"readyReplicas": 0}})
    assert apps.read_namespaced_deployment("web", "default").status.ready_replicas == 2


def _get(url: str, ca_file: str, token: str | None) -> int:
    ctx = ssl.create_default_context(cafile=ca_file)
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_token_required_and_loopback_only(endpoint, tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text(endpoint.ca_pem)
    url = endpoint.url + "/api/v1/namespaces"
    assert _get(url, str(ca), endpoint.token) == 200
    assert _get(url, str(ca), None) == 401
    assert _get(url, str(ca), "wrong") == 401
    assert endpoint.bound[0][0] == "127.0.0.1"
    cfg = client.Configuration(host=endpoint.url)
    cfg.ssl_ca_cert = str(ca)
    v1 = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(ApiException) as e:
        v1.list_namespace()
    assert e.value.status == 401 and "Unauthorized" in e.value.body
    for f in ("ca.key", "token", "apiserver.key"):
        assert os.stat(os.path.join(endpoint.state_dir, f)).st_mode & 0o777 == 0o600


def _non_loopback_ip() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))      # no packet is sent; picks the outgoing address
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def test_peers_beyond_loopback_only_on_added_listeners(tmp_path):
    from emulator.api.server import ApiServer
    from emulator.kubeapi.endpoint import KubeApiEndpoint
    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    ep = KubeApiEndpoint(ApiServer("10.96.0.0/16"), run_id="t2", state_dir=str(tmp_path / "s"), host="0.0.0.0")
    ep.start()
    try:
        ca = tmp_path / "ca.crt"
        ca.write_text(ep.ca_pem)
        port = ep.bound[0][1]
        # Bound on all addresses by request, but a peer that is not loopback is still refused.
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.check_hostname = False
        req = urllib.request.Request(f"https://{ip}:{port}/version", headers={"Authorization": f"Bearer {ep.token}"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, context=ctx, timeout=10)
        assert e.value.code == 403
        ep.add_listener(ip, 0)
        extra = ep.bound[-1][1]
        req = urllib.request.Request(f"https://{ip}:{extra}/version", headers={"Authorization": f"Bearer {ep.token}"})
        ctx = ssl.create_default_context(cafile=str(ca))       # the reissued certificate names the address
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            assert r.status == 200
    finally:
        ep.stop()


def test_watch_timeout_and_bookmarks(endpoint):
    v1 = client.CoreV1Api(api_client(endpoint))
    v1.create_namespaced_pod("default", pod("a"))
    rv = v1.list_namespaced_pod("default").metadata.resource_version
    resp = v1.list_namespaced_pod("default", watch=True, resource_version=rv, timeout_seconds=1,
                                  allow_watch_bookmarks=True, _preload_content=False)
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]   # ends after ~1 s
    assert lines and {ev["type"] for ev in lines} == {"BOOKMARK"}
    assert lines[-1]["object"]["metadata"]["resourceVersion"] == rv
    # No resourceVersion: the current objects come first as ADDED.
    resp = v1.list_namespaced_pod("default", watch=True, timeout_seconds=1, _preload_content=False)
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [(ev["type"], ev["object"]["metadata"]["name"]) for ev in lines] == [("ADDED", "a")]


def test_exec_with_the_python_client(endpoint):
    from kubernetes.stream import stream
    v1 = client.CoreV1Api(api_client(endpoint))
    v1.create_namespaced_pod("default", pod("a"))
    out = stream(v1.connect_get_namespaced_pod_exec, "a", "default", command=["sh", "-c", "echo hi"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "hi\n"


def test_label_selector_watch_sees_objects_enter_and_leave(endpoint):
    v1 = client.CoreV1Api(api_client(endpoint))
    v1.create_namespaced_pod("default", pod("a", app="web"))
    v1.create_namespaced_pod("default", pod("b", app="db"))
    resp = v1.list_namespaced_pod("default", label_selector="app=web", watch=True, timeout_seconds=3,
                                  _preload_content=False)
    v1.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"app": "db"}}})     # leaves
    v1.patch_namespaced_pod("b", "default", {"metadata": {"labels": {"app": "web"}}})    # enters
    v1.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "1"}}})        # not selected
    events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == \
        [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")]


def test_a_watch_ends_when_its_client_leaves(endpoint, tmp_path):
    import http.client
    ca = tmp_path / "ca.crt"
    ca.write_text(endpoint.ca_pem)
    host, port = endpoint.bound[0]
    conn = http.client.HTTPSConnection(host, port, context=ssl.create_default_context(cafile=str(ca)), timeout=10)
    conn.request("GET", "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=600",
                 headers={"Authorization": f"Bearer {endpoint.token}"})
    assert conn.getresponse().status == 200
    app = endpoint._app
    assert app.active_watches == 1
    conn.close()
    deadline = time.monotonic() + 20      # the watcher notices within one long-poll (5 s)
    while app.active_watches and time.monotonic() < deadline:
        time.sleep(0.2)
    assert app.active_watches == 0


def test_create_in_a_missing_namespace_is_404(endpoint):
    v1 = client.CoreV1Api(api_client(endpoint))
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod("nope", pod("a"))
    assert e.value.status == 404 and 'namespaces \\"nope\\" not found' in e.value.body
    v1.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "nope", "namespace": "x"}})
    v1.create_namespaced_pod("nope", pod("a"))
    assert v1.read_namespace("nope").metadata.labels == {"kubernetes.io/metadata.name": "nope"}
