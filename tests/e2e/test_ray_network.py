"""A local run's Ray is invisible from the network: every socket that the run's processes
listen on in the root namespace is on loopback (the driver's Ray node and a simulated
machine's alike), and Ray asks no cloud metadata server."""
from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys

import pytest

from conftest import cluster_from
from emulator.runner import cleanup, ray_local

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster():
    """The shared 3-node cluster, spread over 2 simulated machines (2 Ray nodes)."""
    with cluster_from("regional-3.yaml", machines=(2, "spread")) as c:
        yield c


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    return dict(e.decode(errors="replace").partition("=")[::2] for e in raw.split(b"\0") if b"=" in e)


def _loopback(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0].strip("[]").split("%")[0]
    if host == "*":
        return False
    ip = ipaddress.ip_address(host)
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_loopback


def listening(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process) of every TCP/UDP socket the given processes listen on here."""
    out = subprocess.run(["ss", "-lntupH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        owners = {int(p): n for n, p in re.findall(r'\("([^"]+)",pid=(\d+)', line)}
        if owners.keys() & pids:
            found.append((line.split()[4], ",".join(sorted(set(owners.values())))))
    return found


def test_the_runs_ray_listens_on_loopback_only(cluster):
    run_id = cluster.cluster.run_id
    pids = set(cleanup.run_processes(run_id)) | {os.getpid()}   # this test process is the run's driver
    socks = listening(pids)
    names = {n for _, n in socks}
    assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::NodeHost") for n in names), socks
    raylets = {p for p in pids if open(f"/proc/{p}/comm").read().strip() == "raylet"}
    assert len(raylets) == 2                                     # the driver's node and machine 1's
    assert len(socks) >= 10, socks
    exposed = [(a, n) for a, n in socks if not _loopback(a)]
    assert exposed == [], exposed


def test_ray_asks_no_cloud_metadata_server(cluster):
    """Ray's API server process looks for the cloud it runs on (169.254.169.254,
    metadata.google.internal) unless it finds a cluster config: it gets one, usage stats are off."""
    run_id = cluster.cluster.run_id
    api = [p for p in cleanup.run_processes(run_id)
           if b"dashboard/dashboard.py" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert len(api) == 1
    env = _environ(api[0])
    assert env["RAY_USAGE_STATS_ENABLED"] == "0" and env["HOME"] == ray_local.RAY_HOME
    probe = ("import os, requests\n"
             "asked = []\n"
             "def get(url, *a, **k):\n"
             "    asked.append(url)\n"
             "    raise requests.ConnectionError(url)\n"
             "requests.get = get\n"
             "from ray._common.usage import usage_lib\n"
             "usage_lib.get_cluster_config_to_report(os.path.expanduser('~/ray_bootstrap_config.yaml'))\n"
             "print(asked)\n")

    def asked(home: str) -> str:   # what Ray's own detection asks, with that HOME (requests faked)
        res = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "HOME": home},
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout
    assert asked(env["HOME"]).strip() == "[]"
    assert "169.254.169.254" in asked("/nonexistent")           # the probe the setting avoids
    logs = os.path.join(cleanup.ray_temp_dir(run_id), "session_latest", "logs")
    text = "".join(open(os.path.join(logs, f), errors="replace").read() for f in os.listdir(logs)
                   if os.path.isfile(os.path.join(logs, f)))
    assert "Usage reporting is disabled" in text
    assert "169.254.169.254" not in text and "metadata.google.internal" not in text
