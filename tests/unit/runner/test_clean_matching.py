"""`kubemu clean`'s pure parts: which ids are valid, which names and processes belong to a run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from emulator import paths
from emulator.errors import ConfigError
from emulator.naming import RunNames, owned_by, run_id_of, run_ids_in
from emulator.runner import cleanup
from emulator.runner.machines import machine_resource

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["", "q", "q3z", "q3zxy", "Q3ZX", "q3-x", "*", "kubemu", "kubemuq3z", " q3zx"])
def test_malformed_ids_are_refused_with_exit_2(text: str) -> None:
    with pytest.raises(ConfigError) as e:
        cleanup.parse_run_id(text)
    assert e.value.exit_code == 2 and repr(text) in str(e.value)


def test_force_applies_only_to_runs_named() -> None:
    with pytest.raises(ConfigError) as e:
        cleanup.clean(None, force=True)
    assert e.value.exit_code == 2


def test_an_id_is_taken_bare_or_with_its_prefix() -> None:
    assert cleanup.parse_run_id("q3zx") == "q3zx"
    assert cleanup.parse_run_id("kubemuq3zx") == "q3zx"


def test_every_name_a_run_creates_is_its_own_and_no_other_runs() -> None:
    names = RunNames("q3zx")
    made = [names.node_netns("default-pool-a-1"), names.host_netns("vm-1"), names.fabric_netns(2),
            names.pod_netns("default", "web-1"), names.fabric_port(12), names.bridge(0), names.tunnel(3),
            names.ifname("u", 1), names.mininet_name("node-a"), machine_resource("q3zx", 1),
            os.path.basename(cleanup.ray_temp_dir("q3zx")), os.path.basename(cleanup.state_dir("q3zx")),
            f"{names.prefix}-underlay"]
    for name in made:
        assert run_id_of(name) == "q3zx", name
        assert owned_by(name, "q3zx")
        assert not owned_by(name, "q3zy") and not owned_by(name, "q3z") and not owned_by(name, "")


@pytest.mark.parametrize("name", ["kubemuq3zy-node-a", "kubemuq3zxa", "kubemuq3zxab1", "xkubemuq3zx-node-a",
                                  "kubemuq3z", "kubemu-q3zx", "kubemuq3zx1", "veth1234abcd", "kubemuq3zxyz-node-a"])
def test_names_of_other_runs_or_nobody_are_not_the_runs(name: str) -> None:
    assert not owned_by(name, "q3zx")


def test_command_lines_name_runs_only_as_whole_tokens() -> None:
    for cmd in ("/tmp/kubemuq3zx-ray/session_latest/logs raylet", '--resources={"kubemuq3zx_machine_1": 1000}',
                "ovsdb-server --remote=punix:/run/kubemu/kubemuq3zx/db.sock", "ip link add kubemuq3zxp1 type veth",
                "bash --norc -is mininet:kubemuq3zx-node-a"):
        assert run_ids_in(cmd) == {"q3zx"}, cmd
    for cmd in ("kubemu clean q3zx", "kubemuq3zxyz", "xkubemuq3zx-ray", "/run/kubemu/ovs"):
        assert run_ids_in(cmd) == set(), cmd


def test_environment_names_the_run_exactly() -> None:
    assert cleanup.env_run_id(b"A=1\0KUBEMU_RUN_ID=q3zx\0B=2\0") == "q3zx"
    assert cleanup.env_run_id(b"KUBEMU_RUN_ID=q3zxyz\0") != "q3zx"
    assert cleanup.env_run_id(b"XKUBEMU_RUN_ID=q3zx\0A=KUBEMU_RUN_ID=q3zx") is None


def test_a_partial_id_matches_no_process_at_all() -> None:
    assert cleanup.run_processes("") == [] and cleanup.run_processes("q3") == []


def _record(root, run_id: str, pid: int, start) -> None:
    os.makedirs(os.path.join(root, f"kubemu{run_id}"), exist_ok=True)
    with open(os.path.join(root, f"kubemu{run_id}", "driver.json"), "w") as f:
        json.dump({"pid": pid, "proc_start": start}, f)


def test_a_driver_is_alive_only_as_the_very_process_that_registered(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(paths, "STATE_ROOT", str(tmp_path))
    me = os.getpid()
    _record(tmp_path, "aaaa", me, cleanup.proc_start(me))
    assert cleanup.driver_pid("aaaa") == me
    _record(tmp_path, "bbbb", me, cleanup.proc_start(me) - 1)     # the pid was reused by another process
    assert cleanup.driver_pid("bbbb") is None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    _record(tmp_path, "cccc", child.pid, 1)                        # exited
    assert cleanup.driver_pid("cccc") is None
    assert cleanup.driver_pid("dddd") is None                      # no record
