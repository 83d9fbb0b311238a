"""The machines of a run: their Ray nodes, their fabric actors, the underlay and the tunnels.

One machine (the default) is today's path: one `Machine` actor, no pinning, no tunnels.
With `count > 1` and no Ray address, kubemu simulates the machines on this host: the
driver's local Ray node is machine 0 and every other machine is one more Ray node
started here (`ray start --address ... --block`, on loopback like the driver's: ray_local) that advertises the custom resource
`kubemu<id>_machine_<i>`. Each machine gets its own `Machine` actor (fabric namespace,
private OVS, VPC bridge), pinned to its Ray node with Ray's NodeAffinitySchedulingStrategy,
as is every host's agent, by the placement policy. An emulated underlay joins the
machines' fabric namespaces and every bridge gets a VXLAN port to every other bridge.
With a Ray address, the machines are the cluster's nodes (the driver's first, the others
by address) and each tunnel is a kernel VXLAN device between two machines' real addresses,
the VPC bridge's tunnel port itself (emulator/fabric/kwire.py), or, where a machine's kernel
cannot make them (or KUBEMU_UNDERLAY=relay), OVS's VXLAN ports over a tap per machine
relayed over UDP (emulator/fabric/udpwire.py); the SDN controller then listens on the
driver's address so every machine's OVS reaches it.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from typing import Callable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from emulator.errors import ConfigError, KubemuError
from emulator.fabric import kwire, poweroff, underlay
from emulator.fabric.machine import KERNEL_MTU
from emulator.fabric.placement import by_machine, place
from emulator.naming import RunNames
from emulator.records.hosts import HostInfo, HostSpec
from emulator.runner import cleanup, ray_local

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
NODE_START_TIMEOUT = 90.0
NODE_DEAD_TIMEOUT = 90.0   # Ray's GCS marks a node dead after missed health checks (~15 s by default)
REJOIN_TIMEOUT = float(os.environ.get("KUBEMU_REJOIN_TIMEOUT", "300"))   # recover: a new Ray node of the machine
HEAD_RESOURCE = "node:__internal_head__"
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's minimum is 75 MiB; kubemu moves few objects
UNDERLAY_ENV = "KUBEMU_UNDERLAY"  # real machines: auto (kernel, else the relay) | kernel | relay
UNDERLAY_MODES = ("auto", "kernel", "relay")


def machine_resource(run_id: str, machine: int) -> str:
    """The custom resource a simulated machine's Ray node advertises."""
    return f"kubemu{run_id}_machine_{machine}"


