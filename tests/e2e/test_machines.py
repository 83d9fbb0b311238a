"""The quickstart spread over 3 simulated machines, through `kubemu run --machines 3`.

Each machine is its own Ray node with its own fabric namespace and private Open vSwitch;
the bridges are joined by VXLAN over an emulated underlay and one SDN controller programs
them all. A user sees: the scenario passes, results.json says which machine (and which
Ray node) every host ran on, following the `zone` policy, the tunnel ports carried the
cross-machine requests, and nothing of the run is left afterwards.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from test_lifecycle import KUBEMU, QUICKSTART, ROOT, leftovers, root_namespace_state

pytestmark = pytest.mark.e2e


def kubemu_run(runs, scenario: str, *flags: str) -> dict:
    """`kubemu run SCENARIO FLAGS` to the end; its exit code, output, results and run id."""
    before = root_namespace_state()
    proc = subprocess.run([*KUBEMU, "run", scenario, "--runs-dir", str(runs), *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    m = re.search(r"run kubemu([a-z0-9]{4})", proc.stdout)
    assert m, proc.stdout + proc.stderr
    [run_dir] = [os.path.join(runs, d) for d in os.listdir(runs)]
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    return {"rc": proc.returncode, "out": proc.stdout, "results": results, "run_id": m.group(1),
            "root_before": before, "root_after": root_namespace_state()}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """One `kubemu run` of the quickstart over 3 machines placed by zone."""
    return kubemu_run(tmp_path_factory.mktemp("runs"), QUICKSTART, "--machines", "3", "--placement", "zone")


def test_quickstart_passes_on_three_machines(run) -> None:
    assert run["rc"] == 0, run["out"][-3000:]
    flow = run["results"]["flows"]["client-to-web"]
    assert flow["count"] == 1000 and flow["success_ratio"] == 1.0 and flow["distinct_backends"] >= 5


def test_placement_followed_the_zone_policy(run) -> None:
    res = run["results"]
    machines = res["machines"]
    assert machines["count"] == 3 and machines["placement"] == "zone" and machines["simulated"]
    zone_of = {n["name"]: n["zone"] for n in res["topology"]["nodes"]}
    machine_of = {h: v["machine"] for h, v in machines["hosts"].items()}
    zones = list(dict.fromkeys(zone_of.values()))
    assert len(zones) == 3
    for node, zone in zone_of.items():  # one zone per machine, in the topology's order
        assert machine_of[node] == zones.index(zone)
    # Every host's agent and every fabric ran on the Ray node of its machine, and those differ.
    ray_nodes = [m["ray_node_id"] for m in machines["machines"]]
    assert len(set(ray_nodes)) == 3
    assert [m["ran_on"] for m in machines["machines"]] == ray_nodes
    for host, v in machines["hosts"].items():
        assert v["ran_on"] == ray_nodes[v["machine"]], host
    assert len({m["netns"] for m in machines["machines"]}) == 3
    assert "placement: machine-0: default-pool-a-1" in run["out"]


def test_cross_machine_requests_crossed_the_tunnels(run) -> None:
    tunnels = run["results"]["machines"]["tunnels"]
    assert len(tunnels) == 6  # a full mesh between 3 machines
    # About 2/3 of the 1000 requests went to pods on the other machines, each a TCP
    # connection of several packets each way: far more than any background chatter.
    assert sum(t["tx_packets"] for t in tunnels.values()) >= 2000
    assert sum(t["rx_packets"] for t in tunnels.values()) >= 2000
    out_of = {m: sum(t["tx_packets"] for t in tunnels.values() if t["machine"] == m) for m in range(3)}
    assert sum(1 for v in out_of.values() if v >= 500) >= 2  # the client's machine and the servers'


def test_nothing_left_and_root_namespace_untouched(run) -> None:
    assert leftovers(run["run_id"]) == []
    assert run["root_after"] == run["root_before"]


def test_extra_hop_scenario_passes_spread_over_three_machines(tmp_path) -> None:
    """Load balancers (select groups), health checks and the extra hop, with backends behind tunnels."""
    r = kubemu_run(tmp_path, os.path.join(ROOT, "scenarios", "extra-hop.yaml"), "--machines", "3")
    assert r["rc"] == 0, r["out"][-3000:]
    machines = r["results"]["machines"]
    assert machines["placement"] == "spread"
    nodes = [n["name"] for n in r["results"]["topology"]["nodes"]]
    assert sorted(machines["hosts"][n]["machine"] for n in nodes) == [0, 0, 1, 1, 2, 2]
    assert sum(t["tx_packets"] for t in machines["tunnels"].values()) >= 1000
    assert leftovers(r["run_id"]) == []


def test_node_failure_scenario_passes_packed_on_three_machines(tmp_path) -> None:
    """A node crash and its recovery while the nodes' fabrics sit on different machines."""
    r = kubemu_run(tmp_path, os.path.join(ROOT, "scenarios", "node-failure.yaml"), "--machines", "3",
                   "--placement", "pack")
    assert r["rc"] == 0, r["out"][-3000:]
    machines = r["results"]["machines"]
    hosts = list(machines["hosts"])  # plan order: nodes, client hosts, the prober
    size = -(-len(hosts) // 3)
    assert [m["hosts"] for m in machines["machines"]] == [hosts[i:i + size] for i in range(0, len(hosts), size)]
    # The probes come from internet hosts on machine 1 to the nodes on machine 0.
    assert sum(t["tx_packets"] for t in machines["tunnels"].values()) >= 1000
    assert leftovers(r["run_id"]) == []


@pytest.fixture(scope="module")
def outage(tmp_path_factory) -> dict:
    """One run of scenarios/zone-outage.yaml: 3 machines by zone, machine 1 fails under LB probes."""
    return kubemu_run(tmp_path_factory.mktemp("outage"), os.path.join(ROOT, "scenarios", "zone-outage.yaml"))


def test_machine_failure_heals_through_the_load_balancer(outage) -> None:
    """Probes through the Cluster LB lose requests when machine 1 (zone b) goes, then are back at 100%."""
    assert outage["rc"] == 0, outage["out"][-3000:]
    steps = outage["results"]["steps"]
    down = next(s for s in steps if s.get("name") == "zone-b-down")
    assert down["action"] == "machine-failure" and down["machine"] == 1
    assert down["nodes"] == ["default-pool-b-1"]
    assert down["flows_left"] == 0 and down["datapath_disconnected_s"] is not None  # the controller saw it go
    assert down["ray_node"] == "kept (simulated machines share one host)"   # its hosts crashed, its Ray node stayed
    [avail] = [s for s in steps if s["step"] == "availability"]
    figs = avail["figures"]
    assert avail["ok"] and figs["recovered"] and figs["recover_s"] <= 15.0
    assert figs["requests_lost"] > 0   # the outage was felt before the health checks and endpoints moved
    ph = avail["phases"]
    assert ph["node_not_ready_s"] > 0 and ph["pods_evicted_s"] > ph["node_not_ready_s"]
    assert ph["services"]["web-cluster"]["endpoints_removed_s"] > 0


def test_recovered_machine_is_reprogrammed_and_serves_again(outage) -> None:
    steps = outage["results"]["steps"]
    back = next(s for s in steps if s.get("name") == "zone-b-back")
    assert back["machine"] == 1 and back["flows"] > 0 and back["datapath_reprogrammed_s"] is not None
    flow = outage["results"]["flows"]["from-zone-b"]   # from the recovered node, over the tunnels
    assert flow["count"] == 50 and flow["success_ratio"] == 1.0
    # Machine 1's tunnels carried traffic (the probes before the outage, the last flow after it).
    tunnels = outage["results"]["machines"]["tunnels"]
    assert sum(t["tx_packets"] for t in tunnels.values() if t["machine"] == 1) > 0


def test_machine_failure_leaves_nothing(outage) -> None:
    assert leftovers(outage["run_id"]) == []
    assert outage["root_after"] == outage["root_before"]
