"""The container runtime of an emulated node: what "running a container" means here.

- agnhost (`registry.k8s.io/e2e-test-images/agnhost` with args, or any image with
  `command: [/agnhost, ...]`): netexec, serve-hostname and porter are built-in servers
  whose sockets live in the pod's namespace, served by the node agent's event loop (no
  process per pod); `connect` is a built-in one-shot check; `pause`: nothing to run.
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
import threading
from dataclasses import dataclass, field

from emulator.kernel import netns
from emulator.kernel.procs import children
from emulator.workloads.agnhost import agnhost_argv, parse_connect_args, parse_netexec_args

log = logging.getLogger(__name__)
KUBE_DNS_IMAGE = "kubemu/kube-dns"


class UnsupportedContainer(Exception):
    """A container kubemu cannot run (an image with no command)."""


def container_kind(container: dict) -> str:
    """netexec (any built-in agnhost server) | pause | connect | kube-dns | command."""
    image = container.get("image", "")
    if image.startswith(KUBE_DNS_IMAGE):
        return "kube-dns"
    argv = agnhost_argv(container)
    if argv is not None:
        if argv and argv[0] == "connect":
            parse_connect_args(argv)
            return "connect"
        return "netexec" if parse_netexec_args(argv, env=container_env(container)).serves else "pause"
    if image.startswith("registry.k8s.io/pause") or image.endswith("/pause") or image == "pause":
        return "pause"
    if container.get("command") or container.get("args"):
        return "command"
    raise UnsupportedContainer(f"image {image!r} has no command: kubemu runs agnhost netexec/pause "
                               "built in, and other containers' command/args as processes")


def container_env(container: dict) -> dict[str, str]:
    """The container's literal env values (what porter reads its ports from)."""
    return {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "name" in e}


@dataclass
class PodProcesses:
    """Processes started for one pod."""

    procs: list[subprocess.Popen] = field(default_factory=list)

    def stop(self, grace: float = 1.0) -> None:
        """SIGTERM, then SIGKILL after `grace`."""
        self.terminate()
        for p in self.procs:
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def terminate(self) -> None:
        """SIGTERM to every command. A sandbox's bwrap would kill its command at once on
        SIGTERM (--die-with-parent): the command, bwrap's grandchild (bwrap -> the PID
        namespace's init -> command), gets the SIGTERM instead, as a container's PID 1 does."""
        for p in self.procs:
            if p.poll() is not None:
                continue
            command = children(children([p.pid]))
            try:
                if command:
                    for pid in command:
                        os.kill(pid, signal.SIGTERM)
                else:
                    os.killpg(p.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def running(self) -> bool:
        """True while any process is still running."""
        return any(p.poll() is None for p in self.procs)

    def kill(self) -> None:
        """SIGKILL whatever is left, reap everything and forget the processes."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                log.warning("process %d did not end after SIGKILL", p.pid)
        self.procs.clear()


def start_process(pod_netns: str, argv: list[str], log_path: str, env: dict | None = None) -> subprocess.Popen:
    """Start kubemu's own `argv` (dnsmasq) in the pod's namespace, in its own process group,
    logging to a file. Not for manifest commands: those run contained (podexec.start_in_pod)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    out = open(log_path, "ab")
    try:
        return netns.popen(pod_netns, argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
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


class ThreadRun:
    """A built-in one-shot command (agnhost connect) run on a thread, polled like a Popen."""

    def __init__(self, fn, log_path: str) -> None:
        self.returncode: int | None = None
        self._fn, self._log_path = fn, log_path
        self._thread = threading.Thread(target=self._run, daemon=True, name="builtin-command")
        self._thread.start()

    def _run(self) -> None:
        try:
            res = self._fn()
            code, out = res.code, res.stdout + res.stderr
        except Exception as e:  # noqa: BLE001 - the container fails, the kubelet goes on
            code, out = 1, f"UNKNOWN: {e}\n".encode()
        os.makedirs(os.path.dirname(self._log_path), exist_ok=True)
        with open(self._log_path, "ab") as f:
            f.write(out)
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode
