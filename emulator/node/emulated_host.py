"""One emulated machine on the fabric: its namespace and cable, impairments, commands and flows.

`EmulatedHost` is what every host (cluster node, client host, the prober) is: a network
namespace with eth0 on the fabric, its own xtables lock, its egress impairments, and the
faults every machine can suffer (emulator/node/chaos.py): the cable unplugged
(`partition`, `link_flap`), a crash (cable out, conntrack and neighbours forgotten) and
`recover`. Roles add their components and extend the lifecycle: `ClusterNode`
(emulator/node/cluster_node.py), `ClientHost`, `ProberHost` (emulator/node/roles.py).
"""
from __future__ import annotations

import logging
import os
import time
import uuid

import ray

from emulator.impair.host import HostImpairer
from emulator.kernel import conntrack, links, netns
from emulator.kernel.host import FabricHost
from emulator.kernel.iptables import node_lock_file
from emulator.kernel.sysctl import sysctl
from emulator.kubeapi.discovery import GIT_VERSION
from emulator.naming import RunNames
from emulator.paths import state_dir
from emulator.records.hosts import HostInfo, HostSpec
from emulator.traffic.kinds import run_generator

log = logging.getLogger(__name__)
HOST_SYSCTLS = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}


def node_info(ident: str) -> dict:
    """status.nodeInfo as a kubelet reports it: this machine's kernel and OS, kubemu's versions, IDs from `ident`."""
    os_image = "Linux"
    try:
        with open("/etc/os-release") as f:
            os_image = next((ln.split("=", 1)[1].strip().strip('"') for ln in f if ln.startswith("PRETTY_NAME=")),
                            os_image)
    except OSError:
        pass
    machine = os.uname().machine
    return {"architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
            "operatingSystem": "linux", "osImage": os_image, "kernelVersion": os.uname().release,
            "containerRuntimeVersion": "kubemu://bubblewrap", "kubeletVersion": GIT_VERSION,
            "kubeProxyVersion": GIT_VERSION, "machineID": uuid.uuid5(uuid.NAMESPACE_OID, ident).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, ident)), "bootID": str(uuid.uuid4())}


def stop_each(parts: list, what: str) -> None:
    """Call `stop()` on every part that exists, logging (not raising) a failure, so the rest still stop."""
    for part in parts:
        if part is None:
            continue
        try:
            part.stop()
        except Exception:
            log.exception("%s: stopping %s failed", what, part)


