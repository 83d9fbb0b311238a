"""Three machines with their own addresses and Ray nodes, as three VMs on a LAN (tests/e2e/vmlan.py).

Each machine is a network namespace with its own address on a Linux bridge; a Ray head
runs in the first and a Ray worker in each other (`ray start` inside the namespace, as
the README says for VMs), and `kubemu run --address ... --machines 3 --placement zone`
runs from inside the first. A user sees: the quickstart passes, every machine's hosts ran
on that machine's Ray node, the run says it joined the machines with the kernel VXLAN
underlay and its counters show the requests and a cross-machine iperf3 flow crossed it,
zone-outage (machine 1 fails: its Ray node, with its raylet, workers, processes and the
run's kernel objects, goes down) heals on the other machines, and once machine 1's Ray node
rejoins (as a restarted VM, `ray start --address` in it again) the machine is built again and
its node serves; neither the machines nor this host keep anything of the run or of the test,
after a normal run, Ctrl-C mid-run, or a killed driver followed by `kubemu clean` on each machine.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from typing import Iterator

import pytest

from emulator.runner import cleanup
from test_lifecycle import QUICKSTART, ROOT
from vmlan import VmLan

pytestmark = pytest.mark.e2e
IPERF = os.path.join(ROOT, "scenarios", "machines-iperf.yaml")


def start_on(lan: VmLan, runs, scenario: str, *flags: str, **env: str) -> subprocess.Popen:
    """`kubemu run` inside machine 0 against the LAN's Ray cluster, its output into RUNS.out/.err."""
    return subprocess.Popen(lan.argv(0, os.path.join(ROOT, ".venv", "bin", "python"), "-m", "emulator.cli", "run",
                                     scenario, "--address", lan.head, "--runs-dir", str(runs), *flags),
                            cwd=ROOT, stdout=open(f"{runs}.out", "w"), stderr=open(f"{runs}.err", "w"),
                            env=lan.env(PYTHONPATH=ROOT, COLUMNS="200", **env))


def run_on(lan: VmLan, runs, scenario: str, *flags: str, **env: str) -> dict:
    """`kubemu run` inside machine 0 against the LAN's Ray cluster; output, results, run id."""
    proc = start_on(lan, runs, scenario, *flags, **env)
    proc.wait(timeout=900)
    return finish(lan, runs, proc)


def finish(lan: VmLan, runs, proc: subprocess.Popen) -> dict:
    """A finished run's output, results and run id, and what it left on the machines."""
    with open(f"{runs}.out") as out, open(f"{runs}.err") as err:
        stdout, stderr = out.read(), err.read()
    m = re.search(r"run kubemu([a-z0-9]{4})", stdout)
    assert m, stdout + stderr
    [run_dir] = [os.path.join(runs, d) for d in os.listdir(runs)]
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    rid = m.group(1)
    return {"rc": proc.returncode, "out": stdout, "err": stderr, "results": results, "run_id": rid,
            "left": left_on_machines(lan, rid)}


def left_on_machines(lan: VmLan, rid: str) -> list[str]:
    """Anything of run `rid`: its processes (on the whole host), each machine's links and its own /run/netns."""
    left = [f"process {p}" for p in cleanup.run_processes(rid)]
    for i in range(lan.count):
        links = subprocess.run(["ip", "-n", lan.vms[i], "-o", "link"], capture_output=True, text=True).stdout
        left += [f"vm{i} link {ln.split(':')[1].strip()}" for ln in links.splitlines() if f"kubemu{rid}" in ln]
        left += [f"vm{i} netns {n}" for n in lan.netns_names(i) if n.startswith(f"kubemu{rid}")]
    return left


