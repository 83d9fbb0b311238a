"""A private Open vSwitch for the benches' hand-built floors: plain ovs tools, no kubemu code.

`start` runs ovsdb-server and ovs-vswitchd (inside a namespace if given) with every file in
one directory and makes a userspace-datapath bridge; `stop` ends both by their control
sockets. bench/calibration.py and bench/underlay_floor.py build their floors on it.
"""
from __future__ import annotations

import os
import subprocess

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def _run(*argv: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")


def _opts(d: str, daemon: str) -> list[str]:
    return [f"--pidfile={d}/{daemon}.pid", f"--log-file={d}/{daemon}.log", f"--unixctl={d}/{daemon}.ctl",
            "--detach", "--no-chdir", "-vconsole:off"]


def start(d: str, netns: str, bridge: str) -> list[str]:
    """ovsdb-server and ovs-vswitchd (in `netns`) with their files in directory `d`, bridge `bridge`
    on the userspace datapath; the `ovs-vsctl` argv for this instance."""
    db, sock = os.path.join(d, "conf.db"), os.path.join(d, "db.sock")
    _run("ovsdb-tool", "create", db, SCHEMA)
    _run("ovsdb-server", db, f"--remote=punix:{sock}", *_opts(d, "ovsdb-server"))
    vsctl = ["ovs-vsctl", f"--db=unix:{sock}", "--timeout=10"]
    _run(*vsctl, "--no-wait", "init")
    _run("ip", "netns", "exec", netns, "ovs-vswitchd", f"unix:{sock}", *_opts(d, "ovs-vswitchd"))
    _run(*vsctl, "add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev")
    return vsctl


def vswitchd_pid(d: str) -> int:
    """The pid of the instance's ovs-vswitchd."""
    with open(os.path.join(d, "ovs-vswitchd.pid")) as f:
        return int(f.read())


def stop(d: str) -> None:
    """End the instance whose files are in `d` (nothing if it never started)."""
    for daemon in ("ovs-vswitchd", "ovsdb-server"):
        ctl = os.path.join(d, f"{daemon}.ctl")
        if os.path.exists(ctl):
            subprocess.run(["ovs-appctl", "-t", ctl, "exit"], capture_output=True, timeout=10)
