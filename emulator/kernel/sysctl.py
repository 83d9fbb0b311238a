"""Sysctls: net.* ones are per namespace, set with one `sysctl -w` run inside it."""
from __future__ import annotations

import os

from emulator.kernel.command import run


def sysctl(netns: str, settings: dict[str, str], check: bool = True) -> None:
    """Set sysctls inside a namespace."""
    args = [f"{k}={v}" for k, v in settings.items()]
    run(["ip", "netns", "exec", netns, "sysctl", "-qw", *args], check=check)


def disable_ipv6(ifname: str, netns: str | None = None) -> None:
    """No address at all on a link, not even an IPv6 link-local one (best effort)."""
    if netns:
        sysctl(netns, {f"net.ipv6.conf.{ifname}.disable_ipv6": "1"}, check=False)
        return
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    if os.path.exists(path):
        with open(path, "w") as f:
            f.write("1")