def started(runs, proc: subprocess.Popen, pattern: str, timeout: float = 300) -> str:
    """Wait until the run's output has a line matching `pattern`; the run id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"{runs}.out") as f:
            out = f.read()
        m = re.search(r"run kubemu([a-z0-9]{4})", out)
        if m and re.search(pattern, out):
            return m.group(1)
        assert proc.poll() is None, out + open(f"{runs}.err").read()[-2000:]
        time.sleep(0.2)
    raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f}s: {out[-2000:]}")


@pytest.fixture(scope="module")
def lan(tmp_path_factory) -> Iterator[VmLan]:
    vms = VmLan(3, str(tmp_path_factory.mktemp("vm-logs"))).create()
    try:
        vms.ray_up()
        yield vms
    finally:
        vms.destroy()
        assert vms.leftovers() == []


@pytest.fixture(scope="module")
def quickstart(lan, tmp_path_factory) -> dict:
    return run_on(lan, tmp_path_factory.mktemp("qs"), QUICKSTART, "--machines", "3", "--placement", "zone")


@pytest.fixture(scope="module")
def iperf(lan, tmp_path_factory) -> dict:
    return run_on(lan, tmp_path_factory.mktemp("iperf"), IPERF)


def test_quickstart_passes_on_three_vms(quickstart) -> None:
    assert quickstart["rc"] == 0, quickstart["out"][-3000:] + quickstart["err"][-2000:]
    flow = quickstart["results"]["flows"]["client-to-web"]
    assert flow["count"] == 1000 and flow["success_ratio"] == 1.0 and flow["distinct_backends"] >= 5


def test_every_machine_ran_on_its_own_vm(quickstart, lan) -> None:
    machines = quickstart["results"]["machines"]
    assert machines["count"] == 3 and machines["placement"] == "zone" and not machines["simulated"]
    nodes = [m["ray_node_id"] for m in machines["machines"]]
    assert len(set(nodes)) == 3 and [m["ran_on"] for m in machines["machines"]] == nodes
    assert [m["node_ip"] for m in machines["machines"]] == lan.addrs   # machine i is VM i
    for host, v in machines["hosts"].items():
        assert v["ran_on"] == nodes[v["machine"]], host


def test_kernel_underlay_ran_and_carried_the_requests(quickstart) -> None:
    underlay = quickstart["results"]["machines"]["underlay"]
    assert underlay["kind"] == "kernel-vxlan"
    assert "underlay: kernel VXLAN (UDP 48479" in quickstart["out"]
    # the LAN's MTU is 1500: the run says full-size packets are fragmented between machines
    assert underlay["lan_mtu"] == 1500
    assert "LAN MTU 1500: full-size VPC packets (1500 bytes + 50 of tunnel) are fragmented between machines" \
        in " ".join(quickstart["out"].split())   # the terminal's width wraps it
    links = underlay["links"]
    assert [ln["kind"] for ln in links] == ["kernel-vxlan"] * 3
    # one device per other machine, the VPC bridge's tunnel ports; a VNI per pair of machines
    assert [sorted(ln["devices"]) for ln in links] == [sorted(ln["links"]) for ln in links]
    assert all(len(ln["links"]) == 2 for ln in links) and len(set(underlay["vnis"])) == 3
    assert sorted(n for ln in links for n in ln["links"]) == sorted(quickstart["results"]["machines"]["tunnels"])
    # ~2/3 of the 1000 requests went to pods on the other machines, several packets each way
    assert sum(ln["tx_packets"] for ln in links) >= 2000 and sum(ln["rx_packets"] for ln in links) >= 2000
    assert sum(ln["refused_frames"] for ln in links) == 0
    assert sum(t["tx_packets"] for t in quickstart["results"]["machines"]["tunnels"].values()) >= 2000


def test_cross_machine_iperf3_crosses_the_kernel_underlay(iperf) -> None:
    assert iperf["rc"] == 0, iperf["out"][-3000:] + iperf["err"][-2000:]
    far = iperf["results"]["flows"]["iperf-far"]
    assert far["success_ratio"] == 1.0 and far["bits_per_second"] > 0
    links = iperf["results"]["machines"]["underlay"]["links"]
    # the client is on machine 0, iperf-far on machine 1: the bulk went out of 0 and into 1
    assert links[0]["tx_bytes"] >= far["bytes_received"] and links[1]["rx_bytes"] >= far["bytes_received"]
    assert iperf["results"]["flows"]["iperf-near"]["success_ratio"] == 1.0


def test_nothing_left_on_the_machines(quickstart, iperf) -> None:
    assert quickstart["left"] == [] and iperf["left"] == []


def test_ctrl_c_mid_run_leaves_nothing_on_any_machine(lan, tmp_path) -> None:
    runs = tmp_path / "ctrl-c"
    proc = start_on(lan, runs, QUICKSTART, "--machines", "3", "--placement", "zone")
    rid = started(runs, proc, r"step 1/")
    assert all(any(n.startswith(f"kubemu{rid}") for n in lan.netns_names(i)) for i in range(3))  # it was up
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=180) == 130
    assert "interrupted by SIGINT: cluster torn down" in open(f"{runs}.err").read()
    assert left_on_machines(lan, rid) == []


def test_killed_driver_then_kubemu_clean_on_each_machine_leaves_nothing(lan, tmp_path) -> None:
    """kill -9 of the driver; then on every machine (inside its namespaces, as a shell on that VM)
    `kubemu clean <id>`. These "VMs" share one host's /proc and /run/netns directory, so the
    first machine's clean already finds and removes what the others had (on real VMs each
    removes its own); each must still succeed and name the run."""
    runs = tmp_path / "kill-9"
    proc = start_on(lan, runs, QUICKSTART, "--machines", "3", "--placement", "zone")
    rid = started(runs, proc, r"step 1/")
    proc.kill()
    proc.wait(10)
    assert left_on_machines(lan, rid) != []          # a crash leaves things behind on the machines...
    said = []
    for i in range(lan.count):
        res = subprocess.run(["nsenter", "-t", str(lan.raylet_pid(i)), "-m", "-n",
                              os.path.join(ROOT, ".venv", "bin", "python"), "-m", "emulator.cli", "clean", rid],
                             cwd=ROOT, capture_output=True, text=True, timeout=180,
                             env=lan.env(PYTHONPATH=ROOT))
        assert res.returncode == 0, res.stdout + res.stderr
        said.append(res.stdout.strip())
    assert said[0].startswith(f"kubemu{rid}: removed ") and "-fabric1" in said[0], said
    assert all(s.startswith(f"kubemu{rid}: removed ") or s == f"kubemu{rid}: nothing left to remove"
               for s in said[1:]), said
    assert left_on_machines(lan, rid) == []          # ...and `kubemu clean` removes them


REBOOT_SECONDS = 5.0   # machine 1 stays down this long after its Ray node died, before it rejoins


def _vm_processes(lan: VmLan, i: int) -> list[str]:
    """Processes living in machine i's own network namespace (its Ray node's, the run's there)."""
    vm = os.stat(f"/run/netns/{lan.vms[i]}").st_ino
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == vm:
                out.append(f"{pid} {open(f'/proc/{pid}/comm').read().strip()}")
        except OSError:
            continue
    return out


