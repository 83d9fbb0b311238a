"""The fabric of one machine: its Open vSwitch instance and VPC bridge, as an actor.

One `Machine` per Ray node (real or simulated machine). Node agents on that machine
create their eth0 veths; the machine plugs the root-namespace ends into its bridge.
The bridge's datapath id encodes the machine index so the SDN controller can tell the
machines' bridges apart.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from typing import Any

import ray

from controllers.vpc_core import PRIO_TUNNEL_REFUSED
from controllers.vpc_types import DEFAULT_ROUTER_MAC
from emulator.fabric import pki, underlay
from emulator.fabric.kwire import KIND as KERNEL_KIND, KernelTunnel, sum_counters
from emulator.fabric.relay import UnixToTcpRelay
from emulator.fabric.udpwire import UdpWire
from emulator.kernel import links, netns
from emulator.kernel.ovs import OvsInstance, system_db_socket
from emulator.kernel.sysctl import sysctl
from emulator.naming import RunNames

log = logging.getLogger(__name__)
DPID_BASE = 0x6B75_0000  # "ku" + machine index
KERNEL_MTU = 1500   # the kernel tunnels carry the VPC's frames (its MTU), fragmented outside if need be
_REFUSED_RE = re.compile(rf"n_packets=(\d+),.*priority={PRIO_TUNNEL_REFUSED},in_port=(\d+) actions=drop")


def refused_by_port(dump: str) -> dict[int, int]:
    """OpenFlow port -> frames the VPC bridge refused from that tunnel port (`dump-flows --no-names`)."""
    return {int(m[2]): int(m[1]) for m in _REFUSED_RE.finditer(dump)}


def _ray_node_id() -> str | None:
    """The Ray node this actor runs on; None outside Ray."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def ray_node_ip() -> str:
    """The address of the Ray node this process runs on (the machine's real address)."""
    return ray.util.get_node_ip_address()


def _controller_address(controller: str | tuple[str, int]) -> Any:
    """None for a ready OVS target, else a TCP address or a callable giving the SDN actor's."""
    if isinstance(controller, (tuple, list)):
        return (controller[0], int(controller[1]))
    if controller.startswith("tcp:"):
        host, _, port = controller[4:].rpartition(":")
        return (host, int(port))
    if controller == "sdn":
        def lookup() -> tuple[str, int]:
            info = ray.get(ray.get_actor("sdn").address.remote(), timeout=10)
            return (info["host"], info["port"])
        return lookup
    return None


