"""Placement policies and the tunnel mesh between machines: pure decisions."""
from __future__ import annotations

import pytest

from emulator.fabric import underlay
from emulator.fabric.placement import by_machine, place
from emulator.naming import RunNames
from emulator.records.hosts import HostSpec

pytestmark = pytest.mark.unit

HOSTS = [HostSpec(**h, ip="-", gateway="-", fabric_port="-") for h in
         [{"name": f"n{i}", "role": "node", "zone": z} for i, z in enumerate("aabbcc")]
         + [{"name": "inet", "role": "host", "zone": None}, {"name": "vm", "role": "host", "zone": "b"},
            {"name": "prober", "role": "host", "zone": None}]]


def test_spread_deals_nodes_and_hosts_in_turn() -> None:
    p = place(HOSTS, 3, "spread")
    assert [p[f"n{i}"] for i in range(6)] == [0, 1, 2, 0, 1, 2]
    assert [p["inet"], p["vm"], p["prober"]] == [0, 1, 2]


def test_pack_fills_machines_in_order() -> None:
    p = place(HOSTS, 3, "pack")
    assert by_machine(p, 3) == [["n0", "n1", "n2"], ["n3", "n4", "n5"], ["inet", "vm", "prober"]]
    assert set(place(HOSTS, 2, "pack").values()) == {0, 1}


def test_zone_gives_each_zone_one_machine() -> None:
    p = place(HOSTS, 3, "zone")
    assert [p[f"n{i}"] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    assert p["vm"] == 1 and p["inet"] == 0 and p["prober"] == 0
    assert set(place(HOSTS, 2, "zone").values()) == {0, 1}  # zones wrap around the machines


def test_one_machine_and_bad_input() -> None:
    assert set(place(HOSTS, 1, "spread").values()) == {0}
    with pytest.raises(ValueError):
        place(HOSTS, 0, "spread")
    with pytest.raises(ValueError):
        place(HOSTS, 2, "random")


def test_tunnel_mesh_and_vpc_tunnels() -> None:
    names = RunNames("ab12")
    addrs = [underlay.tunnel_address(i) for i in range(3)]
    assert addrs == ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
    mesh = underlay.tunnel_mesh(names, addrs)
    assert [[(t.remote, t.remote_ip) for t in per] for per in mesh] == [
        [(1, "198.18.0.2"), (2, "198.18.0.3")], [(0, "198.18.0.1"), (2, "198.18.0.3")],
        [(0, "198.18.0.1"), (1, "198.18.0.2")]]
    assert mesh[1][1].port_name == "kubemuab12t102"
    names_all = [t.port_name for per in mesh for t in per]
    assert len(set(names_all)) == 6 and all(len(n) <= 15 for n in names_all)
    tunnels = underlay.vpc_tunnels(mesh, [10, 11, 12])
    assert {"dpid": 12, "remote_dpid": 10, "port_name": "kubemuab12t200"} in tunnels


def test_parse_dump_ports() -> None:
    text = """OFPST_PORT reply (OF1.3) (xid=0x2): 2 ports
  port  3: rx pkts=12, bytes=1200, drop=0, errs=0, frame=?, over=?, crc=?
           tx pkts=7, bytes=700, drop=0, errs=0, coll=?
           duration=5.1s
  port LOCAL: rx pkts=0, bytes=0, drop=0, errs=0, frame=0, over=0, crc=0
           tx pkts=0, bytes=0, drop=0, errs=0, coll=0
"""
    assert underlay.parse_dump_ports(text) == {3: {"rx_packets": 12, "rx_bytes": 1200, "tx_packets": 7,
                                                   "tx_bytes": 700}}
