"""A LAN of "VMs" for tests: each machine a network namespace with its own address on a Linux bridge.

`VmLan(3)` makes `kbvm<id>-lan` (the LAN's bridge) and `kbvm<id>-vm<i>` (one per machine,
`eth0` = 172.30.77.<10+i>/24 with a default route, as a VM's NIC; MTU 1500 unless told),
all carrying the test prefix `kbvm<id>` and removed by `destroy`. On them a Ray cluster is started the way the
README says for real VMs (`ray start --head` on the first, `ray start --address` on the
others, RAY_AUTH_MODE=token), with two differences a shared host needs: each node keeps
its own temp dir (a VM has its own /tmp), and `--block` keeps each node in a session of
its own that `stop_ray` ends by its process group (`ray stop` would stop every Ray process
on this host, other runs' too). Commands run inside a machine with `ip netns exec`, so each
machine also has its own mount namespace: the network namespaces a machine makes are mounted
only there, though their names (files in the host's one /run/netns directory) and every
process are seen from all machines, unlike separate VMs. A machine whose
Ray node died (a kubemu machine-failure kills its process group) `rejoin`s as a restarted
VM does: `ray start --address` again inside it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

from emulator.naming import new_run_id

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAY = os.path.join(ROOT, ".venv", "bin", "ray")
SUBNET = "172.30.77"   # private, apart from every range of the topologies
GATEWAY = f"{SUBNET}.1"  # routed to, never answered: Ray finds its node address by the default route
RAY_PORT = 6379
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def sh(*argv: str, check: bool = True, timeout: float = 60,
       env: dict | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr or res.stdout}")
    return res


class VmLan:
    """`count` machines on one bridge; `ray_up` starts a Ray node in each."""

    def __init__(self, count: int, log_dir: str, mtu: int = 1500) -> None:
        self.prefix = f"kbvm{new_run_id()}"
        self.count, self.log_dir, self.mtu = count, log_dir, mtu
        self.lan = f"{self.prefix}-lan"
        self.vms = [f"{self.prefix}-vm{i}" for i in range(count)]
        self.addrs = [f"{SUBNET}.{10 + i}" for i in range(count)]
        self.ray: list[subprocess.Popen] = []

    @property
    def head(self) -> str:
        return f"{self.addrs[0]}:{RAY_PORT}"

    def create(self) -> "VmLan":
        sh("ip", "netns", "add", self.lan)
        sh("ip", "-n", self.lan, "link", "add", "br0", "mtu", str(self.mtu), "type", "bridge")
        sh("ip", "-n", self.lan, "link", "set", "br0", "up")
        for i, (vm, addr) in enumerate(zip(self.vms, self.addrs)):
            sh("ip", "netns", "add", vm)
            sh("ip", "link", "add", "eth0", "mtu", str(self.mtu), "netns", vm, "type", "veth", "peer", "name",
               f"{self.prefix}p{i}", "mtu", str(self.mtu), "netns", self.lan)
            sh("ip", "-n", self.lan, "link", "set", f"{self.prefix}p{i}", "master", "br0", "up")
            for cmd in (["link", "set", "lo", "up"], ["addr", "add", f"{addr}/24", "dev", "eth0"],
                        ["link", "set", "eth0", "up"], ["route", "add", "default", "via", GATEWAY]):
                sh("ip", "-n", vm, *cmd)
        return self

    def argv(self, i: int, *cmd: str) -> list[str]:
        """`cmd` run inside machine i."""
        return ["ip", "netns", "exec", self.vms[i], *cmd]

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **RAY_ENV, **extra}

    def ray_up(self, timeout: float = 300) -> None:
        """`ray start --head` in machine 0, `ray start --address` in every other; wait for all nodes."""
        os.makedirs(self.log_dir, exist_ok=True)
        for i in range(self.count):
            self.ray.append(self._start_node(i))
            self._wait_nodes(i + 1, timeout)

    def _start_node(self, i: int) -> subprocess.Popen:
        """`ray start` in machine i, in a session of its own."""
        role = ["--head", f"--port={RAY_PORT}", "--include-dashboard=false"] if i == 0 else \
            [f"--address={self.head}"]
        with open(os.path.join(self.log_dir, f"ray-vm{i}.log"), "a") as out:
            return subprocess.Popen(
                self.argv(i, RAY, "start", *role, "--block", "--disable-usage-stats",
                          f"--temp-dir=/tmp/{self.prefix}-vm{i}-ray"),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env=self.env())

    def ray_down(self, i: int) -> bool:
        """Whether machine i's Ray node (its `ray start` session) has ended."""
        return self.ray[i].poll() is not None

    def rejoin(self, i: int, timeout: float = 300) -> None:
        """Machine i (not the head) comes back: `ray start --address` in it again; wait for it to join."""
        assert i > 0 and self.ray_down(i)
        self.ray[i] = self._start_node(i)
        self._wait_nodes(self.count, timeout)

    def _wait_nodes(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                 "print(sum(1 for x in ray.nodes() if x['Alive']))")
        res = None
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.ray):
                raise RuntimeError(f"a Ray node exited; see {self.log_dir}")
            res = sh(*self.argv(0, os.path.join(ROOT, ".venv", "bin", "python"), "-c", probe, self.head),
                     check=False, timeout=180, env=self.env())
            if res.returncode == 0 and res.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            time.sleep(1)
        last = (res.stdout + res.stderr)[-1500:] if res is not None else ""
        raise RuntimeError(f"{n} Ray nodes not alive within {timeout:.0f}s; see {self.log_dir}; last probe: {last}")

    def raylet_pid(self, i: int) -> int | None:
        """The raylet of machine i (a child of its `ray start`), to look into its mount namespace."""
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
                if b"raylet" in cmd.split(b"\0")[0] and os.getpgid(int(pid)) == self.ray[i].pid:
                    return int(pid)
            except (OSError, IndexError):
                continue
        return None

    def netns_names(self, i: int) -> list[str]:
        """The named namespaces machine i's Ray node sees (/run/netns in its mount namespace)."""
        pid = self.raylet_pid(i)
        if pid is None:
            return []
        res = sh("nsenter", "-t", str(pid), "-m", "ls", "/run/netns", check=False)
        return res.stdout.split()

    def stop_ray(self, grace: float = 15) -> None:
        """End every machine's Ray node by its session (SIGTERM, then SIGKILL)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.ray:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while any(p.poll() is None for p in self.ray) and time.monotonic() < deadline:
                time.sleep(0.2)
        self.ray.clear()

    def destroy(self) -> None:
        """Ray nodes, machines, LAN, temp dirs: nothing of the test prefix is left."""
        self.stop_ray()
        for ns in [*self.vms, self.lan]:
            sh("ip", "netns", "del", ns, check=False)
        sh("rm", "-rf", *[f"/tmp/{self.prefix}-vm{i}-ray" for i in range(self.count)], check=False)

    def leftovers(self) -> list[str]:
        """Anything of the test prefix still on the host."""
        found = [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(self.prefix)]
        found += [ln for ln in sh("ip", "-o", "link").stdout.splitlines() if self.prefix in ln]
        found += [p for p in os.listdir("/tmp") if p.startswith(self.prefix)]
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if self.prefix.encode() in f.read():
                        found.append(f"process {pid}")
            except OSError:
                pass
        return found
