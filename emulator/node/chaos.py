"""Faults on one emulated host, done for real by the host's own object (called through `NodeAgent.chaos`).

- crash: the machine stops: lease heartbeat, kube-proxy (its health servers too), the
  NetworkPolicy enforcer, kubelet and every pod (servers, processes, namespaces) stop,
  the link to the fabric goes down (the fabric-side end of eth0, like an unplugged
  cable), and the node's conntrack table and neighbour cache are emptied, as a reboot
  leaves them (`ClusterNode.halt`; a client host only loses its cable and kernel state).
- partition: only the link goes down: the node's API clients cannot reach the API server
  (emulator/api/apilink.py: the lease stops, the informers of kubelet, kube-proxy and
  the NetworkPolicy enforcer stall and list again once the link is back); processes, pods
  and the rules in the kernel keep running as they were.
- recover: the link comes back; after a crash the node boots (`ClusterNode.boot`): a
  fresh kubelet (it restarts the pods still bound to the node and deletes those evicted
  meanwhile), kube-proxy (full resync), policy enforcer and lease; after a partition the
  heartbeat renews at once and its status sync posts the pods' readiness again.
- kube_proxy_crash (nodes only): the kube-proxy worker, its watch and health servers stop
  (rules stay in the kernel, as when the process dies), then a fresh one starts after
  `down` seconds, relists and rewrites its chains in one iptables-restore.
- link_flap: the link goes down for `down` seconds.

Every part a fault touches belongs to the one host (emulator/node/cluster_node.py,
emulated_host.py), so the other hosts of the same node host process are untouched.
"""
from __future__ import annotations

from typing import Any

from emulator.errors import KubemuError

ACTIONS = ("crash", "partition", "recover", "kube_proxy_crash", "link_flap")


class ChaosError(KubemuError):
    """A chaos action this host does not have."""


def run(host: Any, action: str, **params: Any) -> dict:
    """Do fault `action` on `host` (an EmulatedHost); its record: `t` (epoch), `action` and what it did."""
    fn = getattr(host, action, None) if action in ACTIONS else None
    if fn is None:
        raise ChaosError(f"no chaos action {action!r} on {host.kind} {host.name} "
                         f"(known: {', '.join(ACTIONS)})")
    return fn(**params)
