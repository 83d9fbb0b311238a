"""Faults on one node, done for real by its agent (called through `NodeAgent.chaos`).

- crash: the machine stops: lease heartbeat, kube-proxy (its health servers too),
  kubelet and every pod (servers, processes, namespaces) stop, the link to the fabric
  goes down (the fabric-side end of eth0, like an unplugged cable), and the node's
  conntrack table and neighbour cache are emptied, as a reboot leaves them.
- partition: only the link goes down: the node's API clients cannot reach the API server
  (emulator/api/apilink.py: the lease stops, the informers of kubelet, kube-proxy and
  the NetworkPolicy enforcer stall and list again once the link is back); processes, pods
  and the rules in the kernel keep running as they were.
- recover: the link comes back; after a crash the kubelet starts again (it restarts the
  pods still bound to the node and deletes those evicted meanwhile) with a fresh
  kube-proxy (full resync); after a partition the heartbeat's status sync posts the
  pods' readiness again.
- kube_proxy_crash: the kube-proxy worker, its watch and health servers stop (rules
  stay in the kernel, as when the process dies), then a fresh one starts after `down`
  seconds, relists and rewrites its chains in one iptables-restore.
- link_flap: the link goes down for `down` seconds.
"""
from __future__ import annotations

import logging
import time

from emulator.kernel import conntrack, links
from emulator.node.kubelet import Kubelet

log = logging.getLogger(__name__)


def set_link(agent, up: bool) -> None:
    """The node's cable to the fabric: the fabric-side veth end up or down; the node's API
    clients lose (or regain) the API server with it."""
    h = agent.host
    links.set_link_up(h.fabric_netns, h.fabric_port, up)
    set_reachable = getattr(getattr(agent, "api", None), "set_reachable", None)
    if set_reachable is not None:
        set_reachable(up)


def stop_kube_proxy(agent) -> None:
    """Stop the kube-proxy worker, its watch and its health servers; rules stay."""
    if agent.health is not None:
        agent.workloads.call(agent.health.stop())
    for part in (agent.svc_informer, agent.proxy_worker):
        if part is not None:
            part.stop()


def forget_kernel_state(agent) -> None:
    """What a machine's kernel loses when it goes down: its conntrack table (so no connection
    tracked before the crash steers a reused 4-tuple afterwards) and its neighbour cache."""
    conntrack.flush(agent.netns)
    links.neigh_flush(agent.netns, "all", check=False)


def crash(agent) -> dict:
    """The node and its pods stop; its link goes down."""
    t = time.time()
    set_link(agent, False)
    if agent.lease is not None:
        agent.lease.pause()
    stop_kube_proxy(agent)
    if agent.kubelet is not None:
        agent.kubelet.stop()
        agent.kubelet = None
    forget_kernel_state(agent)
    agent.fault_state = "crashed"
    log.warning("chaos: node crashed")
    return {"t": t, "action": "crash"}


def partition(agent) -> dict:
    """The link goes down and the lease is no longer renewed; processes live."""
    t = time.time()
    set_link(agent, False)
    if agent.lease is not None:
        agent.lease.pause()
    agent.fault_state = "partitioned"
    log.warning("chaos: node partitioned")
    return {"t": t, "action": "partition"}


def recover(agent) -> dict:
    """Undo a crash (reboot: kubelet and kube-proxy start fresh) or a partition."""
    t = time.time()
    state = getattr(agent, "fault_state", None)
    set_link(agent, True)
    if state == "crashed":
        agent.kubelet = Kubelet(agent.api, agent.name, agent.spec.ip, agent.names, agent.podnet,
                                agent.workloads, agent.timing, agent.run_dir, agent.dns,
                                services=lambda: agent.svc_informer.list("Service"),
                                slices=lambda: agent.svc_informer.list("EndpointSlice"))
        agent.start_kube_proxy()
        agent.kubelet.start()
    if agent.lease is not None:   # after a partition, its status sync re-posts pod readiness
        agent.lease.resume()
    agent.fault_state = None
    log.warning("chaos: node recovered from %s", state)
    return {"t": t, "action": "recover", "from": state}


def kube_proxy_crash(agent, down: float = 1.0) -> dict:
    """kube-proxy dies and is restarted after `down` seconds (full resync)."""
    t = time.time()
    stop_kube_proxy(agent)
    time.sleep(down)
    agent.start_kube_proxy()
    log.warning("chaos: kube-proxy restarted after %.1fs", down)
    return {"t": t, "action": "kube_proxy_crash", "restarted": time.time()}


def link_flap(agent, down: float = 1.0) -> dict:
    """The link goes down for `down` seconds."""
    t = time.time()
    set_link(agent, False)
    time.sleep(down)
    set_link(agent, True)
    return {"t": t, "action": "link_flap", "up": time.time()}


ACTIONS = {"crash": crash, "partition": partition, "recover": recover,
           "kube_proxy_crash": kube_proxy_crash, "link_flap": link_flap}
