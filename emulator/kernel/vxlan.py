"""Linux VXLAN devices: created in one namespace (where their UDP socket stays), moved to another."""
from __future__ import annotations

import json
import re

from emulator.kernel.command import run


def _ns(netns: str | None) -> list[str]:
    return ["-n", netns] if netns else []


def create_argv(name: str, vni: int, local_ip: str, port: int, maxaddress: int, mtu: int,
                netns: str | None, remote_ip: str | None = None) -> list[str]:
    """`ip link add` of a learning VXLAN device whose FDB holds at most `maxaddress` entries;
    with `remote_ip`, point to point (its default entry sends every frame there). Outer UDP
    checksum zero, as RFC 7348 recommends (the inner packets carry their own)."""
    remote = ["remote", remote_ip] if remote_ip else []
    return ["ip", *_ns(netns), "link", "add", name, "mtu", str(mtu), "type", "vxlan", "id", str(vni),
            "local", local_ip, *remote, "dstport", str(port), "learning", "maxaddress", str(maxaddress),
            "noudpcsum", "ttl", "64"]


def add(name: str, vni: int, local_ip: str, port: int, maxaddress: int, mtu: int, netns: str | None = None,
        remote_ip: str | None = None) -> None:
    """Create the device in `netns` (None: this process's namespace)."""
    run(create_argv(name, vni, local_ip, port, maxaddress, mtu, netns, remote_ip))


def move(name: str, netns: str | None, to_netns: str) -> None:
    """Move a link from `netns` (None: this process's) into `to_netns`."""
    run(["ip", *_ns(netns), "link", "set", name, "netns", to_netns])


def fdb_batch(netns: str, lines: list[str]) -> None:
    """`bridge -batch` lines (fdb add/replace/append ...) in `netns`."""
    run(["bridge", "-n", netns, "-batch", "-"], "\n".join(lines) + "\n")


def stats_json(netns: str, name: str) -> str:
    """`ip -s -j link show NAME` in `netns`."""
    return run(["ip", "-n", netns, "-s", "-j", "link", "show", name])


def path_mtu(netns: str | None, remote_ip: str) -> int | None:
    """The MTU towards `remote_ip` from `netns` (None: here): the route's own `mtu` if it has one,
    else its device's; None when there is no route."""
    route = run(["ip", *_ns(netns), "-o", "route", "get", remote_ip], check=False).strip()
    m = re.search(r"\bmtu (?:lock )?(\d+)", route)
    if m:
        return int(m.group(1))
    dev = re.search(r"\bdev (\S+)", route)
    if not dev:
        return None
    [link] = json.loads(run(["ip", *_ns(netns), "-j", "link", "show", dev.group(1)]))
    return int(link["mtu"])
