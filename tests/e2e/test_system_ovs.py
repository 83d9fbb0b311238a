"""With an Open vSwitch already running on the machine, kubemu uses it and touches only its
own bridge: the quickstart passes, its bridge is gone afterwards, and a bridge of someone
else's on the same OVS is left alone.

When the machine runs no OVS, the test starts one in a run directory of its own and points
only its kubemu run at it ($KUBEMU_SYSTEM_OVS_RUNDIR): one at the standard path would be
taken by any other kubemu run starting meanwhile on the machine, whose bridge would then go
with it when the test stops it."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from emulator.kernel.ovs import SCHEMA, SYSTEM_OVS_ENV, system_db_socket

from test_lifecycle import leftovers, start_run

pytestmark = pytest.mark.e2e


@pytest.fixture
def system_ovs():
    """The environment a run needs to find the machine's OVS: the running one ({}), or one
    started for this test in its own run directory."""
    if system_db_socket() is not None:
        yield {}
        return
    rundir = tempfile.mkdtemp(prefix="kmovs-")   # short: unix socket paths are at most 107 bytes
    env = {**os.environ, "OVS_RUNDIR": rundir, "OVS_DBDIR": rundir, "OVS_LOGDIR": rundir}
    db = os.path.join(rundir, "conf.db")
    subprocess.run(["ovsdb-tool", "create", db, SCHEMA], check=True)
    common = ["--detach", "--no-chdir", "--pidfile", "--log-file", "-vconsole:off"]
    subprocess.run(["ovsdb-server", db, f"--remote=punix:{rundir}/db.sock", *common], check=True, env=env)
    subprocess.run(["ovs-vsctl", f"--db=unix:{rundir}/db.sock", "--no-wait", "init"], check=True)
    subprocess.run(["ovs-vswitchd", f"unix:{rundir}/db.sock", *common], check=True, env=env)
    try:
        yield {SYSTEM_OVS_ENV: rundir}
    finally:
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            subprocess.run(["ovs-appctl", "-t", daemon, "exit", *(["--cleanup"] if daemon == "ovs-vswitchd" else [])],
                           timeout=20, env=env)
        shutil.rmtree(rundir, ignore_errors=True)


def vsctl(ovs_env: dict, *args: str) -> str:
    db = [f"--db=unix:{ovs_env[SYSTEM_OVS_ENV]}/db.sock"] if ovs_env else []
    return subprocess.run(["ovs-vsctl", *db, *args], capture_output=True, text=True, check=True).stdout


def test_quickstart_on_a_running_system_ovs(system_ovs, tmp_path):
    other = "test-other-br"
    vsctl(system_ovs, "--may-exist", "add-br", other, "--", "set", "Bridge", other, "datapath_type=netdev")
    try:
        proc, run_id = start_run(tmp_path, env=system_ovs)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        assert "scenario passed" in out
        results = json.load(open(glob.glob(str(tmp_path / "*" / "results.json"))[0]))
        assert results["topology"]["fabric"]["private_ovs"] is False   # it used the running one
        after = set(vsctl(system_ovs, "list-br").split())
        assert other in after                                         # someone else's bridge untouched
        assert not any(b.startswith(f"kubemu{run_id}") for b in after)  # ours removed
        assert not any(n.startswith(f"kubemu{run_id}") for n in os.listdir("/run/netns"))
        time.sleep(0.5)
        assert leftovers(run_id) == []
    finally:
        vsctl(system_ovs, "--if-exists", "del-br", other)
