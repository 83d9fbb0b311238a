"""The kernel underlay's pure parts: VNI, FDB towards the other machines only, the bridge's filter."""
from __future__ import annotations

import json

import pytest

from emulator.fabric import kwire
from emulator.kernel import vxlan
from emulator.naming import RunNames

pytestmark = pytest.mark.unit


def test_vni_is_distinct_per_run_and_fits_24_bits() -> None:
    assert kwire.vni("0000") == 1
    assert kwire.vni("zzzz") == 36 ** 4 < 2 ** 24
    assert kwire.vni("q3zx") != kwire.vni("q3zy")


def test_fdb_leaves_out_the_machine_itself_and_floods_to_each_other() -> None:
    peers = {"AA:00:00:00:00:01": "10.0.0.1", "aa:00:00:00:00:02": "10.0.0.2", "aa:00:00:00:00:03": "10.0.0.3"}
    lines = kwire.fdb_lines("kubemuq3zxx0", "aa:00:00:00:00:01", peers)
    assert lines == ["fdb replace aa:00:00:00:00:02 dev kubemuq3zxx0 dst 10.0.0.2 permanent",
                     "fdb replace aa:00:00:00:00:03 dev kubemuq3zxx0 dst 10.0.0.3 permanent",
                     "fdb append 00:00:00:00:00:00 dev kubemuq3zxx0 dst 10.0.0.2 permanent",
                     "fdb append 00:00:00:00:00:00 dev kubemuq3zxx0 dst 10.0.0.3 permanent"]
    assert not any("10.0.0.1" in ln for ln in lines)


def test_fdb_refuses_a_malformed_mac() -> None:
    with pytest.raises(ValueError):
        kwire.fdb_lines("x", "aa:00:00:00:00:01", {"aa:00:00:00:00:0g dev y": "10.0.0.2"})


def test_device_is_named_by_the_run_and_its_fdb_holds_only_the_static_entries() -> None:
    names = RunNames("q3zx")
    assert kwire.link_name(names, 2) == "kubemuq3zxx2"
    argv = vxlan.create_argv("kubemuq3zxx2", kwire.vni("q3zx"), "10.0.0.3", kwire.UDP_PORT, 3, 1600, None)
    assert argv[:4] == ["ip", "link", "add", "kubemuq3zxx2"]
    assert argv[argv.index("maxaddress") + 1] == "3" and "learning" in argv
    assert argv[argv.index("local") + 1] == "10.0.0.3"
    assert argv[argv.index("id") + 1] == str(kwire.vni("q3zx"))
    assert argv[argv.index("dstport") + 1] == "48479"
    assert vxlan.create_argv("d", 1, "10.0.0.3", 1, 3, 1600, "vm1")[:3] == ["ip", "-n", "vm1"]


def test_filter_accepts_known_macs_from_the_device_and_drops_the_rest() -> None:
    flows = kwire.filter_flows(3, ["AA:00:00:00:00:02"])
    assert flows == ["priority=100,in_port=3,dl_src=aa:00:00:00:00:02,actions=NORMAL",
                     "priority=90,in_port=3,actions=drop", "priority=0,actions=NORMAL"]


def test_link_stats_parsed_from_ip_json() -> None:
    text = json.dumps([{"ifname": "x", "stats64": {"rx": {"packets": 5, "bytes": 500, "dropped": 1},
                                                   "tx": {"packets": 7, "bytes": 700, "dropped": 0, "errors": 2}}}])
    assert kwire.parse_link_stats(text) == {"rx_packets": 5, "rx_bytes": 500, "rx_dropped": 1, "tx_packets": 7,
                                            "tx_bytes": 700, "tx_dropped": 0, "tx_errors": 2}
