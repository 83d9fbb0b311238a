"""The fabric of one machine: its Open vSwitch instance and VPC bridge, as an actor.

One `Machine` per Ray node (real or simulated machine). Node agents on that machine
create their eth0 veths; the machine plugs the root-namespace ends into its bridge.
The bridge's datapath id encodes the machine index so the SDN controller can tell the
machines' bridges apart.
"""
from __future__ import annotations

import logging
import os

from emulator.fabric.ovs import OvsInstance, system_db_socket
from emulator.fabric.relay import UnixToTcpRelay
from emulator.naming import RunNames
from emulator.node import kernel

log = logging.getLogger(__name__)
DPID_BASE = 0x6B75_0000  # "ku" + machine index


class Machine:
    """Owns one OVS instance and one bridge; removes both on `stop`."""

    def __init__(self, run_id: str, index: int, state_dir: str, use_system_ovs: bool = True) -> None:
        self.names = RunNames(run_id)
        self.index = index
        self.bridge = self.names.bridge(index)
        self.dpid = DPID_BASE + index
        self.relay: UnixToTcpRelay | None = None
        self.system = use_system_ovs and system_db_socket() is not None
        # A running system OVS lives in the root namespace: our bridge and ports go there
        # (no addresses on them). Otherwise a private OVS runs in a fabric namespace.
        self.netns = None if self.system else self.names.fabric_netns(index)
        self.ovs = OvsInstance(os.path.join(state_dir, f"ovs{index}"), prefer_system=self.system,
                               netns=self.netns)

    def start(self, controller: tuple[str, int]) -> dict:
        """The bridge under the controller, on the system OVS or on a private one.

        Private: every fabric object (bridge, ports, the userspace datapath's taps) lives
        in the machine's fabric namespace, so the root namespace gets no kubemu link, and
        OVS reaches the controller through a unix-socket relay in its run directory.
        """
        if self.netns:
            kernel.netns_add(self.netns)
            kernel.sysctl(self.netns, {"net.ipv6.conf.all.disable_ipv6": "1",
                                       "net.ipv6.conf.default.disable_ipv6": "1"})
            kernel.ip_batch(self.netns, ["link set lo up"])
        self.ovs.start()
        if self.netns:
            self.relay = UnixToTcpRelay(self.ovs.path("controller.sock"), tuple(controller)).start()
            target = f"unix:{self.relay.unix_path}"
        else:
            target = f"tcp:{controller[0]}:{controller[1]}"
        self.ovs.add_bridge(self.bridge, self.dpid, controller_target=target)
        return {"bridge": self.bridge, "dpid": self.dpid, "datapath_type": self.ovs.datapath_type,
                "private_ovs": self.ovs.private, "machine": self.index, "netns": self.netns,
                "ovs_start_seconds": round(self.ovs.start_seconds, 3)}

    def add_ports(self, ifnames: list[str]) -> dict[str, int]:
        """Plug root-namespace veth ends into the bridge; returns their OpenFlow ports."""
        return self.ovs.add_ports(self.bridge, [(n, None) for n in ifnames])

    def del_port(self, ifname: str) -> None:
        self.ovs.del_port(self.bridge, ifname)

    def port_stats(self) -> str:
        """`ovs-ofctl dump-ports` of the bridge (packet counters per port)."""
        return self.ovs.ofctl("-O", "OpenFlow13", "dump-ports", self.bridge)

    def dump_flows(self) -> str:
        return self.ovs.ofctl("-O", "OpenFlow13", "dump-flows", self.bridge)

    def stop(self) -> bool:
        """Remove the bridge, stop the private OVS instance, delete the fabric namespace."""
        try:
            self.ovs.stop()
        except Exception:
            log.exception("stopping OVS failed")
        if self.relay is not None:
            self.relay.stop()
        if self.netns:
            kernel.netns_delete(self.netns)
        return True
