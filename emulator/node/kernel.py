"""Thin adapter over `ip`, `sysctl` and `ethtool`: batched commands in a namespace.

Every command that changes the kernel goes through here, so the node code stays a
sequence of intentions and each namespace is configured with one `ip -batch` call.
"""
from __future__ import annotations

import os
import subprocess

from emulator.errors import KernelError


def run(cmd: list[str], input_: str | None = None, check: bool = True, timeout: float = 30) -> str:
    """Run a command; raise KernelError with its output when it fails and `check`."""
    proc = subprocess.run(cmd, input=input_, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise KernelError("command failed", " ".join(cmd[:6]), proc.stderr or proc.stdout)
    return proc.stdout


def ip_batch(netns: str | None, lines: list[str]) -> None:
    """Run many `ip` commands in one process, in `netns` (None: the root namespace)."""
    if not lines:
        return
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    run(cmd, "\n".join(lines) + "\n")


def netns_add(name: str) -> None:
    run(["ip", "netns", "add", name])


def netns_attach(name: str, pid: int) -> None:
    """Give the network namespace of process `pid` a name (bind mount in /run/netns)."""
    run(["ip", "netns", "attach", name, str(pid)])


def netns_delete(name: str) -> None:
    run(["ip", "netns", "del", name], check=False)


def netns_pids(name: str) -> list[int]:
    out = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def sysctl(netns: str, settings: dict[str, str]) -> None:
    """Set sysctls inside a namespace (net.* sysctls are per namespace)."""
    args = [f"{k}={v}" for k, v in settings.items()]
    run(["ip", "netns", "exec", netns, "sysctl", "-qw", *args])


def tx_offload_off(ifname: str, netns: str | None = None) -> None:
    """TX checksum offload off: needed on veths whose peer is on a userspace OVS bridge."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    run(prefix + ["ethtool", "-K", ifname, "tx", "off"], check=False)


def link_mac(netns: str | None, ifname: str) -> str:
    """The MAC address of an interface."""
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    out = run(prefix + ["-o", "link", "show", "dev", ifname])
    parts = out.split()
    return parts[parts.index("link/ether") + 1]


def sysctl_root_ipv6_off(ifname: str) -> None:
    """No IPv6 link-local address on one of our root-namespace links."""
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    if os.path.exists(path):
        with open(path, "w") as f:
            f.write("1")