def fail_and_rejoin(lan: VmLan, runs, **env: str) -> dict:
    """scenarios/zone-outage.yaml on the VMs: machine 1 fails under load-balanced probes (its Ray
    node goes down with everything of the run on it); the test restarts its Ray node as a user
    restarts a VM, and the run's recover builds the machine again."""
    proc = start_on(lan, runs, os.path.join(ROOT, "scenarios", "zone-outage.yaml"), **env)
    try:
        seen = {}
        while proc.poll() is None:
            if not seen and lan.ray_down(1):
                seen["ray_down"] = time.time()
                time.sleep(REBOOT_SECONDS)
                links = subprocess.run(["ip", "-n", lan.vms[1], "-o", "link"], capture_output=True, text=True)
                seen["vm1_links_down"] = [ln for ln in links.stdout.splitlines() if "kubemu" in ln]
                seen["vm1_processes_down"] = _vm_processes(lan, 1)
                lan.rejoin(1)
                seen["rejoined"] = time.time()
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
    return {**finish(lan, runs, proc), "seen": seen}


@pytest.fixture(scope="module")
def outage(lan, tmp_path_factory) -> dict:
    return fail_and_rejoin(lan, tmp_path_factory.mktemp("outage"))


@pytest.fixture(scope="module")
def outage_relay(lan, tmp_path_factory) -> dict:
    """The same over the UDP relay: the rebuilt machine's wire has a new port, every machine is told."""
    return fail_and_rejoin(lan, tmp_path_factory.mktemp("outage-relay"), KUBEMU_UNDERLAY="relay")


def test_zone_outage_heals_and_recovers_on_vms(outage) -> None:
    assert outage["rc"] == 0, outage["out"][-3000:] + outage["err"][-2000:]
    res = outage["results"]
    assert res["machines"]["underlay"]["kind"] == "kernel-vxlan"
    [avail] = [s for s in res["steps"] if s["step"] == "availability"]
    assert avail["ok"] and avail["figures"]["recovered"] and avail["figures"]["requests_lost"] > 0
    assert res["flows"]["from-zone-b"]["success_ratio"] == 1.0   # over the rebuilt machine and tunnels
    assert res["machines"]["underlay"]["links"][1]["tx_packets"] > 0
    assert outage["left"] == []