def _ray_node_id() -> str | None:
    """The Ray node (machine) this host runs on; None outside Ray."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


class EmulatedHost:
    """A namespace on the fabric with its cable, impairments and machine-level faults; `stop` removes it."""

    kind = "host"

    def __init__(self, names: RunNames, spec: HostSpec, run_dir: str, netns_name: str) -> None:
        self.names, self.spec, self.run_dir = names, spec, run_dir
        self.name, self.netns = spec.name, netns_name
        # this host's own xtables lock: kube-proxy, the policy enforcer and impairments share it
        self.xtables_lock = node_lock_file(state_dir(names.run_id), netns_name)
        self.fabric: FabricHost | None = None
        self.impairer: HostImpairer | None = None
        self.fault_state: str | None = None     # None | crashed | partitioned

    # --- lifecycle ---
    def create(self, fabric_netns: str | None, mac: str | None = None) -> HostInfo:
        """Namespace and eth0 on the fabric (its other end in `fabric_netns`, its MAC `mac` if
        given), then the role's kernel setup."""
        t0 = time.time()
        self.fabric = FabricHost(self.names.mininet_name(self.name), self.netns, self.spec.fabric_port,
                                 fabric_netns, self.spec.ip, self.spec.gateway, mac,
                                 gateway_mac=self.spec.gateway_mac)
        self.fabric.create()
        sysctl(self.netns, self.sysctls())
        self.setup()
        return HostInfo(name=self.name, mac=self.fabric.mac, netns=self.netns, fabric_port=self.spec.fabric_port,
                        seconds=time.time() - t0, hostname=os.uname().nodename, ray_node_id=_ray_node_id(),
                        node_info=node_info(self.netns))

    def sysctls(self) -> dict[str, str]:
        """The namespace's sysctls (a node adds forwarding)."""
        return dict(HOST_SYSCTLS)

    def setup(self) -> None:
        """The role's kernel objects beyond eth0 (none for a plain host)."""

    def stop(self) -> None:
        """Stop the impairments and remove the namespace and its link (everything inside dies)."""
        stop_each([self.impairer], self.name)
        if self.fabric is not None:
            self.fabric.destroy()

    # --- the cable and the kernel's volatile state ---
    def set_link(self, up: bool) -> None:
        """The cable to the fabric: its fabric-side veth end up or down."""
        links.set_link_up(self.fabric.fabric_netns, self.fabric.fabric_port, up)

    def forget_kernel_state(self) -> None:
        """What a machine's kernel loses when it goes down: its conntrack table (so no connection
        tracked before the crash steers a reused 4-tuple afterwards) and its neighbour cache."""
        conntrack.flush(self.netns)
        links.neigh_flush(self.netns, "all", check=False)

    # --- faults (emulator/node/chaos.py) ---
    def crash(self) -> dict:
        """The machine goes down: cable out, its processes stop, conntrack and neighbour cache gone."""
        t = time.time()
        self.set_link(False)
        self.halt()
        self.forget_kernel_state()
        self.fault_state = "crashed"
        log.warning("chaos: %s crashed", self.kind)
        return {"t": t, "action": "crash"}

    def partition(self) -> dict:
        """Only the cable goes: whatever runs keeps running, cut off."""
        t = time.time()
        self.set_link(False)
        self.pause()
        self.fault_state = "partitioned"
        log.warning("chaos: %s partitioned", self.kind)
        return {"t": t, "action": "partition"}

    def recover(self) -> dict:
        """The cable comes back; after a crash the machine boots, after a partition it reconnects."""
        t, state = time.time(), self.fault_state
        self.set_link(True)
        if state == "crashed":
            self.reboot()
        else:
            self.resume()
        self.fault_state = None
        log.warning("chaos: %s recovered from %s", self.kind, state)
        return {"t": t, "action": "recover", "from": state}

    def link_flap(self, down: float = 1.0) -> dict:
        """The cable goes out for `down` seconds."""
        t = time.time()
        self.set_link(False)
        time.sleep(down)
        self.set_link(True)
        return {"t": t, "action": "link_flap", "up": time.time()}

    # What runs on the machine, for the faults above (a plain host runs nothing of its own).
    def halt(self) -> None:
        """Crashed: every process of the machine stops."""

    def reboot(self) -> None:
        """Recovered from a crash: the machine's processes start fresh."""

    def pause(self) -> None:
        """Partitioned: what runs loses the network but keeps running."""

    def resume(self) -> None:
        """Reconnected after a partition (or a recover with no fault)."""

    # --- commands, traffic, impairments ---
    def netns_of(self, target: str) -> str:
        """The namespace of this host ("" target); a plain host runs no pods."""
        if not target:
            return self.netns
        raise KeyError(f"pod {target} is not running on {self.name}")

    def run_flow(self, target: str, kind: str, params: dict, out_name: str) -> list[dict]:
        """Run a generator in `target`'s namespace; the records it wrote to flows/OUT_NAME.jsonl."""
        out = os.path.join(self.run_dir, "flows", out_name + ".jsonl")
        return run_generator(self.netns_of(target), kind, params, out)

    def exec(self, target: str, argv: list[str], timeout: float = 30) -> dict:
        """Run a command in `target`'s namespace (like kubectl exec)."""
        p = netns.run_in(self.netns_of(target), argv, timeout=timeout)
        return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}

    def conntrack_from(self, source_ip: str) -> list[str]:
        """This host's conntrack entries of flows `source_ip` started (diagnostics)."""
        return conntrack.entries_from(self.netns, source_ip)

    def impair(self, classes: list[dict]) -> dict:
        """Impair this host's egress as `classes` say (emulator.impair); returns what enforces each."""
        if self.impairer is None:
            self.impairer = HostImpairer.for_host(self.netns, self.names.prefix, self.name,
                                                  self.spec.iptables_backend, self.run_dir, self.xtables_lock)
        return self.impairer.apply_dicts(classes)
