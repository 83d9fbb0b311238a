"""Bring an emulated cluster up from a run plan, and take it down again.

The `Cluster` owns the run's Ray session and every actor: API server, controller
manager, SDN controller, one fabric per machine, and node hosts: processes that each run
the agents of many nodes and client hosts of one machine (emulator/node/host_process.py).
Used as a context manager so teardown runs on success, failure and Ctrl-C alike.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any, Callable

import ray

from emulator.api.server import ApiServer
from emulator.cloud.controller import CloudController
from emulator.config.timing import Timing
from emulator.control.manager import ControllerManager
from emulator.errors import KubemuError, PrerequisiteError, Timeout
from emulator.fabric.machine import Machine
from emulator.fabric.pki import make_pki
from emulator.fabric.sdn import SdnController
from emulator.naming import RunNames
from emulator.node.host_process import NodeHost
from emulator.records.cloud import CloudFacts, CloudHost
from emulator.records.hosts import HostInfo
from emulator.runner import cleanup, ray_local, signals
from emulator.runner.client import ClusterClient
from emulator.runner.machines import Machines
from emulator.runner.node_hosts import (HOSTS_PER_PROCESS, HostedAgent, max_calls, plan_groups,
                                        shared_informers_wanted)
from emulator.runner.plan import RunPlan, node_object, system_objects

log = logging.getLogger(__name__)
ACTOR_OPTS = {"num_cpus": 0, "max_concurrency": 64}   # control plane and fabric actors
ANSWER_TIMEOUT = 10.0   # seconds an actor of a lost machine may take to be seen dead
SDN_CONNECT_TIMEOUT = 60.0   # seconds for every machine's bridge to connect to the SDN controller at bring-up
Progress = Callable[[str], None]


def check_prerequisites() -> None:
    """Root and the commands kubemu drives; a clear error when one is missing."""
    if os.geteuid() != 0:
        raise PrerequisiteError("kubemu needs root (network namespaces, iptables, Open vSwitch)")
    for cmd in ("ip", "mnexec", "ovs-vswitchd", "ovsdb-server", "iptables-restore", "dnsmasq", "ethtool"):
        if shutil.which(cmd) is None and not os.path.exists(f"/usr/sbin/{cmd}"):
            raise PrerequisiteError(f"command {cmd!r} not found: run ./scripts/setup.sh")


class Cluster:
    """Every actor of one run; `up()` builds, `down()` removes everything."""

    def __init__(self, run_id: str, run_dir: str, plan: RunPlan, timing: Timing,
                 progress: Progress = lambda s: None, ray_address: str | None = None,
                 machines: tuple[int, str] | None = None, hosts_per_process: int = HOSTS_PER_PROCESS,
                 shared_informers: bool | None = None) -> None:
        self.run_id, self.run_dir, self.plan, self.timing = run_id, run_dir, plan, timing
        self.names = RunNames(run_id)
        self.progress = progress
        self.ray_address = ray_address
        self.api = None
        self.controllers = None
        self.cloud = None
        self.sdn = None
        self.machines: list = []
        self.machine_spec = machines or (1, "spread")  # machine count, placement policy
        self.fleet = None  # emulator.runner.machines.Machines
        self.hosts_per_process = hosts_per_process
        self.shared_informers = shared_informers_wanted() if shared_informers is None else shared_informers
        self.host_groups: list[tuple[int, str, Any]] = []   # (machine, actor name, NodeHost actor)
        self.agents: dict[str, HostedAgent] = {}   # host name -> its agent in its node host
        self.host_info: dict[str, HostInfo] = {}
        self.controller_target = ""   # what every machine's bridge connects to
        self.tls: dict[str, str] | None = None
        self.dns: dict = {}   # the nodes' resolver settings
        self.timeline: dict[str, float] = {}
        self.down_nodes: set[str] = set()   # crashed or partitioned by a fault step
        self.on_down: list[Callable[[], None]] = []   # run first by down() (a live run's endpoint)
        self._t0 = time.time()

    def mark(self, what: str) -> None:
        self.timeline[what] = round(time.time() - self._t0, 3)

    # --- context manager ---
    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # --- bring-up ---
    def up(self) -> None:
        """Ray, API server, fabric, SDN controller, hosts, node components, system pods."""
        state = cleanup.state_dir(self.run_id)
        cleanup.write_driver_record(self.run_id, self.run_dir)
        os.environ[cleanup.RUN_ENV] = self.run_id
        self.progress("starting Ray")
        local = not self.ray_address
        # Ray 2.60 enables token authentication for a new local cluster and announces it on
        # the terminal: keep it on, without the announcement.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # A local Ray listens on loopback only and asks no cloud metadata server (ray_local).
        ray_local.init(self.ray_address, cleanup.ray_temp_dir(self.run_id), include_dashboard=False,
                       log_to_driver=False,
                       # the node hosts (and control plane actors): let them all start at once
                       _system_config={"worker_maximum_startup_concurrency": 16} if local else None,
                       configure_logging=False, namespace=f"kubemu{self.run_id}")
        self.mark("ray")
        opts = ACTOR_OPTS
        self.fleet = Machines(self.run_id, state, os.path.join(self.run_dir, "logs"), self.plan.hosts,
                              *self.machine_spec, ray_address=self.ray_address)
        self.fleet.start_ray_nodes(self.progress)
        # the control plane runs on machine 0, with the driver: other machines may fail
        pinned = self.fleet.options(0)
        # Durable (a journal in the state dir) and restarted by Ray after a crash.
        # every node keeps a long-poll watch open (its kubelet's), plus its calls: an async actor's
        # default of 1000 concurrent calls queued every other call behind watches at 1000 nodes
        calls = 1000 + 4 * len(self.plan.hosts)
        self.api = ray.remote(ApiServer).options(name="api", num_cpus=0, max_restarts=-1, max_task_retries=-1,
                                                 max_concurrency=calls, **pinned).remote(
            self.plan.service_range, os.path.join(state, "api-journal.jsonl"))
        # The controller binds its own socket: a unix socket in the state dir (0700 dir, 0600
        # socket) on one host, else TCP on a free port (remembered for a restart; the machines'
        # relays ask the actor for its address at every connection) with mutual TLS (a CA and
        # certificates made for the run). Ray restarts a crashed
        # controller at the same place; switches reconnect and keep forwarding meanwhile, and
        # the cloud controller pushes the desired state again (it lives in the API server).
        tls = None
        if self.fleet.remote_controller:
            tls = make_pki(self.names.prefix, self.fleet.controller_host)
            sdn_args: tuple = (0, self.fleet.controller_host)
            sdn_kw = {"port_file": os.path.join(state, "sdn", "port"), "tls": tls}
        else:
            sdn_args, sdn_kw = (0, os.path.join(state, "sdn", "openflow.sock")), {}
        self.sdn = ray.remote(SdnController).options(name="sdn", max_restarts=-1, **opts, **pinned).remote(
            *sdn_args, **sdn_kw)
        self.controller_target = "sdn" if self.fleet.remote_controller else ray.get(self.sdn.address.remote())["target"]
        self.tls = tls
        self.machines = self.fleet.create_actors(ray.remote(Machine), opts)
        self.progress("starting Open vSwitch and the SDN controller")
        self.start_node_hosts()
        fabric = self.fleet.start(self.controller_target, tls)[0]
        self.fabric_info = fabric
        self.mark("fabric")
        self.progress(f"creating {len(self.plan.nodes)} nodes and {len(self.plan.clients)} client hosts")
        infos = ray.get([a.create.remote(self.fleet.netns_of(n)) for n, a in self.agents.items()])
        self.host_info = {i.name: i for i in infos}
        self.fleet.add_ports({i.name: i.fabric_port for i in infos})
        self.mark("hosts")
        for spec in self.plan.nodes:
            info = self.host_info[spec.name]
            ray.get(self.api.create.remote(node_object(spec, info.mac, f"machine-{self.fleet.machine_of(spec.name)}",
                                                       info.node_info)))
        self.start_cloud_controller()
        # OVS retries a failed controller connection with a backoff growing to 8 s: on a busy
        # machine (load average 30) the first TLS handshakes can fail for 20 s and more
        try:
            ray.get(self.sdn.wait_connected.remote([i["dpid"] for i in self.fleet.infos], SDN_CONNECT_TIMEOUT))
        except Timeout as e:
            raise Timeout(f"{getattr(e, 'cause', e)}; {self._connection_reports()}") from None
        self.mark("sdn")
        # Stateless (it rebuilds everything from the API server): Ray restarts it after a crash.
        self.controllers = ray.remote(ControllerManager).options(
            name="controllers", max_restarts=-1, max_task_retries=-1, **opts, **pinned).remote(
            "api", self.run_dir, timing=self.timing, autostart=True)
        ray.get(self.controllers.start.remote())
        self.dns = {"nameserver": self.plan.dns_ip,
                    "search": ["{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"]}
        ray.get([self.agents[s.name].start.remote(self.api, self.timing, self.dns)
                 for s in self.plan.nodes])
        backend = ray.get(self.agents[self.plan.nodes[0].name].iptables_backend.remote())
        self.progress(f"kubelet and kube-proxy running on every node (iptables backend: {backend})")
        ray.get([self.api.patch_status.remote("Node", "", spec.name, {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"}]}) for spec in self.plan.nodes])
        for obj in system_objects(self.plan.dns_ip):
            ray.get(self.api.apply.remote(obj))
        self.mark("nodes")
        self.progress("waiting for kube-dns")
        self.wait_for(ClusterClient(self).ready_check("Deployment", "kube-system", "kube-dns"),
                      60 * self.wait_scale, "kube-dns to be ready")
        self.wait_proxies_synced(60 * self.wait_scale)
        self.mark("dns")

    def _connection_reports(self) -> str:
        """Each machine's OVS view of its controller connection, written to logs/ovs-machine-<i>.txt;
        one line naming them (the run's state, OVS's log included, goes at teardown)."""
        lines, paths = [], []
        for i, actor in enumerate(self.fleet.actors):
            try:
                report = ray.get(actor.connection_report.remote(), timeout=30)
            except Exception as e:   # noqa: BLE001 - a report of a failure already raised
                report = {"summary": f"machine {i}: no report ({type(e).__name__})", "text": f"{e}\n"}
            path = os.path.join(self.run_dir, "logs", f"ovs-machine-{i}.txt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(report["text"])
            lines.append(report["summary"])
            paths.append(os.path.relpath(path, self.run_dir))
        return f"Open vSwitch says: {'; '.join(lines)} (details and its log: {', '.join(paths)} in the run directory)"

    def start_node_hosts(self, only: int | None = None) -> None:
        """One NodeHost actor per group of hosts of a machine, pinned to it; a handle per host.
        `only`: (again) the node hosts of that machine, on its current Ray node."""
        specs = {s.name: s for s in self.plan.hosts}
        host_cls = ray.remote(NodeHost)
        groups = plan_groups(self.fleet.placement, self.fleet.count, self.hosts_per_process,
                             alone=frozenset(s.name for s in self.plan.probers))
        again = f"-r{self.fleet.rebuilds}" if only is not None else ""   # a name of a dead actor may linger
        self.host_groups = [g for g in self.host_groups if g[0] != only]
        for k, (machine, names) in enumerate(groups):
            if only is not None and machine != only:
                continue
            label = f"{machine}-{k}{again}"
            actor = host_cls.options(name=f"nodehost-{label}", num_cpus=0, max_concurrency=max_calls(len(names)),
                                     **self.fleet.options(machine)).remote(
                self.run_id, [specs[n] for n in names], self.run_dir, label, self.shared_informers)
            self.host_groups.append((machine, f"nodehost-{label}", actor))
            self.agents.update({n: HostedAgent(actor, n) for n in names})
        self.agents = {s.name: self.agents[s.name] for s in self.plan.hosts}   # plan order

    @property
    def node_hosts(self) -> list:
        """The NodeHost actors of the machines that are up."""
        lost = self.fleet.lost if self.fleet is not None else set()
        return [a for m, _, a in self.host_groups if m not in lost]

    def lost_hosts(self) -> set[str]:
        """The hosts of machines whose Ray node failed (their agents died with it)."""
        return {h for m in self.fleet.lost for h in self.fleet.hosts_on(m)} if self.fleet else set()

    # --- a machine failing for real (its Ray node), and coming back ---
    def lose_machine(self, machine: int) -> dict:
        """Machine `machine`'s Ray node goes down with everything of the run on it; which of its
        actors the driver then sees dead (RayActorError)."""
        actors = {self.fleet.actor_names[machine]: self.fleet.actors[machine],
                  **{name: a for m, name, a in self.host_groups if m == machine}}
        out = self.fleet.stop_ray_node(machine)
        out["actors_lost"] = sorted(name for name, a in actors.items() if not _answers(a))
        return out

    def rebuild_machine(self, machine: int) -> dict:
        """After machine `machine` rejoined Ray: its fabric and hosts again, from the plan (same
        names, addresses and MACs), its nodes started (kubelet restarts the pods bound to them)."""
        t0 = time.time()
        self.fleet.rebuild(machine, ray.remote(Machine), ACTOR_OPTS,
                           self.controller_target, self.tls)
        self.start_node_hosts(only=machine)
        hosts = self.fleet.hosts_on(machine)
        infos = ray.get([self.agents[h].create.remote(self.fleet.netns_of(h), self.host_info[h].mac) for h in hosts])
        self.host_info.update({i.name: i for i in infos})
        self.fleet.add_ports({i.name: i.fabric_port for i in infos})
        fabric_s = round(time.time() - t0, 3)
        nodes = [s.name for s in self.plan.nodes if s.name in set(hosts)]
        ray.get([self.agents[n].start.remote(self.api, self.timing, self.dns) for n in nodes])
        started_s = round(time.time() - t0, 3)
        # a fresh namespace has no rules: its node serves once its kube-proxy wrote them
        self.wait_proxies_synced(60 * self.wait_scale, set(nodes))
        return {"fabric_and_hosts_s": fabric_s, "nodes_started_s": started_s,
                "proxies_synced_s": round(time.time() - t0, 3)}

    def wait_proxies_synced(self, timeout: float, nodes: set[str] | None = None) -> float:
        """Wait until every up node's kube-proxy (or every one of `nodes`) has programmed every
        Service/EndpointSlice change so far."""
        svcs, _ = ray.get(self.api.list.remote("Service"))
        slices, _ = ray.get(self.api.list.remote("EndpointSlice"))
        # The newest logged event counts too: a deletion shows in no listed object.
        last = ray.get(self.api.last_event_rv.remote(["Service", "EndpointSlice"]))
        want = max([int(o["metadata"]["resourceVersion"]) for o in svcs + slices] + [last])

        def synced() -> bool:
            return min(self.proxy_marks(nodes).values(), default=want) >= want
        return self.wait_for(synced, timeout, "kube-proxy on every node to program the Services", 0.05)

    @property
    def wait_scale(self) -> float:
        """How much longer than at 100 nodes or fewer a cluster-wide wait may take (a thousand nodes: 10x)."""
        return max(1.0, len(self.plan.nodes) / 100)

    def proxy_marks(self, nodes: set[str] | None = None) -> dict[str, int]:
        """Each up node's (or each of `nodes`') kube-proxy sync mark (the newest API change in its
        rules): one call per node host."""
        up = nodes if nodes is not None else {s.name for s in self.plan.nodes if s.name not in self.down_nodes}
        marks: dict[str, int] = {}
        for part in ray.get([h.proxy_synced_rvs.remote() for h in self.node_hosts]):   # lost machines left out
            marks.update({n: m for n, m in part.items() if n in up})
        return marks

    def late_probes(self) -> dict[str, tuple[int, int]]:
        """Nodes whose readiness probes were answered late from load: node -> (answers, passed)."""
        out: dict[str, tuple[int, int]] = {}
        for part in ray.get([h.late_probes.remote() for h in self.node_hosts]):   # lost machines left out
            out.update(part)
        return out

    def start_cloud_controller(self) -> None:
        """The GCP side: load balancer IPs, health checks, firewall; it programs the VPC."""
        p = self.plan
        facts = CloudFacts(
            cluster_name=p.cluster_name, subnet=p.subnet, pod_range=p.cluster_cidr,
            external_range=p.external_range, dpid=self.fabric_info["dpid"],
            state_dir=cleanup.state_dir(self.run_id),   # the IAP key lives there
            gateways=sorted({p.gateway, p.internet_gateway} | {h.gateway for h in p.probers}),
            hosts=[CloudHost(**s.model_dump(), mac=self.host_info[s.name].mac, dpid=self.fleet.dpid_of(s.name))
                   for s in p.hosts],
            extra={"tunnels": self.fleet.vpc_tunnels()} if self.fleet.vpc_tunnels() else None)  # several machines
        prober = self.agents[p.probers[0].name]
        self.cloud = ray.remote(CloudController).options(name="cloud", num_cpus=0, max_concurrency=16,
                                                         **self.fleet.options(0)).remote(
            self.api, self.sdn, prober, facts, self.timing, p.firewall, self.run_dir,
            source_ranges_in_firewall=False)
        ray.get(self.cloud.reconcile_now.remote())

    def restart_sdn_controller(self) -> None:
        """Kill the SDN controller's process; Ray starts a new one (a chaos action)."""
        ray.kill(self.sdn, no_restart=False)

    def sdn_ready(self, since: float = 0.0) -> bool:
        """The SDN controller (one started after `since`, epoch seconds) has every machine's
        bridge connected and programmed; False while Ray restarts it."""
        try:
            if ray.get(self.sdn.started.remote(), timeout=5) <= since:
                return False
            return {i["dpid"] for i in self.fleet.infos} <= set(ray.get(self.sdn.connected_datapaths.remote(),
                                                                        timeout=5))
        except (ray.exceptions.RayError, TimeoutError):
            return False

    def restart_controller_manager(self) -> None:
        """Kill the controller manager's process; Ray starts a new one, which relists."""
        ray.kill(self.controllers, no_restart=False)

    def restart_api_server(self) -> None:
        """Kill the API server's process; Ray starts a new one that replays its journal."""
        ray.kill(self.api, no_restart=False)

    # --- queries used by steps ---
    def wait_for(self, check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
        """Poll `check` until true; returns the seconds waited; Timeout otherwise."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if check():
                return time.time() - t0
            time.sleep(interval)
        raise Timeout(f"timed out after {timeout:g}s waiting for {what}")

    def agent_of_pod(self, namespace: str, name: str):
        pod = ray.get(self.api.get.remote("Pod", namespace, name))
        if pod is None or not pod["spec"].get("nodeName"):
            raise KubemuError(f"pod {namespace}/{name} is not scheduled")
        return self.agents[pod["spec"]["nodeName"]]

    # --- teardown ---
    def down(self) -> None:
        """Stop every actor (each removes its own kernel objects), then Ray; sweep leftovers.

        A stop signal meanwhile is reported, not raised: the teardown never stops halfway."""
        with signals.teardown():
            try:
                self._down()
            finally:
                # Processes started after this (by a test process, say) are not this run's.
                if os.environ.get(cleanup.RUN_ENV) == self.run_id:
                    del os.environ[cleanup.RUN_ENV]

    def _down(self) -> None:
        for fn in self.on_down:
            try:
                fn()
            except Exception:
                log.warning("stopping %s failed", fn, exc_info=True)
        if not ray.is_initialized():
            cleanup.clean_run(self.run_id)
            return
        self.progress("tearing down")
        for actor in (self.cloud, self.controllers):
            if actor is not None:
                try:
                    ray.get(actor.stop.remote(), timeout=10)
                except Exception:
                    log.warning("controller stop failed", exc_info=True)
        lost = self.lost_hosts()   # their agents died with their machine, and its kernel objects
        refs = {h: a.shutdown.remote() for h, a in self.agents.items() if h not in lost}
        died: dict[str, list[str]] = {}   # a dead node host process: one line for all its hosts
        for h, r in refs.items():
            try:
                ray.get(r, timeout=60)
            except ray.exceptions.ActorDiedError as e:
                died.setdefault(getattr(e, "actor_id", None) or "?", []).append(h)
            except Exception:
                log.warning("host %s shutdown failed", h, exc_info=True)
        for actor_id, hosts in died.items():
            log.warning("the process of %d hosts (%s) died before their shutdown (actor %s); "
                        "the run's cleanup sweeps what they left", len(hosts), ", ".join(hosts[:5]) +
                        (", ..." if len(hosts) > 5 else ""), actor_id)
        for actor in [self.sdn, *(self.fleet.live_actors() if self.fleet else [])]:
            if actor is not None:
                try:
                    ray.get(actor.stop.remote(), timeout=20)
                except Exception:
                    log.warning("stop failed", exc_info=True)
        if self.fleet is not None:
            self.fleet.remove_underlay()
        ray.shutdown()
        if self.fleet is not None:
            self.fleet.stop_ray_nodes()  # simulated machines
        left = cleanup.clean_run(self.run_id)
        if any(left.values()):
            log.info("swept leftovers: %s", left)


def _answers(actor) -> bool:
    """Whether an actor still answers (False: Ray reports it dead, or it does not reply in time)."""
    try:
        ray.get(actor.__ray_ready__.remote(), timeout=ANSWER_TIMEOUT)
        return True
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return False