def lan_addr(outage: dict, i: int) -> str:
    return outage["results"]["machines"]["machines"][i]["node_ip"]


def test_machine_failure_took_its_ray_node_down_and_recover_rejoined_it(outage) -> None:
    assert "ray_down" in outage["seen"], "machine 1's Ray node never went down"
    steps = {s.get("name"): s for s in outage["results"]["steps"] if s["step"] == "fault"}
    down, back = steps["zone-b-down"], steps["zone-b-back"]
    assert down["ray_node"] == "stopped" and down["ray_node_dead_s"] > 0
    # the driver saw the machine's actors die: its fabric and its node host
    assert "machine-1" in down["actors_lost"] and any(a.startswith("nodehost-1") for a in down["actors_lost"])
    assert down["datapath_disconnected_s"] is not None
    # the control plane on machine 0 saw it as a cluster sees a lost VM: the lease lapsed, the node
    # went NotReady, its pod was evicted and the Services' endpoints moved
    [avail] = [s for s in outage["results"]["steps"] if s["step"] == "availability"]
    ph = avail["phases"]
    assert ph["node_not_ready_s"] > 0 and ph["pods_evicted_s"] > ph["node_not_ready_s"]
    assert ph["services"]["web-cluster"]["endpoints_removed_s"] > 0
    assert back["ray_node"] == "rejoined" and back["flows"] > 0
    # a failed VM: no process (Ray's, the run's) and no link of the run left in it
    assert outage["seen"]["vm1_links_down"] == [] and outage["seen"]["vm1_processes_down"] == []
    # the new Ray node is machine 1's: same address, another node id
    assert down["node_ip"] == back["node_ip"] == lan_addr(outage, 1)
    assert back["ray_node_id"] != down["ray_node_id"]
    machine1 = outage["results"]["machines"]["machines"][1]   # where it ran after the rebuild
    assert machine1["ray_node_id"] == machine1["ran_on"] == back["ray_node_id"]


LOST_TO_THE_END = f"""
name: machine-lost
description: "machine 1 fails and never comes back: the run ends and tears down without it"
topology: {ROOT}/topologies/regional-3-lb.yaml
machines: {{count: 3, placement: zone}}
timing: fast
manifests:
  - {ROOT}/scenarios/manifests/node-failure.yaml
steps:
  - wait: {{ready: deployment/web}}
  - fault: {{name: gone, action: machine-failure, machine: 1}}
  - wait: {{ready: deployment/web}}
report: [summary]
"""


@pytest.fixture(scope="module")
def lost(lan, tmp_path_factory) -> dict:
    """Machine 1 fails and the run ends without recovering it; then the VM comes back (the
    module's other runs need it) and is looked into for anything of the run."""
    runs = tmp_path_factory.mktemp("lost")
    scenario = runs.parent / "machine-lost.yaml"
    scenario.write_text(LOST_TO_THE_END)
    out = run_on(lan, runs, str(scenario))
    assert lan.ray_down(1)
    lan.rejoin(1)
    out["vm1_netns_after"] = [n for n in lan.netns_names(1) if n.startswith(f"kubemu{out['run_id']}")]
    return out


def test_a_lost_machine_does_not_stop_the_run_nor_its_teardown(lost) -> None:
    assert lost["rc"] == 0, lost["out"][-3000:] + lost["err"][-2000:]
    [down] = [s for s in lost["results"]["steps"] if s["step"] == "fault"]
    assert down["ray_node"] == "stopped" and "machine-1" in down["actors_lost"]
    links = lost["results"]["machines"]["underlay"]["links"]
    assert links[1] == {"kind": "lost", "machine": 1} and links[0]["kind"] == links[2]["kind"] == "kernel-vxlan"
    assert lost["left"] == [] and lost["vm1_netns_after"] == []


def test_machine_failure_and_rejoin_over_the_udp_relay(outage_relay) -> None:
    assert outage_relay["rc"] == 0, outage_relay["out"][-3000:] + outage_relay["err"][-2000:]
    res = outage_relay["results"]
    assert res["machines"]["underlay"]["kind"] == "udp-relay"
    steps = {s.get("name"): s for s in res["steps"] if s["step"] == "fault"}
    assert steps["zone-b-down"]["ray_node"] == "stopped" and steps["zone-b-back"]["ray_node"] == "rejoined"
    assert res["flows"]["from-zone-b"]["success_ratio"] == 1.0
    assert outage_relay["left"] == []
