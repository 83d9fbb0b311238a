"""A machine whose bridge cannot reach the SDN controller says why (the bring-up timeout's report)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

from emulator.fabric.machine import Machine
from emulator.naming import RunNames, new_run_id
from fabric_helpers import free_port, leftovers

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None and not os.path.exists("/usr/sbin/ovs-vswitchd"),
                       reason="needs Open vSwitch (Debian openvswitch-switch)"),
]


def test_connection_report_names_the_failed_connection_and_keeps_the_ovs_log() -> None:
    names = RunNames(new_run_id())
    state = tempfile.mkdtemp(prefix=f"/tmp/{names.prefix}-")
    m = Machine(names.run_id, 0, state, use_system_ovs=False)
    try:
        m.start(("127.0.0.1", free_port()))   # nothing listens there: the relay's connect is refused
        deadline = time.monotonic() + 30
        while True:   # OVS fills in the row's status after its first attempt
            report = m.connection_report()
            if "last_error" in report["summary"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert report["summary"].startswith("machine 0: is_connected=false status={"), report
        assert "last_error" in report["summary"], report
        assert m.bridge in report["text"] and "ovs-vswitchd.log" in report["text"]
        assert "|rconn|" in report["text"]   # the log tail holds the connection attempts
    finally:
        m.stop()
        shutil.rmtree(state, ignore_errors=True)
    assert leftovers(names.prefix) == []