class Machine:
    """Owns one OVS instance and one bridge; removes both on `stop`."""

    def __init__(self, run_id: str, index: int, state_dir: str, use_system_ovs: bool = True) -> None:
        self.names = RunNames(run_id)
        self.index = index
        self.bridge = self.names.bridge(index)
        self.dpid = DPID_BASE + index
        self.relay: UnixToTcpRelay | None = None
        self._system_link: str | None = None   # our controller symlink in a system OVS's run directory
        self.underlay_ip = ""
        self.wire = None  # emulator.fabric.udpwire.UdpWire on real machines (the fallback)
        self.ktunnels: list[KernelTunnel] = []  # real machines: a kernel VXLAN device per other machine
        self.tunnels: list[str] = []
        self.controller_target = ""
        self.system = use_system_ovs and system_db_socket() is not None
        # A running system OVS lives in the root namespace: our bridge and ports go there
        # (no addresses on them). Otherwise a private OVS runs in a fabric namespace.
        self.netns = None if self.system else self.names.fabric_netns(index)
        self.ovs = OvsInstance(os.path.join(state_dir, f"ovs{index}"), prefer_system=self.system,
                               netns=self.netns)

    def start(self, controller: str | tuple[str, int], tls: dict[str, str] | None = None) -> dict:
        """The bridge under the controller, on the system OVS or on a private one.

        `controller`: an OVS target (`unix:PATH`, the controller's own socket on this host;
        `tcp:HOST:PORT`), or "sdn" (the SDN controller actor, asked for its TCP address at
        every connection), or a (host, port). Private OVS: every fabric object (bridge,
        ports, the userspace datapath's taps) lives in the machine's fabric namespace, so
        the root namespace gets no kubemu link; it reaches a TCP controller through a
        unix-socket relay in its run directory, and the controller's own unix socket through
        a symlink there (ovs-vswitchd refuses unix targets outside its run directory).
        `tls` (PEMs of `pki.make_pki`): the relay speaks TLS to the controller with the
        run's switch certificate.
        """
        if self.netns:
            netns.add(self.netns)
            sysctl(self.netns, {"net.ipv6.conf.all.disable_ipv6": "1",
                                "net.ipv6.conf.default.disable_ipv6": "1"})
            links.ip_batch(self.netns, ["link set lo up"])
        self.ovs.start()
        address = _controller_address(controller)
        if address is None and str(controller).startswith("unix:"):
            # OVS connects only to unix sockets in its run directory: a symlink there (in a
            # system OVS's directory named after this run's bridge, removed by stop())
            link = self.ovs.path("controller.sock") if self.ovs.private else \
                os.path.join(self.ovs.system_rundir, f"{self.bridge}.controller.sock")
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(str(controller)[5:], link)
            self._system_link = None if self.ovs.private else link
            target = f"unix:{link}"
        elif address is None:
            target = str(controller)
        elif self.netns:
            ctx = pki.client_context(pki.write(tls, self.ovs.path("pki"), "switch")) if tls else None
            self.relay = UnixToTcpRelay(self.ovs.path("controller.sock"), address, ctx).start()
            target = f"unix:{self.relay.unix_path}"
        else:
            addr = address() if callable(address) else address
            target = f"tcp:{addr[0]}:{addr[1]}"
        self.controller_target = target
        self.ovs.add_bridge(self.bridge, self.dpid, controller_target=target)
        return {"bridge": self.bridge, "dpid": self.dpid, "datapath_type": self.ovs.datapath_type,
                "private_ovs": self.ovs.private, "machine": self.index, "netns": self.netns,
                "ovs_start_seconds": round(self.ovs.start_seconds, 3), "ran_on": _ray_node_id(),
                "node_ip": ray_node_ip()}

    def add_ports(self, ifnames: list[str]) -> dict[str, int]:
        """Plug root-namespace veth ends into the bridge; returns their OpenFlow ports."""
        return self.ovs.add_ports(self.bridge, [(n, None) for n in ifnames])

    def attach_underlay(self, link: str, address: str, prefixlen: int) -> dict:
        """Put the machine's tunnel address on its underlay bridge, with `link` (the wire) as port."""
        self.underlay_ip = address
        bridge = underlay.underlay_bridge(self.names, self.index)
        underlay.attach_underlay(self.ovs, bridge, link, address, prefixlen, self.netns)
        return {"machine": self.index, "underlay_ip": address, "underlay_mac": links.link_mac(self.netns, bridge),
                "node_ip": ray_node_ip()}

    def attach_udp_wire(self, address: str, prefixlen: int) -> dict:
        """Real machines: the underlay link is a tap relayed over UDP from this machine's address."""
        self.wire = UdpWire(underlay.underlay_link(self.names, self.index), self.netns, ray_node_ip())
        wire_addr = self.wire.start()
        info = self.attach_underlay(self.wire.name, address, prefixlen)
        return {**info, "wire": list(wire_addr)}

    def set_wire_peers(self, peers: dict[str, list]) -> None:
        """Underlay MAC -> [real IP, UDP port] of every machine's wire (this one is left out)."""
        own = self._underlay_mac()
        self.wire.set_peers({mac: (ip, port) for mac, (ip, port) in peers.items() if mac.lower() != own})

    def _underlay_mac(self) -> str:
        """This machine's MAC on the underlay (its underlay bridge's), lower case."""
        return links.link_mac(self.netns, underlay.underlay_bridge(self.names, self.index)).lower()

    def open_kernel_tunnels(self, tunnels: list[dict], local_ip: str | None = None, host_netns: str | None = None,
                            router_mac: str = DEFAULT_ROUTER_MAC) -> str | None:
        """Real machines: a kernel VXLAN device per other machine (emulator/fabric/kwire.py), named as
        its tunnel port, from this machine's address (default: its Ray node's) to the tunnel's
        `remote_ip`; None, or why the kernel cannot make them (then none is left)."""
        local = local_ip or ray_node_ip()
        for t in [underlay.TunnelSpec(**d) for d in tunnels]:
            tunnel = KernelTunnel(self.names.run_id, t.port_name, self.index, t.remote, self.netns, local,
                                  t.remote_ip, KERNEL_MTU, host_netns)
            try:
                tunnel.start(router_mac)
            except Exception as e:  # KernelError: no vxlan module, UDP port or VNI taken
                self.close_kernel_tunnels()
                return f"{type(e).__name__}: {e}"
            self.ktunnels.append(tunnel)
        return None

    def kernel_lan_mtu(self) -> int | None:
        """The smallest MTU from this machine towards the machines its kernel tunnels reach."""
        mtus = [m for m in (t.lan_mtu() for t in self.ktunnels) if m is not None]
        return min(mtus) if mtus else None

    def close_kernel_tunnels(self) -> None:
        """Remove the kernel devices again (another machine could not make its own)."""
        for tunnel in self.ktunnels:
            tunnel.stop()
        self.ktunnels = []

    def underlay_counters(self) -> dict:
        """What crossed this machine's underlay links, what was refused, and what OVS read of them
        (frames a link delivered that OVS never read are `lost_before_ovs`)."""
        if self.ktunnels:
            return self._kernel_counters()
        bridge = underlay.underlay_bridge(self.names, self.index)
        if self.wire is not None:
            ovs_rx = self._ovs_rx(bridge, self.wire.name)
            return {"kind": "udp-relay", "link": self.wire.name, **self.wire.frames, "ovs_rx_packets": ovs_rx,
                    "lost_before_ovs": max(0, self.wire.frames["to_tap"] - ovs_rx)}
        return {"kind": "emulated"}

    def _kernel_counters(self) -> dict:
        """Per kernel device and summed: its counters, what OVS read of it, what the VPC bridge refused."""
        names = [t.name for t in self.ktunnels]
        numbers = self.ovs.ofports(self.bridge)
        refused = refused_by_port(self.ovs.ofctl("-O", "OpenFlow13", "--no-names", "dump-flows", self.bridge,
                                                 "table=0"))
        ovs = underlay.tunnel_counters(self.ovs, self.bridge, names)   # first: OVS never reads ahead of a link
        devices = {}
        for t in self.ktunnels:
            dev, ovs_rx = t.counters(), ovs[t.name].get("rx_packets", 0)
            devices[t.name] = {**dev, "refused_frames": refused.get(numbers.get(t.name, -1), 0),
                               "ovs_rx_packets": ovs_rx, "lost_before_ovs": max(0, dev["rx_packets"] - ovs_rx)}
        return {"kind": KERNEL_KIND, "links": names, **sum_counters(list(devices.values())), "devices": devices}

    def _ovs_rx(self, bridge: str, link: str) -> int:
        """Packets OVS received on `link`, a port of `bridge`."""
        return underlay.tunnel_counters(self.ovs, bridge, [link])[link].get("rx_packets", 0)

    def add_tunnels(self, tunnels: list[dict], neighbors: dict[str, str]) -> dict[str, int]:
        """VXLAN ports to the other machines on the VPC bridge; returns their OpenFlow ports.

        Real machines with kernel tunnels: their devices are the ports. Else OVS's own VXLAN
        ports; `neighbors` (underlay IP -> MAC) go into OVS's tunnel neighbour cache, so the
        first packet towards a machine is not lost to address resolution."""
        specs = [underlay.TunnelSpec(**t) for t in tunnels]
        self.tunnels = [t.port_name for t in specs]
        if self.ktunnels:
            if sorted(self.tunnels) != sorted(t.name for t in self.ktunnels):
                raise ValueError(f"tunnels {self.tunnels} are not the kernel devices {[t.name for t in self.ktunnels]}")
            return self.add_ports(self.tunnels)
        ports = underlay.add_tunnels(self.ovs, self.bridge, specs, self.underlay_ip)
        bridge = underlay.underlay_bridge(self.names, self.index)
        for ip, mac in neighbors.items():
            if ip != self.underlay_ip:
                self.ovs.appctl("tnl/neigh/set", bridge, ip, mac)
        return ports

    def set_underlay(self, up: bool) -> None:
        """Cut this machine off the others (every tunnel) by its underlay link (real machines' kernel
        tunnels: every device), or reconnect it."""
        if self.ktunnels:
            for t in self.ktunnels:
                links.set_link_up(self.netns, t.name, up)
            return
        link = self.wire.name if self.wire is not None else underlay.underlay_link(self.names, self.index)
        links.set_link_up(self.netns, link, up)

    def set_online(self, up: bool) -> dict:
        """A machine failure's fabric half: off every tunnel, off the controller, flows gone (as a
        dead machine's switch); or back: underlay link up, under the controller, which reprograms it."""
        if up:
            self.ovs.set_controller(self.bridge, self.controller_target)
            self.set_underlay(True)
        else:
            self.set_underlay(False)
            self.ovs.set_controller(self.bridge, None)
            self.ovs.clear_flows(self.bridge)
        flows = self.ovs.ofctl("dump-flows", self.bridge)
        return {"machine": self.index, "online": up, "flows": sum(1 for ln in flows.splitlines() if "actions=" in ln)}

    def wait_revalidated(self) -> None:
        """Wait until the datapath caches reflect the flow tables (`ovs-appctl revalidator/wait`)."""
        self.ovs.wait_revalidated()

    def tunnel_counters(self) -> dict[str, dict[str, int]]:
        """rx/tx packets and bytes of every tunnel port of this machine."""
        return underlay.tunnel_counters(self.ovs, self.bridge, self.tunnels)

    def del_port(self, ifname: str) -> None:
        self.ovs.del_port(self.bridge, ifname)

    def connection_report(self, log_lines: int = 80) -> dict[str, str]:
        """What this machine's OVS says of its controller connection (for a bring-up that timed out):
        `summary` (one line: `is_connected` and `status` of the Controller row) and `text` (that
        row and the end of ovs-vswitchd's log). Never raises: a failure is reported in the text."""
        head = f"machine {self.index}: bridge {self.bridge} (dpid {self.dpid:#x}), target {self.controller_target}"
        try:
            row = self.ovs.vsctl("--columns=is_connected,status,target,role", "list", "Controller", timeout=10)
            fields = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in row.splitlines() if ":" in ln)}
            summary = (f"machine {self.index}: is_connected={fields.get('is_connected', '?')} "
                       f"status={fields.get('status', '?')}")
        except Exception as e:   # noqa: BLE001 - a report, not a check
            row, summary = f"ovs-vsctl list Controller failed: {e}", f"machine {self.index}: no Controller row ({e})"
        parts = [head, row.strip()]
        log = self.ovs.path("ovs-vswitchd.log") if self.ovs.private else None
        if log and os.path.exists(log):
            with open(log, errors="replace") as f:
                tail = f.readlines()[-log_lines:]
            parts.append(f"last {len(tail)} lines of {log}:\n" + "".join(tail))
        return {"summary": summary, "text": "\n".join(parts) + "\n"}

    def dump_flows(self) -> str:
        return self.ovs.ofctl("-O", "OpenFlow13", "dump-flows", self.bridge)

    def dump_groups(self) -> str:
        return self.ovs.ofctl("-O", "OpenFlow13", "dump-groups", self.bridge)

    def table_lines(self) -> list[str]:
        """The bridge's flows (without counters and ages) and groups: equal lists, equal tables."""
        volatile = ("duration=", "n_packets=", "n_bytes=", "idle_age=", "hard_age=")
        flows = [" ".join(p for p in ln.replace(",", " ").split() if not p.startswith(volatile))
                 for ln in self.dump_flows().splitlines() if "actions=" in ln]
        return sorted(flows) + sorted(ln.strip() for ln in self.dump_groups().splitlines() if "group_id=" in ln)

    def set_controller_channel(self, up: bool) -> None:
        """Cut the bridge's controller channel (the bridge keeps its flows) or set it back.

        Cut by pointing the controller record at a socket nobody listens on: OVS flushes a
        bridge's flows when its last controller record is removed (`del-controller`), which
        is a switch losing its configuration, not its controller connection."""
        self.ovs.set_controller(self.bridge, self.controller_target if up else
                                f"unix:{self.ovs.path('controller-unreachable.sock')}")

    def stop(self) -> bool:
        """Remove the bridge, stop the private OVS instance, delete the fabric namespace."""
        try:
            self.ovs.stop()
        except Exception:
            log.exception("stopping OVS failed")
        if self._system_link and os.path.lexists(self._system_link):
            os.unlink(self._system_link)
        if self.relay is not None:
            self.relay.stop()
        if self.wire is not None:
            self.wire.stop()
        self.close_kernel_tunnels()
        if self.netns:
            netns.delete(self.netns)
        if self.ovs.private:  # on another machine nobody else removes the instance's directory
            shutil.rmtree(self.ovs.run_dir, ignore_errors=True)
        return True
