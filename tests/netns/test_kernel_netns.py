"""The kernel layer on real namespaces: a Mininet fabric host, pyroute2 link operations, setns."""
import contextlib
import os
import shutil
import socket
import subprocess
from typing import Iterator

import pytest

from emulator.kernel import links, netns
from emulator.kernel.host import FabricHost
from emulator.naming import RunNames, new_run_id

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(shutil.which("mnexec") is None, reason="needs mnexec (Mininet)")]


def _ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def names():
    """A fresh run's names; whatever the test left of the run is removed."""
    names = RunNames(new_run_id())
    yield names
    for n in netns.names():
        if n.startswith(names.prefix):
            netns.delete(n)


@contextlib.contextmanager
def fabric_host(names, i: int, ip: str, **kwargs) -> Iterator[FabricHost]:
    """Host h<i> created on fabric 0 (port i, gateway 10.77.0.1), destroyed afterwards."""
    fabric = names.fabric_netns(0)
    netns.add(fabric)
    host = FabricHost(names.mininet_name(f"h{i}"), names.host_netns(f"h{i}"), names.fabric_port(i), fabric,
                      ip, "10.77.0.1", **kwargs)
    try:
        host.create()
        yield host
    finally:
        host.destroy()


def test_fabric_host_is_a_mininet_host_with_eth0_on_the_fabric(names) -> None:
    """eth0 is the Mininet host's interface, /32 with the gateway on-link; its peer is in the
    fabric namespace; destroy removes the namespace and both ends."""
    fabric = names.fabric_netns(0)
    netns.add(fabric)
    host = FabricHost(names.mininet_name("h1"), names.host_netns("h1"), names.fabric_port(1), fabric,
                      "10.77.0.5", "10.77.0.1")
    try:
        host.create()
        assert host.host.intfNames() == ["eth0"]
        assert "10.77.0.5/32" in _ip("-n", host.netns, "addr", "show", "dev", "eth0")
        assert "default via 10.77.0.1 dev eth0 onlink" in _ip("-n", host.netns, "route")
        assert host.mac == links.link_mac(host.netns, "eth0")
        assert names.fabric_port(1) in links.link_names(fabric)
        links.set_link_up(fabric, names.fabric_port(1), True)
        assert "UP" in _ip("-n", fabric, "-br", "link", "show", "dev", names.fabric_port(1))
    finally:
        host.destroy()
    assert names.host_netns("h1") not in netns.names()
    assert names.fabric_port(1) not in links.link_names(fabric)


def test_a_rebuilt_fabric_host_keeps_its_mac(names) -> None:
    """A host built again after its machine failed gets the MAC it had (the VPC knows it by it)."""
    with fabric_host(names, 2, "10.77.0.6", mac="02:6b:75:00:00:42") as host:
        assert links.link_mac(host.netns, "eth0") == host.mac == "02:6b:75:00:00:42"


def test_the_gateway_is_a_static_neighbour_that_a_crash_does_not_forget(names) -> None:
    """With the VPC router's MAC given, the gateway's entry is permanent (the kernel's one ARP
    table for all namespaces refuses dynamic entries past gc_thresh3); a crash's flush of the
    neighbour cache leaves it, as a reboot keeps a host's static configuration."""
    with fabric_host(names, 3, "10.77.0.7", gateway_mac="42:01:0a:80:00:01") as host:
        want = "10.77.0.1 dev eth0 lladdr 42:01:0a:80:00:01 PERMANENT"
        assert want in _ip("-n", host.netns, "neigh", "show")
        links.neigh_flush(host.netns, "all")
        assert want in _ip("-n", host.netns, "neigh", "show")


def test_a_named_namespace_is_known_by_its_inode_only_where_its_name_is_mounted(names) -> None:
    """poweroff takes the run's namespaces whose bind mount is in its own mount namespace."""
    ns = names.host_netns("m")
    netns.add(ns)
    assert netns.mounted_inode(ns) == f"net:[{os.stat(netns.netns_path(ns)).st_ino}]"
    assert netns.mounted_inode(names.host_netns("absent")) is None
    other = os.path.join(netns.NETNS_RUN_DIR, names.host_netns("file"))
    open(other, "w").close()   # a name whose mount lives elsewhere: here, a plain file
    try:
        assert netns.mounted_inode(names.host_netns("file")) is None
    finally:
        os.unlink(other)


def test_a_socket_made_in_a_namespace_stays_there(names) -> None:
    """`entered` (pyroute2 setns) puts this thread in the namespace and back out again."""
    ns = names.host_netns("s")
    netns.add(ns)
    own = os.stat("/proc/thread-self/ns/net").st_ino
    with netns.entered(ns):
        assert os.stat("/proc/thread-self/ns/net").st_ino == os.stat(netns.netns_path(ns)).st_ino
    assert os.stat("/proc/thread-self/ns/net").st_ino == own
    links.ip_batch(ns, ["link set lo up"])
    sock = netns.socket_in(ns, bind=("127.0.0.1", 0))
    try:
        port = sock.getsockname()[1]
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()   # not in the root namespace
        assert f":{port:04X}" in netns.run_in(ns, ["cat", "/proc/net/tcp"]).stdout
    finally:
        sock.close()


def test_single_link_operations_never_fork(names, monkeypatch) -> None:
    """pyroute2 sockets are made by this thread inside the namespace: `IPRoute(netns=...)`
    forks, and a fork without exec deadlocks in a multithreaded Ray actor."""
    ns = names.host_netns("f")
    netns.add(ns)
    links.add_veth("a0", "b0", ns, ns)

    def no_fork():
        raise AssertionError("the kernel layer forked for a single link operation")
    monkeypatch.setattr(os, "fork", no_fork)
    assert {"a0", "b0"} <= set(links.link_names(ns))
    links.set_link_up(ns, "a0", True)
    assert len(links.link_mac(ns, "a0").split(":")) == 6
    links.delete_link(ns, "a0")
    assert not {"a0", "b0"} & set(links.link_names(ns))
