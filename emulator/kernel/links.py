"""Links, addresses and routes: `ip -batch` for bulk configuration, pyroute2 for single operations."""
from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
from typing import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from emulator.errors import KernelError, PrerequisiteError
from emulator.kernel.command import run, which
from emulator.kernel.netns import entered

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def ip_batch(netns: str | None, lines: list[str]) -> None:
    """Run many `ip` commands in one process, in `netns` (None: the root namespace)."""
    if not lines:
        return
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    run(cmd, "\n".join(lines) + "\n")


def open_tap(name: str, netns: str) -> int:
    """A tap device `name` born in `netns` (created by the thread that asks); returns its fd."""
    with entered(netns):
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def add_veth(name: str, peer: str, netns: str | None, peer_netns: str | None, mtu: int | None = None) -> None:
    """A veth pair born in its namespaces: `name` in `netns`, `peer` in `peer_netns` (None: the root one)."""
    mtu_args = ["mtu", str(mtu)] if mtu else []
    run(["ip", *(["-n", netns] if netns else []), "link", "add", name, *mtu_args, "type", "veth",
         "peer", "name", peer, *(["netns", peer_netns] if peer_netns else []), *mtu_args])


@contextlib.contextmanager
def _ipr(netns: str | None) -> Iterator[IPRoute]:
    """A netlink socket in `netns` (None: the root namespace), made by this thread inside it:
    `IPRoute(netns=...)` forks, which deadlocks in a multithreaded process such as a Ray actor."""
    with entered(netns) if netns else contextlib.nullcontext(), IPRoute() as ipr:
        yield ipr


def delete_link(netns: str | None, ifname: str) -> None:
    """Remove a link (and a veth's peer with it); no error if it, or its namespace, is already gone."""
    with contextlib.suppress(NetlinkError, FileNotFoundError), _ipr(netns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if idx:
            ipr.link("del", index=idx[0])


def set_link_up(netns: str | None, ifname: str, up: bool) -> None:
    """Administratively up (or down) one link."""
    with _ipr(netns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise KernelError(f"no link {ifname}", f"ip link set {ifname}", f"netns {netns or 'root'}")
        ipr.link("set", index=idx[0], state="up" if up else "down")


def link_mac(netns: str | None, ifname: str) -> str:
    """The MAC address of an interface."""
    with _ipr(netns) as ipr:
        links = ipr.link("get", ifname=ifname)
    return links[0].get("address")


def link_names(netns: str | None = None) -> list[str]:
    """Every link's name in a namespace (None: the root namespace)."""
    with _ipr(netns) as ipr:
        return [link.get("ifname") for link in ipr.get_links()]


def neigh_flush(netns: str, *selector: str, check: bool = True) -> None:
    """`ip neigh flush SELECTOR` in `netns` (e.g. `all`, or `to IP dev cbr0`)."""
    run(["ip", "-n", netns, "neigh", "flush", *selector], check=check)


def neigh_delete(netns: str, ip: str, ifname: str) -> None:
    """Remove the neighbour entry of `ip` on `ifname` (static ones too); no error if there is none,
    or no such namespace any more."""
    with contextlib.suppress(NetlinkError, FileNotFoundError), _ipr(netns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if idx:
            ipr.neigh("del", dst=ip, ifindex=idx[0])


def disable_tx_offload(ifname: str, netns: str | None = None, check: bool = True) -> None:
    """`ethtool -K IF tx off` (in `netns` if given): userspace OVS forwards partial checksums unfixed."""
    try:
        ethtool = which("ethtool", "ethtool")
    except PrerequisiteError:
        if check:
            raise
        return
    with entered(netns) if netns else contextlib.nullcontext():
        # A child forked from this thread starts in the thread's namespace.
        res = subprocess.run([ethtool, "-K", ifname, "tx", "off"], capture_output=True, text=True,
                             check=False)
    if res.returncode != 0 and check:
        raise KernelError(f"could not turn TX offload off on {ifname}", "ethtool -K", res.stderr)


def disable_peer_tx_offload(ifname: str, netns: str) -> None:
    """TX offload off on the other end (inside `netns`) of the root-namespace veth `ifname`."""
    with _ipr(None) as ipr:
        links = ipr.link("get", ifname=ifname)
        peer_index = links[0].get("link") if links else None
    if not peer_index:
        raise KernelError(f"{ifname} is not a veth with a peer", "ip link")
    with _ipr(netns) as ipr:
        peer = ipr.link("get", index=peer_index)[0].get("ifname")
    disable_tx_offload(peer, netns)
