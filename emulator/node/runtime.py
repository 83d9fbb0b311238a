"""The container runtime of an emulated node: what "running a container" means here.

- agnhost test images (`registry.k8s.io/e2e-test-images/agnhost`) with `netexec`: a
  built-in netexec-compatible server whose sockets live in the pod's namespace, served
  by the node agent's event loop (no process per pod); `pause`: nothing to run.
- `kubemu/kube-dns`: as GKE's kube-dns pod, dnsmasq on port 53 in front of a kubedns
  server (emulator/node/kubedns.py) answering from a zone file the node agent keeps in
  step with Services and EndpointSlices.
- any other container with `command`/`args`: that command, run as a real process in
  the pod's namespace, contained (sandbox.py, podexec.py), with its output in the run
  directory.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
KUBE_DNS_IMAGE = "kubemu/kube-dns"


class UnsupportedContainer(Exception):
    """A container kubemu cannot run (an image with no command)."""


def container_kind(container: dict) -> str:
    """netexec | pause | kube-dns | command."""
    image = container.get("image", "")
    if image.startswith(KUBE_DNS_IMAGE):
        return "kube-dns"
    if "agnhost" in image and not container.get("command"):
        from emulator.workloads.agnhost import parse_netexec_args
        return "netexec" if parse_netexec_args(container.get("args") or []).serves else "pause"
    if image.startswith("registry.k8s.io/pause") or image.endswith("/pause") or image == "pause":
        return "pause"
    if container.get("command") or container.get("args"):
        return "command"
    raise UnsupportedContainer(f"image {image!r} has no command: kubemu runs agnhost netexec/pause "
                               "built in, and other containers' command/args as processes")


@dataclass
class PodProcesses:
    """Processes started for one pod."""

    procs: list[subprocess.Popen] = field(default_factory=list)

    def stop(self, grace: float = 1.0) -> None:
        """SIGTERM, then SIGKILL after `grace`. A sandbox's bwrap would kill its command at
        once on SIGTERM (--die-with-parent): the command, bwrap's grandchild (bwrap -> the PID
        namespace's init -> command), gets the SIGTERM instead, as a container's PID 1 does."""
        for p in self.procs:
            command = children(children([p.pid]))
            try:
                if command:
                    for pid in command:
                        os.kill(pid, signal.SIGTERM)
                else:
                    os.killpg(p.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        for p in self.procs:
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        self.procs.clear()


def children(pids: list[int]) -> list[int]:
    """The live children of `pids` (by parent pid, from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) in pids:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def start_process(pod_netns: str, argv: list[str], log_path: str, env: dict | None = None) -> subprocess.Popen:
    """Start kubemu's own `argv` (dnsmasq) in the pod's namespace, in its own process group,
    logging to a file. Not for manifest commands: those run contained (podexec.start_in_pod)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    out = open(log_path, "ab")
    try:
        return subprocess.Popen(["ip", "netns", "exec", pod_netns, *argv], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})})
    finally:
        out.close()


def dnsmasq_argv(listen_ip: str, pid_file: str, kubedns_port: int = 10053) -> list[str]:
    """dnsmasq as kube-dns's front runs it: cluster.local and reverse names forwarded to the
    kubedns server on 127.0.0.1, nothing else (kubemu has no upstream resolver). Not
    caching (GKE's caches 1000 names for up to the 30 s TTL): answers follow the API at once."""
    backend = f"127.0.0.1#{kubedns_port}"
    return ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
            f"--server=/cluster.local/{backend}", f"--server=/in-addr.arpa/{backend}",
            "--domain-needed", f"--listen-address={listen_ip}", "--bind-interfaces", "--user=root",
            f"--pid-file={pid_file}", "--log-facility=-", "--cache-size=0", "--no-negcache"]


def kubedns_argv(zone_file: str, port: int = 10053) -> list[str]:
    """The kubedns server (emulator.node.kubedns) answering from `zone_file` on 127.0.0.1:`port`."""
    return [sys.executable, "-m", "emulator.node.kubedns", "--zone", zone_file, "--port", str(port)]


def render_dns_hosts(services: list[dict], domain: str = "cluster.local") -> str:
    """hosts-file lines `<clusterIP> <svc>.<ns>.svc.<domain>` for every Service with an IP."""
    lines = []
    for svc in sorted(services, key=lambda s: (s["metadata"].get("namespace", "default"), s["metadata"]["name"])):
        ip = svc.get("spec", {}).get("clusterIP")
        if ip and ip != "None":
            ns = svc["metadata"].get("namespace", "default")
            lines.append(f"{ip} {svc['metadata']['name']}.{ns}.svc.{domain}")
    return "\n".join(lines) + "\n"


def wait_for_line(path: str, text: str, timeout: float = 15.0) -> bool:
    """True once the log file at `path` holds `text` (a server saying it serves)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                if text in f.read():
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False
