"""Builders of Service and EndpointSlice dicts, and a proxier over the fake kernel."""
from __future__ import annotations

from typing import Any

from emulator.kubeproxy.proxier import Proxier
from tests.fakes.iptables_ruleset import FakeRunner
from tests.fakes.iptables_trace import Tracer

NODE = "node-a"
NODE_IP = "10.128.0.2"
CLUSTER_CIDR = "10.4.0.0/14"
LOCAL_POD = "10.4.1.5"         # a pod on node-a
REMOTE_POD = "10.4.2.7"        # a pod on node-b
CLIENT = "203.0.113.9"         # outside the cluster


def service(name: str, cluster_ip: str, ports: list[dict[str, Any]] | None = None, ns: str = "default",
            **spec: Any) -> dict[str, Any]:
    """A v1 Service dict; extra keyword arguments go into spec (status via `status=`)."""
    status = spec.pop("status", None)
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": cluster_ip, "selector": {"app": name}, "type": "ClusterIP",
                 "ports": ports if ports is not None else [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
                 **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def endpoint(ip: str, node: str = "node-b", ready: bool = True, serving: bool | None = None,
             terminating: bool = False) -> dict[str, Any]:
    """One EndpointSlice endpoint."""
    cond: dict[str, Any] = {"ready": ready, "serving": ready if serving is None else serving,
                            "terminating": terminating}
    return {"addresses": [ip], "conditions": cond, "nodeName": node}


def slice_(svc: str, endpoints: list[dict[str, Any]], ports: list[dict[str, Any]] | None = None,
           ns: str = "default", name: str | None = None) -> dict[str, Any]:
    """A discovery.k8s.io/v1 EndpointSlice dict."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": name or f"{svc}-abcde", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "endpoints": endpoints,
        "ports": ports if ports is not None else [{"name": "", "port": 8080, "protocol": "TCP"}],
    }


def make_proxier(**kw: Any) -> tuple[Proxier, FakeRunner]:
    """A Proxier for node-a over a fresh fake kernel."""
    runner = FakeRunner()
    return Proxier(NODE, [NODE_IP], CLUSTER_CIDR, runner, **kw), runner


def tracer(runner: FakeRunner, extra_local: list[str] | None = None) -> Tracer:
    """A tracer for node-a (local addresses: node IP plus `extra_local`)."""
    return Tracer(runner.ruleset, [NODE_IP] + (extra_local or []), node_ip=NODE_IP)


def apply(proxier: Proxier, *objs: dict[str, Any], event: str = "ADDED") -> None:
    """Feed objects to the proxier as watch events."""
    for obj in objs:
        if obj["kind"] == "Service":
            proxier.on_service(event, obj)
        else:
            proxier.on_endpointslice(event, obj)
