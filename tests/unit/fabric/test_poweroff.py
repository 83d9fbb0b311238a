"""A machine failing for real: which processes and namespaces its reaper takes (only this
machine's, only this run's), and how the driver finds the machine's new Ray node."""
from __future__ import annotations

import subprocess
import sys

import pytest

from emulator.errors import KubemuError
from emulator.fabric import poweroff
from emulator.kernel import procs
from emulator.runner import machines as machines_mod
from emulator.runner.machines import Machines

pytestmark = pytest.mark.unit


def test_a_raylet_is_known_by_its_program() -> None:
    assert poweroff.is_raylet(["/x/ray/core/src/ray/raylet/raylet", "--node_ip_address=1.2.3.4"])
    assert not poweroff.is_raylet(["python", "-m", "raylet"]) and not poweroff.is_raylet([])


def test_ancestor_and_descendants_follow_the_process_tree() -> None:
    outer = subprocess.Popen([sys.executable, "-c", "import subprocess,sys; subprocess.run(['sleep', '30'])"])
    try:
        for _ in range(100):
            kids = procs.descendants(outer.pid)
            if kids:
                break
            subprocess.run(["sleep", "0.05"])
        [sleeper] = kids
        assert procs.command(sleeper) == ["sleep", "30"]
        assert procs.ancestor(sleeper, lambda argv: argv[:1] == [sys.executable]) == outer.pid
        assert procs.ancestor(sleeper, lambda argv: False) is None
    finally:
        outer.kill()
        outer.wait()


def test_only_the_runs_namespaces_mounted_on_this_machine_are_taken(monkeypatch) -> None:
    names = ["kubemuab12-host-a", "kubemuab12-fabric1", "kubemuab123-host-b", "kubemuzz99-host-c", "other"]
    mounted = {"kubemuab12-host-a": "net:[11]", "kubemuzz99-host-c": "net:[33]"}   # fabric1: another VM's
    monkeypatch.setattr(poweroff.netns, "names", lambda: names)
    monkeypatch.setattr(poweroff.netns, "mounted_inode", mounted.get)
    assert poweroff.run_namespaces("ab12") == {"kubemuab12-host-a": "net:[11]"}
    asked = []
    monkeypatch.setattr(poweroff.procs, "in_netns", lambda inodes: asked.append(inodes) or [4242])
    monkeypatch.setattr(poweroff.procs, "descendants", lambda pid: [pid + 1])
    monkeypatch.setattr(poweroff.os, "getpgid", lambda pid: 77 if pid in (500, 777) else 1)
    monkeypatch.setattr(poweroff, "_pids", lambda: [500, 501, 777, 888, 889, 999])
    argv = {888: ["ovsdb-server", "/run/kubemu/kubemuab12/ovs1/conf.db", "--pidfile=/run/kubemu/kubemuab12/ovs1/x"],
            889: ["ovsdb-server", "/run/kubemu/kubemuab12/ovs10/conf.db"]}   # another machine's
    monkeypatch.setattr(poweroff.procs, "command", lambda pid: argv.get(pid, []))
    # raylet, its tree, its group, the run's namespaces', the machine's OVS
    assert poweroff.doomed("ab12", 500, "/run/kubemu/kubemuab12/ovs1") == {500, 501, 777, 888, 4242}
    assert asked == [{"net:[11]"}]


def _fleet(monkeypatch, nodes: list[dict]) -> Machines:
    fleet = Machines.__new__(Machines)
    fleet.node_ids, fleet.infos = ["n0", "old1"], [{"node_ip": "10.0.0.1"}, {"node_ip": "10.0.0.2"}]
    monkeypatch.setattr(machines_mod.ray, "nodes", lambda: nodes)
    monkeypatch.setattr(machines_mod.ray, "get_runtime_context",
                        lambda: type("Ctx", (), {"gcs_address": "10.0.0.1:6379"})())
    return fleet


def test_rejoin_takes_a_new_live_node_from_the_machines_address(monkeypatch) -> None:
    fleet = _fleet(monkeypatch, [
        {"NodeID": "old1", "Alive": True, "NodeManagerAddress": "10.0.0.2"},    # not yet seen dead
        {"NodeID": "other", "Alive": True, "NodeManagerAddress": "10.0.0.3"},
        {"NodeID": "new1", "Alive": True, "NodeManagerAddress": "10.0.0.2"}])
    assert fleet.wait_rejoined(1, timeout=1) >= 0 and fleet.node_ids[1] == "new1"


def test_rejoin_times_out_naming_the_address_and_the_command(monkeypatch) -> None:
    fleet = _fleet(monkeypatch, [{"NodeID": "new1", "Alive": False, "NodeManagerAddress": "10.0.0.2"}])
    with pytest.raises(KubemuError, match=r"no Ray node joined from its address 10\.0\.0\.2 within 1s .*"
                                          r"ray start --address=10\.0\.0\.1:6379"):
        fleet.wait_rejoined(1, timeout=1)
    assert fleet.node_ids[1] == "old1"
