"""With an Open vSwitch already running on the machine, kubemu uses it and touches only its
own bridge: the quickstart passes, its bridge is gone afterwards, and a bridge of someone
else's on the same OVS is left alone."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from emulator.kernel.ovs import SCHEMA, system_db_socket

from test_lifecycle import KUBEMU, QUICKSTART, ROOT, leftovers, start_run

pytestmark = pytest.mark.e2e
RUNDIR = "/var/run/openvswitch"


@pytest.fixture
def system_ovs():
    """The machine's OVS: the running one, or one started at the system paths for this test."""
    if system_db_socket() is not None:
        yield None
        return
    os.makedirs(RUNDIR, exist_ok=True)
    dbdir = tempfile.mkdtemp(prefix="system-ovs-test-")
    db = os.path.join(dbdir, "conf.db")
    subprocess.run(["ovsdb-tool", "create", db, SCHEMA], check=True)
    common = ["--detach", "--no-chdir", f"--log-file={dbdir}/log", "-vconsole:off"]
    subprocess.run(["ovsdb-server", db, f"--remote=punix:{RUNDIR}/db.sock",
                    f"--pidfile={RUNDIR}/ovsdb-server.pid", f"--unixctl={RUNDIR}/ovsdb-server.ctl", *common],
                   check=True)
    subprocess.run(["ovs-vsctl", "--no-wait", "init"], check=True)
    subprocess.run(["ovs-vswitchd", f"unix:{RUNDIR}/db.sock", f"--pidfile={RUNDIR}/ovs-vswitchd.pid",
                    f"--unixctl={RUNDIR}/ovs-vswitchd.ctl", *common], check=True)
    try:
        yield RUNDIR
    finally:
        subprocess.run(["ovs-appctl", "-t", f"{RUNDIR}/ovs-vswitchd.ctl", "exit", "--cleanup"], timeout=20)
        subprocess.run(["ovs-appctl", "-t", f"{RUNDIR}/ovsdb-server.ctl", "exit"], timeout=20)
        for f in ("db.sock", "ovsdb-server.pid", "ovs-vswitchd.pid", "ovsdb-server.ctl", "ovs-vswitchd.ctl"):
            if os.path.exists(os.path.join(RUNDIR, f)):
                os.unlink(os.path.join(RUNDIR, f))
        shutil.rmtree(dbdir, ignore_errors=True)


def test_quickstart_on_a_running_system_ovs(system_ovs, tmp_path):
    other = "test-other-br"
    subprocess.run(["ovs-vsctl", "--may-exist", "add-br", other, "--", "set", "Bridge", other,
                    "datapath_type=netdev"], check=True)
    try:
        proc, run_id = start_run(tmp_path)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        assert "scenario passed" in out
        results = json.load(open(glob.glob(str(tmp_path / "*" / "results.json"))[0]))
        assert results["topology"]["fabric"]["private_ovs"] is False   # it used the running one
        after = set(subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout.split())
        assert other in after                                         # someone else's bridge untouched
        assert not any(b.startswith(f"kubemu{run_id}") for b in after)  # ours removed
        assert not any(n.startswith(f"kubemu{run_id}") for n in os.listdir("/run/netns"))
        time.sleep(0.5)
        assert leftovers(run_id) == []
    finally:
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", other])
