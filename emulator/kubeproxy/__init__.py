"""kube-proxy in iptables mode for one emulated node.

Layers: `model`/`tracker` (state from Service and EndpointSlice dicts), `names` and
`render` (pure rule text), `proxier` and `worker`
(sync logic and its thread; the kernel adapter is
`emulator.kernel.iptables`), `health` (HTTP health checks), `ruleset`/`trace` (fake
kernel and packet tracer for tests).
"""
from emulator.kubeproxy.proxier import ProxyHealth, Proxier, SyncResult
from emulator.kubeproxy.worker import KubeProxyWorker

__all__ = ["Proxier", "ProxyHealth", "SyncResult", "KubeProxyWorker",
           "HealthServer"]


def __getattr__(name: str) -> object:
    if name == "HealthServer":       # imported lazily: it pulls in aiohttp
        from emulator.kubeproxy.health import HealthServer
        return HealthServer
    raise AttributeError(name)
