"""The kernel tunnels' pure parts: a VNI per pair of machines and run, the FDB, counters."""
from __future__ import annotations

import json

import pytest

from emulator.fabric import kwire, underlay
from emulator.fabric.machine import refused_by_port
from emulator.kernel import vxlan
from emulator.naming import RunNames

pytestmark = pytest.mark.unit


def test_vni_is_one_per_pair_of_machines_the_same_both_ways() -> None:
    assert kwire.vni("q3zx", 0, 1) == kwire.vni("q3zx", 1, 0)
    n = underlay.MAX_MACHINES
    pairs = {kwire.vni("q3zx", a, b) for a in range(n) for b in range(a + 1, n)}
    assert len(pairs) == n * (n - 1) // 2 == kwire.PAIRS   # no two pairs of a run share one
    assert all(0 < v < 2 ** 24 for v in pairs)
    with pytest.raises(ValueError):
        kwire.vni("q3zx", 2, 2)


def test_the_same_pair_never_shares_a_vni_between_runs() -> None:
    """Two runs on the same machines: their devices for the same pair sit on the same socket."""
    ids = ["0000", "0001", "zzzz", "q3zx", "q3zy", "a000", "1000"]
    assert len({kwire.vni(r, 0, 1) for r in ids}) == len(ids)
    # the stride is coprime to the span: the map from run number to VNI is one to one
    assert len({kwire.vni(r, 0, 1) for r in (f"{i:04d}" for i in range(0, 10000, 7))}) == len(range(0, 10000, 7))


def test_fdb_holds_the_router_mac_towards_the_peer_only() -> None:
    assert kwire.fdb_lines("kubemuq3zxt1", "42:01:0A:80:00:01", "10.0.0.2") == [
        "fdb replace 42:01:0a:80:00:01 dev kubemuq3zxt1 dst 10.0.0.2 permanent"]
    with pytest.raises(ValueError):
        kwire.fdb_lines("x", "42:01:0a:80:00:0g dev y", "10.0.0.2")


def test_device_is_point_to_point_and_its_fdb_holds_only_the_static_entries() -> None:
    name = RunNames("q3zx").tunnel(102)
    argv = vxlan.create_argv(name, kwire.vni("q3zx", 1, 2), "10.0.0.2", kwire.UDP_PORT, kwire.MAX_ADDRESSES, 1500,
                             None, "10.0.0.3")
    assert argv[:4] == ["ip", "link", "add", "kubemuq3zxt102"]
    assert argv[argv.index("maxaddress") + 1] == "2" and "learning" in argv
    assert argv[argv.index("local") + 1] == "10.0.0.2" and argv[argv.index("remote") + 1] == "10.0.0.3"
    assert argv[argv.index("id") + 1] == str(kwire.vni("q3zx", 2, 1))
    assert argv[argv.index("dstport") + 1] == "48479" and "noudpcsum" in argv
    assert vxlan.create_argv("d", 1, "10.0.0.3", 1, 3, 1600, "vm1")[:3] == ["ip", "-n", "vm1"]
    assert "remote" not in vxlan.create_argv("d", 1, "10.0.0.3", 1, 3, 1600, "vm1")


def test_link_stats_parsed_from_ip_json_and_summed() -> None:
    text = json.dumps([{"ifname": "x", "stats64": {"rx": {"packets": 5, "bytes": 500, "dropped": 1},
                                                   "tx": {"packets": 7, "bytes": 700, "dropped": 0, "errors": 2}}}])
    one = kwire.parse_link_stats(text)
    assert one == {"rx_packets": 5, "rx_bytes": 500, "rx_dropped": 1, "tx_packets": 7, "tx_bytes": 700,
                   "tx_dropped": 0, "tx_errors": 2}
    assert kwire.sum_counters([one, one])["tx_bytes"] == 1400


def test_refused_frames_read_per_tunnel_port_from_the_vpc_bridge() -> None:
    dump = ("OFPST_FLOW reply (OF1.3) (xid=0x2):\n"
            " cookie=0x1, duration=3.1s, table=0, n_packets=4, n_bytes=280, reset_counts priority=300,"
            "in_port=5,dl_src=42:01:0a:80:00:01,ip actions=goto_table:40\n"
            " cookie=0x1, duration=3.1s, table=0, n_packets=2, n_bytes=120, reset_counts priority=299,in_port=5"
            " actions=drop\n"
            " cookie=0x1, duration=3.1s, table=0, n_packets=0, n_bytes=0, reset_counts priority=299,in_port=6"
            " actions=drop\n"
            " cookie=0x1, duration=3.1s, table=0, n_packets=9, n_bytes=0, priority=0 actions=drop\n")
    assert refused_by_port(dump) == {5: 2, 6: 0}


def test_a_lan_too_small_for_a_full_vpc_packet_in_its_tunnel_is_named_with_the_mtu_that_fits() -> None:
    assert kwire.fragmenting_note(1600, 1500) == "" and kwire.fragmenting_note(1550, 1500) == ""
    assert kwire.fragmenting_note(None, 1500) == ""
    note = kwire.fragmenting_note(1500, 1500)
    assert note.startswith("LAN MTU 1500: full-size VPC packets (1500 bytes + 50 of tunnel) are fragmented")
    assert "an MTU of 1550 or more" in note
