"""The fabric of one machine: its Open vSwitch instance and VPC bridge, as an actor.

One `Machine` per Ray node (real or simulated machine). Node agents on that machine
create their eth0 veths; the machine plugs the root-namespace ends into its bridge.
The bridge's datapath id encodes the machine index so the SDN controller can tell the
machines' bridges apart.
"""
from __future__ import annotations

import logging
import os

from emulator.fabric.ovs import OvsInstance
from emulator.naming import RunNames

log = logging.getLogger(__name__)
DPID_BASE = 0x6B75_0000  # "ku" + machine index


class Machine:
    """Owns one OVS instance and one bridge; removes both on `stop`."""

    def __init__(self, run_id: str, index: int, state_dir: str) -> None:
        self.names = RunNames(run_id)
        self.index = index
        self.bridge = self.names.bridge(index)
        self.dpid = DPID_BASE + index
        self.ovs = OvsInstance(os.path.join(state_dir, f"ovs{index}"))

    def start(self, controller_port: int, controller_host: str = "127.0.0.1") -> dict:
        """Start OVS (private unless a system one runs) and the bridge under the controller."""
        self.ovs.start()
        self.ovs.add_bridge(self.bridge, self.dpid, controller_port, controller_host)
        return {"bridge": self.bridge, "dpid": self.dpid, "datapath_type": self.ovs.datapath_type,
                "private_ovs": self.ovs.private, "machine": self.index,
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
        """Remove the bridge and stop a private OVS instance."""
        try:
            self.ovs.stop()
        except Exception:
            log.exception("stopping OVS failed")
        return True
