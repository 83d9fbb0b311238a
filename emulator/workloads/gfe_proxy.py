"""The Google front end's proxy process: HAProxy in the front end host's namespace.

Thin adapter: writes the rendered haproxy.cfg and certificates under the run's state
directory (`/run/kubemu/kubemu<id>/gfe/`, so the process's command line carries the
run prefix and `kubemu clean` finds it), puts the Ingress addresses on the namespace's
loopback (one `ip -batch`), starts HAProxy in master-worker mode (`-W`) and reloads it
with SIGUSR2: the master starts new workers that take the listening sockets over
(`expose-fd listeners`) while the old ones finish their connections. A reload counts only
once the master has forked a new worker: the master re-executes itself on SIGUSR2 and a
second signal in that window is lost, so reloads are serialized and each is confirmed
(and sent again if the master let it pass). The access log (HAProxy's `log stdout`) goes
to RUN_DIR/logs/gfe-access.log.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time

from emulator.errors import KernelError
from emulator.kernel import links, netns, procs

log = logging.getLogger(__name__)
HAPROXY = "/usr/sbin/haproxy"
RELOAD_CONFIRM_SECONDS = 5.0   # per attempt: the master re-executes and forks within ~0.1 s when idle
RELOAD_ATTEMPTS = 3


class HaproxyRunner:
    """One HAProxy master in `netns`, its files in `state_dir`, its logs in `log_dir`."""

    def __init__(self, netns: str, state_dir: str, log_dir: str, run_id: str) -> None:
        self.netns, self.dir, self.log_dir, self.run_id = netns, state_dir, log_dir, run_id
        self.cert_dir = os.path.join(state_dir, "certs")
        self.cfg = os.path.join(state_dir, "haproxy.cfg")
        self.socket = os.path.join(state_dir, "admin.sock")
        self.proc: subprocess.Popen | None = None
        self.addresses: set[str] = set()
        self.config_text = ""
        self.reloads = 0
        self._lock = threading.Lock()   # one apply at a time: a reload is confirmed before the next
        os.makedirs(self.cert_dir, mode=0o700, exist_ok=True)
        os.makedirs(log_dir, exist_ok=True)

    def apply(self, config: str, files: dict[str, str], addresses: list[str]) -> dict:
        """Install config, certificates and addresses; start or reload HAProxy when they changed."""
        with self._lock:
            return self._apply(config, files, addresses)

    def _apply(self, config: str, files: dict[str, str], addresses: list[str]) -> dict:
        self._write_files(files)
        self._sync_addresses(set(addresses))
        if not config:   # the last Ingress is gone
            self.stop()
            self.config_text = ""
            return self.info()
        if config == self.config_text and self.running():
            return self.info()
        tmp = self.cfg + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # it holds the IAP key
        with os.fdopen(fd, "w") as f:
            f.write(config)
        check = subprocess.run([HAPROXY, "-c", "-q", "-C", self.dir, "-f", tmp], capture_output=True, text=True)
        if check.returncode != 0:
            alerts = [ln for ln in (check.stderr or check.stdout).splitlines() if "ALERT" in ln]
            raise KernelError("haproxy rejected the configuration", tmp, alerts[0] if alerts else check.stderr)
        os.replace(tmp, self.cfg)
        self.config_text = config
        if not self.running():
            self._start()
        else:
            self._reload()
        return self.info()

    def _reload(self) -> None:
        """SIGUSR2 to the master until it forks a new worker (the reload took effect)."""
        before = self._workers()
        for attempt in range(1, RELOAD_ATTEMPTS + 1):
            self.proc.send_signal(signal.SIGUSR2)
            deadline = time.monotonic() + RELOAD_CONFIRM_SECONDS
            while time.monotonic() < deadline:
                if self._workers() - before:
                    self.reloads += 1
                    log.info("HAProxy reloaded (%d)%s", self.reloads, f" on attempt {attempt}" if attempt > 1 else "")
                    return
                if not self.running():
                    raise KernelError("HAProxy exited on reload", self.cfg,
                                      _tail(os.path.join(self.log_dir, "gfe-haproxy.log")))
                time.sleep(0.02)
            log.warning("HAProxy did not fork a new worker %.0f s after SIGUSR2 (attempt %d)",
                        RELOAD_CONFIRM_SECONDS, attempt)
        raise KernelError("HAProxy did not reload", self.cfg, _tail(os.path.join(self.log_dir, "gfe-haproxy.log")))

    def _workers(self) -> set[int]:
        """Pids of the master's children (its current and old workers)."""
        return set(procs.children([self.proc.pid])) if self.proc is not None else set()

    def info(self) -> dict:
        return {"pid": self.proc.pid if self.proc else None, "reloads": self.reloads,
                "addresses": sorted(self.addresses)}

    def server_states(self) -> dict[str, dict[str, str]]:
        """backend -> server -> UP/DOWN/... from the stats socket (empty when not running)."""
        if not self.running() or not os.path.exists(self.socket):
            return {}
        try:
            with socket.socket(socket.AF_UNIX) as sk:
                sk.settimeout(2)
                sk.connect(self.socket)
                sk.sendall(b"show stat\n")
                data = b""
                while chunk := sk.recv(65536):
                    data += chunk
        except OSError:
            return {}
        return parse_show_stat(data.decode(errors="replace"))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _write_files(self, files: dict[str, str]) -> None:
        for name in set(os.listdir(self.cert_dir)) - set(files):
            os.unlink(os.path.join(self.cert_dir, name))
        for name, text in files.items():
            path = os.path.join(self.cert_dir, name)
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)

    def _sync_addresses(self, want: set[str]) -> None:
        lines = [f"addr add {ip}/32 dev lo" for ip in sorted(want - self.addresses)]
        # Removed after the reload: the old workers may still answer on them.
        links.ip_batch(self.netns, lines)
        gone = self.addresses - want
        self.addresses = want
        if gone:
            links.ip_batch(self.netns, [f"addr del {ip}/32 dev lo" for ip in sorted(gone)])

    def _start(self) -> None:
        env = {**os.environ, "KUBEMU_RUN_ID": self.run_id}
        out = open(os.path.join(self.log_dir, "gfe-access.log"), "ab")
        err = open(os.path.join(self.log_dir, "gfe-haproxy.log"), "ab")
        self.proc = netns.popen(self.netns, [HAPROXY, "-W", "-C", self.dir, "-f", self.cfg],
                                stdout=out, stderr=err, env=env, start_new_session=True)
        out.close()
        err.close()
        t0 = time.time()
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.time() - t0 > 10:
                raise KernelError("HAProxy did not start", self.cfg,
                                  _tail(os.path.join(self.log_dir, "gfe-haproxy.log")))
            time.sleep(0.05)
        log.info("HAProxy started (pid %d)", self.proc.pid)

    def stop(self) -> None:
        """Stop the master and its workers (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def _tail(path: str, n: int = 600) -> str:
    try:
        with open(path) as f:
            return f.read()[-n:]
    except OSError:
        return ""


def parse_show_stat(csv_text: str) -> dict[str, dict[str, str]]:
    """`show stat` CSV -> backend -> server -> status (FRONTEND/BACKEND rows left out)."""
    lines = csv_text.splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    cols = lines[0][2:].split(",")
    out: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        row = dict(zip(cols, line.split(",")))
        if row.get("svname") in (None, "", "FRONTEND", "BACKEND"):
            continue
        out.setdefault(row["pxname"], {})[row["svname"]] = row.get("status", "")
    return out
