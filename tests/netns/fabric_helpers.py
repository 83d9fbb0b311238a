"""Helpers shared by the fabric netns tests: run a command, a free port, leftovers of a run."""
from __future__ import annotations

import os
import socket
import subprocess


def sh(*argv: str) -> str:
    """Run a command, fail the test with its stderr if it fails."""
    res = subprocess.run(argv, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(argv)}: {res.stderr}"
    return res.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leftovers(prefix: str) -> list[str]:
    """Links, namespaces and processes that still carry the run prefix."""
    found = [f"link {line.split(':')[1].strip()}" for line in sh("ip", "-o", "link").splitlines()
             if prefix in line]
    found += [f"netns {line.split()[0]}" for line in sh("ip", "netns", "list").splitlines() if prefix in line]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if prefix.encode() in f.read():
                    found.append(f"process {pid}")
        except OSError:
            pass
    return found


def join_by_veth(prefix: str, a: tuple[str, str], b: tuple[str, str]) -> None:
    """Create namespaces a[0] and b[0] joined by a veth, with addresses a[1]/24 and b[1]/24, up."""
    sh("ip", "netns", "add", a[0])
    sh("ip", "netns", "add", b[0])
    sh("ip", "link", "add", f"{prefix}va", "netns", a[0], "type", "veth", "peer", "name", f"{prefix}vb", "netns", b[0])
    for (ns, ip), dev in ((a, f"{prefix}va"), (b, f"{prefix}vb")):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
