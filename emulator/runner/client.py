"""The driver's one door to a running cluster: queries, typed waits and actions over the Ray actors.

Step executors and chaos code ask this facade instead of calling `ray.get(actor.m.remote())`
themselves. It owns no networking rule: whether a load balancer sends to the nodes it
should is the cloud controller's answer, datapath revalidation the machines' OVS's.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import ray

from emulator.control.objects import condition
from emulator.errors import KubemuError, Timeout
from emulator.node.containers import pod_state, waiting_reasons

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
NETPOL_KINDS = ["NetworkPolicy", "Pod", "Namespace"]


class ClusterClient:
    """Queries, waits and actions of the driver against the cluster's actors."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster

    # --- the API server ---
    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        """The object, None when it does not exist."""
        return ray.get(self.cluster.api.get.remote(kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None, selector: dict | None = None) -> list[dict]:
        """The objects of a kind (in a namespace, matching a label selector)."""
        return ray.get(self.cluster.api.list.remote(kind, namespace, selector))[0]

    def apply(self, obj: dict) -> Any:
        """Create or update an object (`kubectl apply`)."""
        return ray.get(self.cluster.api.apply.remote(obj))

    def update(self, obj: dict) -> Any:
        """Replace an object."""
        return ray.get(self.cluster.api.update.remote(obj))

    def delete(self, kind: str, namespace: str, name: str, grace: int | None = None) -> Any:
        """Delete an object (`grace`: seconds of graceful termination, None: the pod's own)."""
        return ray.get(self.cluster.api.delete.remote(kind, namespace, name, grace))

    def timed_events(self, kind: str, since: float) -> list[tuple[float, str, dict]]:
        """The API server's events of a kind since `since` (epoch seconds), with their times."""
        return ray.get(self.cluster.api.timed_events.remote(kind, since))

    def service_slices(self, namespace: str | None, service: str) -> list[dict]:
        """The EndpointSlices of a Service."""
        return self.list("EndpointSlice", namespace, {SERVICE_NAME_LABEL: service})

    def deployment_pods(self, namespace: str, name: str) -> list[dict]:
        """The pods a Deployment's matchLabels select ([] without a Deployment or selector)."""
        dep = self.get("Deployment", namespace, name)
        sel = ((dep or {}).get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        return self.list("Pod", namespace, sel) if sel else []

    def agent_of_pod(self, namespace: str, name: str):
        """The node agent of the node a pod is scheduled on."""
        return self.cluster.agent_of_pod(namespace, name)

    def exec_in_pods(self, argv: dict[str, list[str]], timeout: float) -> dict[str, dict]:
        """Run a command in each pod (`ns/name` -> argv) at once; `ns/name` -> {rc, stdout, stderr}."""
        refs = {src: self.agent_of_pod(*src.split("/", 1)).exec.remote(src, cmd, timeout)
                for src, cmd in argv.items()}
        return {src: ray.get(ref) for src, ref in refs.items()}

    def conntrack_from(self, host: str, source_ip: str) -> list[str]:
        """A host's conntrack entries of flows `source_ip` started."""
        return ray.get(self.cluster.agents[host].conntrack_from.remote(source_ip))

    def agent(self, host: str):
        """The node agent of a host (a node, client or prober)."""
        return self.cluster.agents[host]

    def start_flow(self, agent, target: str, kind: str, params: dict, out_name: str) -> Any:
        """Start a traffic generator on an agent; the pending call (see `result`)."""
        return agent.run_flow.remote(target, kind, params, out_name)

    def run_flow(self, agent, target: str, kind: str, params: dict, out_name: str) -> list[dict]:
        """Run a traffic generator on an agent (in pod `target`, or its host when "") and wait; its records."""
        return self.result(self.start_flow(agent, target, kind, params, out_name))

    # --- readiness and typed waits ---
    def wait_for(self, check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
        """Poll `check` until true; the seconds waited; Timeout otherwise."""
        return self.cluster.wait_for(check, timeout, what, interval)

    def ready(self, kind: str, namespace: str, name: str) -> bool:
        """Whether a Deployment, Pod, Service (endpoints and load balancer) or Ingress is ready."""
        if kind == "Deployment":
            d = self.get("Deployment", namespace, name)
            if d is None:
                return False
            st, want = d.get("status", {}), d["spec"].get("replicas", 1)
            return st.get("readyReplicas", 0) >= want and st.get("updatedReplicas", 0) >= want \
                and st.get("replicas", 0) == want
        if kind == "Pod":
            p = self.get("Pod", namespace, name)
            return p is not None and condition(p, "Ready")
        if kind == "Service":
            ready = [e for s in self.service_slices(namespace, name) for e in s.get("endpoints", [])
                     if e.get("conditions", {}).get("ready")]
            if not ready:
                return False
            svc = self.get("Service", namespace, name)
            if svc is None or svc["spec"].get("type") != "LoadBalancer" or self.cluster.cloud is None:
                return svc is not None
            return self.lb_ready(svc, {e.get("nodeName") for e in ready})
        if kind == "Ingress":
            return self.ingress_state(namespace, name)[0]
        raise KubemuError(f"cannot wait for {kind}")

    def ready_check(self, kind: str, namespace: str, name: str) -> Callable[[], bool]:
        """A callable telling whether the object is ready (see `ready`)."""
        return lambda: self.ready(kind, namespace, name)

    def wait_ready(self, kind: str, namespace: str, name: str, timeout: float, what: str | None = None) -> float:
        """Wait until the object is ready; Timeout naming why its pods are not, when they say."""
        try:
            return self.wait_for(self.ready_check(kind, namespace, name), timeout, what or f"{kind} {name}")
        except Timeout as e:
            why = self.pod_problems(kind, namespace, name)
            if not why:
                raise
            raise Timeout(f"{e}: {'; '.join(why)}") from None

    def pod_problems(self, kind: str, namespace: str, name: str) -> list[str]:
        """Why the pods behind a Pod or Deployment are not ready: `pod/x: c: CrashLoopBackOff (...)`."""
        out = []
        if kind == "Pod":
            pods = [p for p in [self.get("Pod", namespace, name)] if p]
        elif kind == "Deployment":
            pods = self.deployment_pods(namespace, name)
            dep = self.get("Deployment", namespace, name) or {}
            st = dep.get("status", {})
            out.append(f"deployment/{name} wants {dep.get('spec', {}).get('replicas', 1)}, status says "
                       f"{st.get('readyReplicas', 0)} ready, {st.get('updatedReplicas', 0)} updated, "
                       f"{st.get('replicas', 0)} in all; {len(pods)} pod(s) match")
        else:
            return []
        for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
            reasons = waiting_reasons(p) or [pod_state(p)]
            out += [f"pod/{p['metadata']['name']}: {r}" for r in reasons]
        return out

    def wait_proxies_synced(self, timeout: float) -> float:
        """Wait until every up node's kube-proxy has programmed every Service change so far."""
        return self.cluster.wait_proxies_synced(timeout)

    def wait_policies_synced(self, timeout: float) -> float:
        """Wait until every node's enforcer has applied every policy/pod/namespace change so far."""
        cluster = self.cluster
        if not any(n.network_policy for n in cluster.plan.nodes):
            return 0.0
        objs = [o for k in NETPOL_KINDS for o in self.list(k)]
        want = max([int(o["metadata"]["resourceVersion"]) for o in objs]
                   + [ray.get(cluster.api.last_event_rv.remote(NETPOL_KINDS))])
        lost = cluster.lost_hosts()
        agents = [cluster.agents[n.name] for n in cluster.plan.nodes if n.name not in lost]

        def synced() -> bool:
            return min(ray.get([a.netpol_synced_rv.remote() for a in agents])) >= want
        return self.wait_for(synced, timeout, "every node to enforce the network policies", 0.05)

    def wait_sdn_ready(self, since: float, timeout: float) -> float:
        """Wait until an SDN controller started after `since` has every machine's bridge connected."""
        return self.wait_for(lambda: self.cluster.sdn_ready(since), timeout,
                             "the restarted SDN controller to program the bridges", 0.2)

    # --- the cloud controller ---
    def lb_ready(self, svc: dict, endpoint_nodes: set[str]) -> bool:
        """A load balancer is ready when it has an IP and the cloud controller's pushed state sends
        to exactly the nodes it should (its rule; see CloudController.lb_converged)."""
        if not (svc.get("status", {}).get("loadBalancer", {}).get("ingress")):
            return False
        return ray.get(self.cluster.cloud.lb_converged.remote(
            svc, sorted(n for n in endpoint_nodes if n), sorted(self.cluster.down_nodes)))

    def health_events(self) -> list[dict] | None:
        """The cloud controller's health check transitions (None without one)."""
        return None if self.cluster.cloud is None else ray.get(self.cluster.cloud.health_events.remote())

    def late_health_answers(self) -> dict | None:
        """Health-check answers that came late from load (None without a cloud controller or any)."""
        return None if self.cluster.cloud is None else ray.get(self.cluster.cloud.late_answers.remote())

    def late_readiness_answers(self) -> dict | None:
        """Readiness probes of kubemu's own servers answered late from load: {answers, passed,
        nodes} (None if none)."""
        late = self.cluster.late_probes()
        if not late:
            return None
        return {"answers": sum(a for a, _ in late.values()), "passed": sum(p for _, p in late.values()),
                "nodes": sorted(late)}

    def ingress_view(self) -> dict:
        """The cloud controller's Ingress load balancers (errors, applied versions, backends)."""
        return ray.get(self.cluster.cloud.ingresses.remote())

    def ingress_state(self, namespace: str, name: str) -> tuple[bool, str]:
        """(ready, why not): the Ingress has an address, no errors, its current version is live
        on the proxy and in the VPC, and every backend it uses has a server passing health checks."""
        ing = self.get("Ingress", namespace, name)
        if ing is None:
            return False, "the Ingress does not exist"
        status = ing.get("status") or {}
        if status.get("errors"):
            return False, "; ".join(status["errors"])
        if not (status.get("loadBalancer") or {}).get("ingress"):
            return False, "no address yet"
        if self.cluster.cloud is None:
            return False, "no cloud controller"
        entry = self.ingress_view().get("ingresses", {}).get(f"{namespace}/{name}")
        if entry is None or entry["applied_rv"] != ing["metadata"].get("resourceVersion"):
            return False, "the load balancer does not run this version yet"
        servers = ray.get(self.gfe_agent().proxy_servers.remote())
        for be in entry["backends"]:
            if not any(st.startswith("UP") for st in servers.get(be, {}).values()):
                return False, f"no healthy server in {be} ({servers.get(be) or 'none'})"
        return True, ""

    def gfe_agent(self):
        """The Google front end host's agent (the prober host runs the proxy)."""
        return self.cluster.agents[self.cluster.plan.probers[0].name]

    def wait_ingress(self, namespace: str, name: str, timeout: float) -> float:
        """Wait until `ingress_state` is ready; KubemuError naming the reason otherwise."""
        t0 = time.time()
        why = ""
        while time.time() - t0 < timeout:
            ok, why = self.ingress_state(namespace, name)
            if ok:
                return time.time() - t0
            time.sleep(0.1)
        raise KubemuError(f"Ingress {namespace}/{name} not ready after {timeout:g}s: {why}")

    def ingress_ip(self, namespace: str, name: str) -> str:
        """The external address in an Ingress's status (the `{ingressip:NAME}` placeholder)."""
        ing = self.get("Ingress", namespace, name)
        ips = ((ing or {}).get("status", {}).get("loadBalancer") or {}).get("ingress") or []
        if not ips:
            raise KubemuError(f"Ingress {namespace}/{name} has no address yet")
        return ips[0]["ip"]

    # --- the fabric ---
    def wait_revalidated(self) -> None:
        """Wait until every machine's OVS datapath caches reflect its flow tables (`ovs-appctl
        revalidator/wait`): an acknowledged flow change is then what packets meet."""
        ray.get([m.wait_revalidated.remote() for m in self.cluster.fleet.live_actors()])

    # --- chaos: nodes, machines, control plane ---
    @property
    def down_nodes(self) -> set[str]:
        """The nodes a fault crashed or partitioned (a copy)."""
        return set(self.cluster.down_nodes)

    def node_chaos(self, hosts: list[str], action: str, **params) -> list[dict]:
        """Have each host's agent do a chaos action (crash, partition, recover, kube_proxy_crash, ...)."""
        return ray.get([self.cluster.agents[h].chaos.remote(action, **params) for h in hosts])

    def host_chaos_start(self, actions: dict[str, str]) -> list:
        """Start a chaos action on each host's agent (host -> action); the pending calls (see `result`)."""
        return [self.cluster.agents[h].chaos.remote(a) for h, a in actions.items()]

    def result(self, pending: Any) -> Any:
        """The value of pending calls this client started."""
        return ray.get(pending)

    def mark_down(self, nodes: list[str]) -> None:
        """Record nodes as down (kube-proxy syncs and LB rules no longer expect them)."""
        self.cluster.down_nodes.update(nodes)

    def mark_up(self, nodes: list[str]) -> None:
        """Record nodes as up again."""
        self.cluster.down_nodes.difference_update(nodes)

    def set_machine_online(self, machine: int, up: bool) -> Any:
        """An ObjectRef: the machine's fabric taken off (or put back on) the tunnels and controller."""
        return self.cluster.fleet.actors[machine].set_online.remote(up)

    def lose_machine(self, machine: int) -> dict:
        """Machine `machine`'s Ray node down with everything on it (real machines); what it took."""
        return self.cluster.lose_machine(machine)

    def wait_machine_rejoined(self, machine: int) -> float:
        """Seconds until a new Ray node of machine `machine` joined; KubemuError after the timeout."""
        return self.cluster.fleet.wait_rejoined(machine)

    def rebuild_machine(self, machine: int) -> dict:
        """Machine `machine`'s fabric and hosts built again on its new Ray node, its nodes started."""
        return self.cluster.rebuild_machine(machine)

    def sdn_connected(self) -> list[int]:
        """The datapath ids connected to the SDN controller."""
        return ray.get(self.cluster.sdn.connected_datapaths.remote())

    def sdn_wait_connected(self, dpids: list[int], timeout: float) -> None:
        """Wait until the SDN controller has these datapaths connected."""
        ray.get(self.cluster.sdn.wait_connected.remote(dpids, timeout))

    def sdn_flow_count(self, dpid: int) -> int:
        """How many flows the SDN controller reads on a bridge."""
        return len(ray.get(self.cluster.sdn.flow_stats.remote(dpid)))

    def restart(self, component: str) -> None:
        """Kill a control plane actor's process (sdn, controllers, api); Ray starts a new one."""
        c = self.cluster
        if component == "sdn":
            c.restart_sdn_controller()
        elif component == "controllers":
            c.restart_controller_manager()
            ray.get(c.controllers.ping.remote())
        elif component == "api":
            c.restart_api_server()
            ray.get(c.api.ping.remote())
        else:
            raise KubemuError(f"cannot restart {component}")

    def lifecycle_events(self) -> list[dict] | None:
        """The controller manager's node lifecycle events (None without one)."""
        c = self.cluster
        return None if c.controllers is None else ray.get(c.controllers.lifecycle_events.remote())

    def iptables_backend(self) -> str | None:
        """The iptables backend the nodes use (None when no agent answers)."""
        try:
            return ray.get(next(iter(self.cluster.agents.values())).iptables_backend.remote())
        except Exception:
            return None