class Machines:
    """Ray nodes, `Machine` actors, underlay and tunnels of one run; placement of its hosts."""

    def __init__(self, run_id: str, state_dir: str, log_dir: str, hosts: list[HostSpec], count: int = 1,
                 policy: str = "spread", ray_address: str | None = None) -> None:
        self.run_id, self.state_dir, self.log_dir = run_id, state_dir, log_dir
        self.names = RunNames(run_id)
        self.count, self.policy = count, policy
        self.real = bool(ray_address)
        self.placement = place(hosts, count, policy)
        self.node_ids: list[str] = []
        self.actors: list = []
        self.actor_names: list[str] = []
        self.infos: list[dict] = []
        self.mesh: list[list[underlay.TunnelSpec]] = []
        self.wire: underlay.EmulatedUnderlay | None = None
        self._procs: list[subprocess.Popen] = []
        self.underlay: dict = {"kind": "none" if count == 1 else "emulated-bridge"}
        self._fallback_reason = ""
        self.neighbors: dict[str, str] = {}   # underlay IP -> MAC (emulated underlay and relay)
        self.wires: dict[int, tuple[str, list]] = {}   # relay: machine -> (underlay MAC, [IP, port])
        self.lost: set[int] = set()   # machines whose Ray node failed (not yet rebuilt)
        self.rebuilds = 0

    # --- Ray nodes ---
    def start_ray_nodes(self, progress: Progress) -> None:
        """Find (real cluster) or start (simulated) one Ray node per machine."""
        driver_node = ray.get_runtime_context().get_node_id()
        if self.real:
            others = sorted((n for n in ray.nodes() if n["Alive"] and n["NodeID"] != driver_node),
                            key=lambda n: n["NodeManagerAddress"])
            self.node_ids = [driver_node] + [n["NodeID"] for n in others][:self.count - 1]
            if len(self.node_ids) < self.count:
                raise KubemuError(f"the Ray cluster has {len(self.node_ids)} nodes, the scenario wants "
                                  f"{self.count} machines")
            return
        self.node_ids = [driver_node]
        if self.count == 1:
            return
        extra = self.count - 1
        progress(f"starting {extra} more Ray node{'' if extra == 1 else 's'} (simulated machine{'' if extra == 1 else 's'})")
        gcs = ray.get_runtime_context().gcs_address
        os.makedirs(self.log_dir, exist_ok=True)
        for i in range(1, self.count):  # one at a time: parallel `ray start`s race for ports
            self.node_ids.append(self._start_node(i, gcs, ray_local.start_node_argv()))

    def _start_node(self, machine: int, gcs: str, ray_cmd: list[str], attempts: int = 2) -> str:
        """Start simulated machine `machine`'s Ray node; once more if it dies at start (a port
        taken meanwhile by another process: Ray picks free ports before binding them)."""
        for attempt in range(attempts):
            with open(os.path.join(self.log_dir, f"ray-machine-{machine}.log"), "a") as out:
                proc = subprocess.Popen(
                    [*ray_cmd, f"--address={gcs}", "--block", "--num-cpus=1",
                     f"--resources={json.dumps({machine_resource(self.run_id, machine): 1000})}",
                     f"--temp-dir={cleanup.ray_temp_dir(self.run_id)}", "--disable-usage-stats",
                     f"--object-store-memory={OBJECT_STORE_BYTES}"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
            self._procs.append(proc)
            try:
                return self._wait_node(machine, proc)
            except KubemuError:
                if proc.poll() is None or attempt == attempts - 1:
                    raise
                log.warning("Ray node of machine %d exited at start; starting it again", machine)
        raise AssertionError("unreachable")

    def _wait_node(self, machine: int, proc: subprocess.Popen) -> str:
        """The Ray node id of simulated machine `machine`, once it is alive."""
        res = machine_resource(self.run_id, machine)
        deadline = time.monotonic() + NODE_START_TIMEOUT
        while time.monotonic() < deadline:
            for n in ray.nodes():
                if n["Alive"] and res in n.get("Resources", {}):
                    return n["NodeID"]
            if proc.poll() is not None:
                raise KubemuError(f"Ray node of machine {machine} exited ({proc.returncode}); see "
                                  f"{self.log_dir}/ray-machine-{machine}.log")
            time.sleep(0.2)
        raise KubemuError(f"Ray node of machine {machine} did not join within {NODE_START_TIMEOUT:.0f}s")

    @property
    def remote_controller(self) -> bool:
        """Real machines reach the SDN controller over TCP; on one host it has a unix socket."""
        return self.real and self.count > 1

    @property
    def controller_host(self) -> str:
        """Where the SDN controller (on machine 0) listens: loopback unless real machines must reach it."""
        return ray.util.get_node_ip_address() if self.remote_controller else "127.0.0.1"

    def options(self, machine: int) -> dict:
        """Actor options that pin an actor to machine `machine` (none for a lone local machine)."""
        if self.count == 1 and not self.real:
            return {}
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(self.node_ids[machine], soft=False)}

    def host_options(self, host: str) -> dict:
        return self.options(self.placement[host])

    # --- fabric ---
    def create_actors(self, machine_cls, opts: dict) -> list:
        """One `Machine` actor per machine, on its Ray node."""
        state = self.state_dir
        self.actor_names = [f"machine-{i}" for i in range(self.count)]
        self.actors = [machine_cls.options(name=name, **opts, **self.options(i)).remote(
            self.run_id, i, state, use_system_ovs=self.count == 1) for i, name in enumerate(self.actor_names)]
        return self.actors

    def start(self, controller: str, tls: dict[str, str] | None = None) -> list[dict]:
        """Start every machine's OVS and bridge; with several, the underlay and the tunnels."""
        self.infos = ray.get([m.start.remote(controller, tls) for m in self.actors])
        if self.count == 1:
            return self.infos
        if not (self.real and self._open_kernel_tunnels()):
            addrs = [underlay.tunnel_address(i) for i in range(self.count)]
            plen = underlay.UNDERLAY_RANGE.prefixlen
            if self.real:
                attached = self._attach_relay(addrs, plen)
            else:  # simulated: a Linux bridge in the underlay namespace, a veth per machine
                self.wire = underlay.EmulatedUnderlay(self.run_id, self.count)
                links = self.wire.create()
                attached = ray.get([m.attach_underlay.remote(link, addr, plen)
                                    for m, link, addr in zip(self.actors, links, addrs)])
            self.neighbors = {a["underlay_ip"]: a["underlay_mac"] for a in attached}
            self.mesh = underlay.tunnel_mesh(self.names, addrs)
            for info, a in zip(self.infos, attached):
                info.update(underlay_ip=a["underlay_ip"], node_ip=a["node_ip"])
        ray.get([m.add_tunnels.remote([t.__dict__ for t in tunnels], self.neighbors)
                 for m, tunnels in zip(self.actors, self.mesh)])
        return self.infos

    def _open_kernel_tunnels(self) -> bool:
        """Real machines: a kernel VXLAN device per pair of machines, if every machine can make its
        own; else none is left, and the reason is kept for the relay (or raised: =kernel)."""
        mode = os.environ.get(UNDERLAY_ENV, "auto")
        if mode not in UNDERLAY_MODES:
            raise ConfigError(f"{UNDERLAY_ENV}={mode!r}: expected one of {', '.join(UNDERLAY_MODES)}")
        self._fallback_reason = f"{UNDERLAY_ENV}=relay"
        if mode == "relay":
            return False
        mesh = underlay.tunnel_mesh(self.names, [i["node_ip"] for i in self.infos])   # between real addresses
        errors = ray.get([m.open_kernel_tunnels.remote([t.__dict__ for t in tunnels])
                          for m, tunnels in zip(self.actors, mesh)])
        if not any(errors):
            self.mesh = mesh
            for info in self.infos:
                info["underlay_ip"] = info["node_ip"]   # the tunnels run between the machines' own addresses
            mtus = [m for m in ray.get([m.kernel_lan_mtu.remote() for m in self.actors]) if m is not None]
            self.underlay = {"kind": kwire.KIND, "udp_port": kwire.UDP_PORT,
                             "vnis": sorted({kwire.vni(self.run_id, t.machine, t.remote) for per in mesh for t in per}),
                             "lan_mtu": min(mtus) if mtus else None}
            return True
        ray.get([m.close_kernel_tunnels.remote() for m in self.actors])
        self._fallback_reason = "; ".join(f"machine-{i}: {e}" for i, e in enumerate(errors) if e)
        if mode == "kernel":
            raise KubemuError(f"no kernel underlay ({UNDERLAY_ENV}=kernel): {self._fallback_reason}")
        log.warning("kernel underlay impossible, falling back to the UDP relay: %s", self._fallback_reason)
        return False

    def _attach_relay(self, addrs: list[str], plen: int) -> list[dict]:
        """Real machines without kernel tunnels: a tap per machine, relayed over UDP between the
        machines' real addresses, under OVS's own VXLAN ports."""
        attached = ray.get([m.attach_udp_wire.remote(addr, plen) for m, addr in zip(self.actors, addrs)])
        self.wires = {a["machine"]: (a["underlay_mac"], a["wire"]) for a in attached}
        peers = dict(self.wires.values())
        ray.get([m.set_wire_peers.remote(peers) for m in self.actors])
        self.underlay = {"kind": "udp-relay", "fallback_reason": self._fallback_reason}
        return attached

    def describe_underlay(self) -> str:
        """One line for the CLI: which underlay joins the machines."""
        u = self.underlay
        if u["kind"] == kwire.KIND:
            vnis = ", ".join(map(str, u["vnis"]))
            note = kwire.fragmenting_note(u.get("lan_mtu"), KERNEL_MTU)
            return f"underlay: kernel VXLAN (UDP {u['udp_port']}, a device per pair of machines, VNI {vnis}) " \
                   "as the tunnels between machines" + (f"; {note}" if note else "")
        if u["kind"] == "udp-relay":
            return f"underlay: UDP relay (Python) between machines; no kernel path: {u['fallback_reason']}"
        return f"underlay: {u['kind']}"

    def underlay_counters(self) -> list[dict]:
        """Per machine: what its underlay link carried and refused."""
        live = dict(zip(self._live(), ray.get([m.underlay_counters.remote() for m in self.live_actors()])))
        return [live.get(i, {"kind": "lost", "machine": i}) for i in range(self.count)]

    def machine_of(self, host: str) -> int:
        return self.placement[host]

    def netns_of(self, host: str) -> str | None:
        return self.infos[self.placement[host]]["netns"]

    def dpid_of(self, host: str) -> int:
        return self.infos[self.placement[host]]["dpid"]

    def add_ports(self, ports: dict[str, str]) -> None:
        """Plug each host's fabric port (host name -> port) into its machine's bridge."""
        groups = by_machine({h: self.placement[h] for h in ports}, self.count)
        ray.get([self.actors[i].add_ports.remote([ports[h] for h in hosts])
                 for i, hosts in enumerate(groups) if hosts])

    def hosts_on(self, machine: int) -> list[str]:
        """The hosts placed on machine `machine`."""
        return by_machine(self.placement, self.count)[machine]

    def vpc_tunnels(self) -> list[dict]:
        """The tunnels of the VPC state (empty for one machine)."""
        return underlay.vpc_tunnels(self.mesh, [i["dpid"] for i in self.infos])

    def tunnel_counters(self) -> dict[str, dict[str, int]]:
        """Per tunnel port: its machine, the remote machine, packet and byte counters."""
        counters: dict[str, dict[str, int]] = {}
        for c in ray.get([m.tunnel_counters.remote() for m in self.live_actors()]):
            counters.update(c)
        return {t.port_name: {"machine": t.machine, "remote": t.remote, **counters.get(t.port_name, {})}
                for per in self.mesh for t in per}

    def summary(self, host_info: dict[str, HostInfo] | None = None) -> dict:
        """Where everything ran, for results.json: per machine its Ray node and hosts, per host
        its machine and the Ray node its agent reported running on."""
        host_info = host_info or {}
        machines = [{**{k: info.get(k) for k in ("machine", "bridge", "dpid", "netns", "underlay_ip", "node_ip",
                                                 "ran_on")}, "ray_node_id": node, "hosts": hosts}
                    for info, node, hosts in zip(self.infos, self.node_ids, by_machine(self.placement, self.count))]
        return {"count": self.count, "placement": self.policy, "simulated": self.count > 1 and not self.real,
                "underlay": dict(self.underlay), "machines": machines,
                "hosts": {h: {"machine": m, "ran_on": host_info[h].ray_node_id if h in host_info else None}
                          for h, m in self.placement.items()}}

    # --- a machine failing for real, and coming back ---
    @property
    def own_ray_nodes(self) -> bool:
        """Whether a machine failure can take a machine's Ray node down (real machines: --address)."""
        return self.real and self.count > 1

    def node_of(self, machine: int) -> dict:
        """ray.nodes()'s entry of machine `machine`'s current Ray node ({} if Ray lists none)."""
        return next((n for n in ray.nodes() if n["NodeID"] == self.node_ids[machine]), {})

    def stop_ray_node(self, machine: int, timeout: float = NODE_DEAD_TIMEOUT) -> dict:
        """Take machine `machine` down as a failing VM goes (emulator/fabric/poweroff.py): its raylet,
        workers and the run's processes and kernel objects there vanish; returns when Ray lists
        the node dead (seconds in `ray_node_dead_s`)."""
        node = self.node_of(machine)
        if HEAD_RESOURCE in node.get("Resources", {}):
            raise KubemuError(f"fault: machine {machine} runs the Ray head (GCS); its failure would end the "
                              "whole Ray cluster: fail a machine that runs a Ray worker node")
        t0 = time.monotonic()
        task = ray.remote(poweroff.start).options(num_cpus=0, max_retries=0, **self.options(machine))
        try:
            started = ray.get(task.remote(self.run_id, machine, self.state_dir), timeout=30)
        except (ray.exceptions.RayError, TimeoutError) as e:   # the node may die before the reply
            started = {"error": f"{type(e).__name__}"}
        self.lost.add(machine)
        while time.monotonic() - t0 < timeout:
            if not self.node_of(machine).get("Alive", False):
                return {**started, "ray_node_dead_s": round(time.monotonic() - t0, 3)}
            time.sleep(0.2)
        raise KubemuError(f"fault: machine {machine}'s Ray node {self.node_ids[machine]} still alive "
                          f"{timeout:.0f}s after its raylet was killed")

    def wait_rejoined(self, machine: int, timeout: float = REJOIN_TIMEOUT) -> float:
        """Wait for a new Ray node on machine `machine` (its address, another node id); seconds waited."""
        address, old = self.infos[machine]["node_ip"], self.node_ids[machine]
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for n in ray.nodes():
                if n["Alive"] and n["NodeManagerAddress"] == address and n["NodeID"] != old:
                    self.node_ids[machine] = n["NodeID"]
                    return round(time.monotonic() - t0, 3)
            time.sleep(0.5)
        gcs = ray.get_runtime_context().gcs_address
        raise KubemuError(f"fault: recover of machine {machine}: no Ray node joined from its address {address} "
                          f"within {timeout:.0f}s (KUBEMU_REJOIN_TIMEOUT); restart it there: "
                          f"`ray start --address={gcs}`")

    def rebuild(self, machine: int, machine_cls, opts: dict, controller: str, tls: dict[str, str] | None) -> dict:
        """A new `Machine` actor on the machine's new Ray node: OVS, bridge and tunnels as before
        (the other machines' tunnels to it kept their ends: same address, same VNI)."""
        self.rebuilds += 1
        self.actor_names[machine] = f"machine-{machine}-r{self.rebuilds}"   # a dead actor's name may linger
        actor = machine_cls.options(name=self.actor_names[machine], **opts,
                                    **self.options(machine)).remote(self.run_id, machine, self.state_dir,
                                                                    use_system_ovs=False)
        self.actors[machine] = actor
        old = self.infos[machine]
        info = ray.get(actor.start.remote(controller, tls))
        tunnels = [t.__dict__ for t in self.mesh[machine]]
        if self.underlay["kind"] == kwire.KIND:
            error = ray.get(actor.open_kernel_tunnels.remote(tunnels))
            if error:
                raise KubemuError(f"fault: recover of machine {machine}: its kernel tunnels failed: {error}")
        else:   # the UDP relay: a new wire (a new port and MAC), every machine told
            a = ray.get(actor.attach_udp_wire.remote(old["underlay_ip"], underlay.UNDERLAY_RANGE.prefixlen))
            self.wires[machine] = (a["underlay_mac"], a["wire"])
            self.neighbors[a["underlay_ip"]] = a["underlay_mac"]
            ray.get([m.set_wire_peers.remote(dict(self.wires.values())) for m in self.actors])
        ray.get(actor.add_tunnels.remote(tunnels, self.neighbors))
        self.infos[machine] = {**info, "underlay_ip": old["underlay_ip"], "node_ip": old["node_ip"]}
        self.lost.discard(machine)
        return self.infos[machine]

    def _live(self) -> list[int]:
        return [i for i in range(len(self.actors)) if i not in self.lost]

    def live_actors(self) -> list:
        """The `Machine` actors of the machines that are up (a lost machine's died with it)."""
        return [self.actors[i] for i in self._live()]

    # --- teardown ---
    def remove_underlay(self) -> None:
        """After the machines' actors stopped: delete the emulated underlay."""
        if self.wire is not None:
            self.wire.destroy()
            self.wire = None

    def stop_ray_nodes(self, grace: float = 10.0) -> None:
        """After `ray.shutdown()`: stop the simulated machines' Ray nodes (each its own session)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self._procs:
                try:
                    os.killpg(p.pid, sig)  # `ray start` and the raylet, agents it started
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while any(p.poll() is None for p in self._procs) and time.monotonic() < deadline:
                time.sleep(0.1)
            if all(p.poll() is not None for p in self._procs):
                break
        self._procs.clear()
