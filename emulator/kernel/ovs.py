"""Open vSwitch for the VPC fabric: a private instance under the run directory, or the system's.

kubemu never reconfigures a machine-wide OVS it did not start. When no system OVS is
running, `OvsInstance` starts its own `ovsdb-server` and `ovs-vswitchd` whose database,
sockets, pid files and logs all live in the run directory; every `ovs-vsctl`/`ovs-ofctl`
call gets an explicit `--db=unix:...` and `OVS_RUNDIR`, so the two can never be confused.
(Mininet's `OVSSwitch` calls `ovs-vsctl` with the default database and would need the
process-wide environment changed; the explicit route keeps the private instance sealed.)

The kernel datapath is used when the `openvswitch` module is usable, else the userspace
(`netdev`) datapath, which needs TX checksum offload off on every veth attached to it.

The userspace datapath's connection tracker checks TCP sequence numbers more strictly than
the kernel's: when a SYN meets a server's TIME_WAIT socket (a kube-proxy SNAT port reused
while the pod still holds the old tuple), the server answers with an ACK of the old
connection and the client's RST carries that ACK's number, far outside the window the
SYN opened. Kernel conntrack lets that RST through ("reset in response to a challenge-ack
we let through earlier"), the RST clears the TIME_WAIT socket and the client's next SYN
connects; the userspace tracker marks it `+inv`, the firewall drops it and the connect
times out. GCP's firewall tracks connections by their 5-tuple without a TCP window, so a
private instance's userspace datapath runs with sequence checking off
(`dpctl/ct-disable-tcp-seq-chk`, like `nf_conntrack_tcp_be_liberal`).

With the userspace datapath every packet between hosts passes through ovs-vswitchd, so
it is the fabric's hardware: it runs at `FABRIC_NICE` (the default priority), not at the
niceness of the Ray worker that starts it (15: Ray lowers its workers' priority). Started
from a worker, it would inherit 15 and, with hundreds of busy emulated nodes at the same
priority, forward late: measured at 99 nodes, 10-30% of TCP segments retransmitted and
health-check connects of 1-2 s, with no packet dropped anywhere.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from types import TracebackType
from typing import Iterable, Mapping, Sequence

from emulator.errors import KernelError, PrerequisiteError
from emulator.kernel.links import disable_peer_tx_offload, disable_tx_offload, ip_batch
from emulator.kernel.netns import ns_exec_prefix
from emulator.kernel.ovs_procs import DAEMONS, cmdline, ovs_tool, pid_alive, terminate
from emulator.kernel.sockbuf import force_packet_rcvbuf
from emulator.kernel.sysctl import disable_ipv6
from emulator.naming import IFNAMSIZ

LOG = logging.getLogger(__name__)

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
SYSTEM_RUNDIRS = ("/run/openvswitch", "/var/run/openvswitch")
# Where to look for a running OVS instead: a run directory, or "off" to always start a private one.
SYSTEM_OVS_ENV = "KUBEMU_SYSTEM_OVS_RUNDIR"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path minus the terminating NUL
_TIMEOUT = 30.0
FABRIC_NICE = 0    # ovs-vswitchd's niceness (the module docstring says why)


def nice_prefix(target: int) -> list[str]:
    """`nice -n D`, D taking this process's niceness to `target` ([] when it is already there).
    Lowering it needs CAP_SYS_NICE; without it `nice` says so and runs the command as is."""
    delta = target - os.getpriority(os.PRIO_PROCESS, 0)
    return ["nice", "-n", str(delta)] if delta else []


def kernel_datapath_available() -> bool:
    """True when the `openvswitch` kernel module is loaded or can be loaded."""
    if os.path.isdir("/sys/module/openvswitch"):
        return True
    modprobe = shutil.which("modprobe") or shutil.which("modprobe", path="/usr/sbin:/sbin")
    if modprobe:
        subprocess.run([modprobe, "-q", "openvswitch"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, timeout=10)
    return os.path.isdir("/sys/module/openvswitch")


def system_rundirs() -> tuple[str, ...]:
    """The run directories where a running OVS is looked for: $KUBEMU_SYSTEM_OVS_RUNDIR alone
    when set ("off": none), else the standard ones."""
    chosen = os.environ.get(SYSTEM_OVS_ENV, "")
    if not chosen:
        return SYSTEM_RUNDIRS
    return () if chosen == "off" else (chosen,)


def system_db_socket() -> str | None:
    """The db socket of a running system OVS (one that answers), else None."""
    for rundir in system_rundirs():
        sock = os.path.join(rundir, "db.sock")
        if not os.path.exists(sock):
            continue
        res = subprocess.run([ovs_tool("ovs-vsctl"), f"--db=unix:{sock}", "--timeout=3", "show"],
                             capture_output=True, text=True, check=False)
        if res.returncode == 0:
            return sock
    return None


def controller_args(bridge: str, target: str) -> list[str]:
    """ovs-vsctl arguments (from a leading `--`) giving `bridge` one out-of-band controller record."""
    return ["--", "--id=@c", "create", "Controller", f'target="{target}"', "max_backoff=1000",
            "connection_mode=out-of-band", "--", "set", "Bridge", bridge, "controller=@c"]


class OvsInstance:
    """One machine's Open vSwitch: a private instance in `run_dir`, or a running system one."""

    def __init__(self, run_dir: str, prefer_system: bool = True,
                 datapath_type: str | None = None, netns: str | None = None, userspace_tso: bool = True) -> None:
        self.run_dir = os.path.abspath(run_dir)
        # A private instance may run inside a namespace of its own (the machine's fabric
        # namespace): its bridges, ports and the userspace datapath's taps live there.
        self.netns = netns
        self.prefer_system = prefer_system
        self.userspace_tso = userspace_tso
        self.private = False
        self.started = False
        self._datapath_type = datapath_type
        self._bridges: list[str] = []
        self._db = ""
        self._env = dict(os.environ)
        self.start_seconds = 0.0
        self._tuned: set[int] = set()   # packet sockets whose receive buffer we set (inodes)
        self._tune_failed = False

    # --- paths ---
    def path(self, name: str) -> str:
        """A file of the private instance inside the run directory."""
        return os.path.join(self.run_dir, name)

    @property
    def system_rundir(self) -> str:
        """The run directory of the system OVS in use (where its db socket is), spelled as
        ovs-vswitchd spells it: it compares unix target paths by text (/var/run, not /run)."""
        where = os.path.realpath(os.path.dirname(self._db[len("unix:"):]))
        return next((d for d in ("/var/run/openvswitch", "/run/openvswitch") if os.path.realpath(d) == where),
                    where)

    @property
    def db(self) -> str:
        """The ovsdb remote every vsctl call uses (`unix:...`)."""
        return self._db

    # --- lifecycle ---
    def start(self) -> "OvsInstance":
        """Use a running system OVS if allowed and present, else start the private instance."""
        if self.started:
            return self
        t0 = time.monotonic()
        sock = system_db_socket() if self.prefer_system else None
        if sock is not None:
            self.private = False
            self._db = f"unix:{sock}"
            self._env = {**{k: v for k, v in os.environ.items() if not k.startswith("OVS_")},
                         "OVS_RUNDIR": os.path.dirname(sock)}   # its ovs-appctl targets
            LOG.info("using the running system Open vSwitch (%s)", sock)
        else:
            self._start_private()
        self.started = True
        self.start_seconds = time.monotonic() - t0
        return self

    def _start_private(self) -> None:
        """Create a fresh database and start ovsdb-server and ovs-vswitchd, detached."""
        for cmd in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl"):
            ovs_tool(cmd)
        os.makedirs(self.run_dir, exist_ok=True)
        if len(self.path("x" * IFNAMSIZ + ".snoop")) > _SUN_PATH_MAX:
            raise PrerequisiteError(f"OVS run directory {self.run_dir} is too long for unix sockets")
        self.private = True
        self._db = f"unix:{self.path('db.sock')}"
        self._env = dict(os.environ, OVS_RUNDIR=self.run_dir, OVS_DBDIR=self.run_dir,
                         OVS_LOGDIR=self.run_dir, OVS_SYSCONFDIR=self.run_dir)
        if all(self._daemon_pid(d) for d in DAEMONS):
            LOG.info("private Open vSwitch already running in %s", self.run_dir)
            self._bridges = self.vsctl("list-br").split()  # all ours: stop() removes them
            return
        self._kill_daemons()
        for stale in ("conf.db", ".conf.db.~lock~", "db.sock"):
            if os.path.exists(self.path(stale)):
                os.unlink(self.path(stale))
        self._run([ovs_tool("ovsdb-tool"), "create", self.path("conf.db"), SCHEMA])
        self._spawn([ovs_tool("ovsdb-server"), self.path("conf.db"),
                     f"--remote=punix:{self.path('db.sock')}", *self._daemon_opts("ovsdb-server")])
        self.vsctl("--no-wait", "init")
        if self.userspace_tso and self.datapath_type == "netdev":
            # Packets keep their checksum/GSO metadata (virtio-net header) through the
            # userspace datapath, so veths with default offloads work and TCP is faster.
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true")
        prefix = ns_exec_prefix(self.netns) if self.netns else []
        self._spawn([*prefix, *nice_prefix(FABRIC_NICE), ovs_tool("ovs-vswitchd"), self._db,
                     *self._daemon_opts("ovs-vswitchd")])
        LOG.info("private Open vSwitch started in %s", self.run_dir)

    def _daemon_opts(self, daemon: str) -> list[str]:
        """Options that keep a daemon's pid file, log and control socket in the run directory."""
        return [f"--pidfile={self.path(daemon + '.pid')}", f"--log-file={self.path(daemon + '.log')}",
                f"--unixctl={self.path(daemon + '.ctl')}", "--detach", "--no-chdir", "-vconsole:off"]

    def _spawn(self, argv: list[str]) -> None:
        """Start a daemon with --detach; its early errors land in a file, not in a pipe it keeps."""
        errfile = self.path("ovs-start.err")
        with open(errfile, "w") as err:
            res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                 env=self._env, check=False, timeout=_TIMEOUT)
        if res.returncode != 0:
            with open(errfile) as f:
                raise KernelError("could not start Open vSwitch", " ".join(argv[:5]), f.read())

    def _daemon_pid(self, daemon: str) -> int | None:
        """Pid of our own daemon from its pid file, checked against /proc (None if gone)."""
        try:
            with open(self.path(daemon + ".pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        argv = cmdline(pid)
        if pid_alive(pid) and argv and os.path.basename(argv[0]) == daemon \
                and any(self.run_dir in a for a in argv):
            return pid
        return None

    def _kill_daemons(self) -> None:
        """Stop exactly this instance's daemons (by pid file), vswitchd first."""
        for daemon in reversed(DAEMONS):
            pid = self._daemon_pid(daemon)
            if pid is not None:
                terminate([pid])

    def stop(self) -> None:
        """Remove our bridges; for a private instance, stop its daemons."""
        if not self.started:
            return
        try:
            if self._bridges:
                args: list[str] = []
                for br in self._bridges:
                    args += ["--", "--if-exists", "del-br", br]
                self.vsctl(*args[1:], timeout=10)
        except KernelError as exc:
            LOG.warning("removing bridges failed: %s", exc)
        finally:
            self._bridges.clear()
            if self.private:
                ctl = self.path("ovs-vswitchd.ctl")
                if self._daemon_pid("ovs-vswitchd") and os.path.exists(ctl):
                    subprocess.run([ovs_tool("ovs-appctl"), "-t", ctl, "--timeout=5", "exit", "--cleanup"],
                                   env=self._env, capture_output=True, check=False)
                self._kill_daemons()
            self.started = False

    def __enter__(self) -> "OvsInstance":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- commands ---
    def _run(self, argv: Sequence[str], timeout: float = _TIMEOUT) -> str:
        """Run a command with this instance's environment; KernelError on failure."""
        try:
            res = subprocess.run(list(argv), capture_output=True, text=True, env=self._env,
                                 check=False, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise KernelError("Open vSwitch command timed out", " ".join(argv[:4])) from exc
        if res.returncode != 0:
            raise KernelError("Open vSwitch command failed", " ".join(argv[:6]), res.stderr or res.stdout)
        return res.stdout

    def vsctl(self, *args: str, timeout: float = _TIMEOUT) -> str:
        """`ovs-vsctl` against this instance's database."""
        return self._run([ovs_tool("ovs-vsctl"), f"--db={self._db}", f"--timeout={int(timeout)}", *args],
                         timeout=timeout + 5)

    def ofctl(self, *args: str, timeout: float = _TIMEOUT) -> str:
        """`ovs-ofctl -O OpenFlow13` against this instance's bridges."""
        return self._run([ovs_tool("ovs-ofctl"), "-O", "OpenFlow13", *args], timeout=timeout)

    def appctl(self, *args: str, timeout: float = _TIMEOUT) -> str:
        """`ovs-appctl` against this instance's ovs-vswitchd."""
        target = ["-t", self.path("ovs-vswitchd.ctl")] if self.private else []
        return self._run([ovs_tool("ovs-appctl"), *target, *args], timeout=timeout)

    def wait_revalidated(self) -> None:
        """Wait until datapath caches reflect the flow tables (an OpenFlow barrier does not)."""
        self.appctl("revalidator/wait")

    # --- bridges and ports ---
    @property
    def datapath_type(self) -> str:
        """`system` (kernel datapath) when the openvswitch module is usable, else `netdev`."""
        if self._datapath_type is None:
            self._datapath_type = "system" if kernel_datapath_available() else "netdev"
        return self._datapath_type

    @property
    def bridges(self) -> list[str]:
        """The bridges this instance created."""
        return list(self._bridges)

    def add_bridge(self, name: str, dpid: int, controller_port: int = 0,
                   controller_host: str = "127.0.0.1", controller_target: str | None = None) -> None:
        """A fail-secure OpenFlow 1.3 bridge with datapath id `dpid` under an out-of-band controller."""
        if len(name) > IFNAMSIZ:
            raise ValueError(f"bridge name {name} is longer than {IFNAMSIZ} characters")
        target = controller_target or f"tcp:{controller_host}:{controller_port}"
        self._create_bridge(name, dpid, target)
        error = self.vsctl("get", "Interface", name, "error").strip()
        if error not in ("[]", '""') and self.datapath_type == "system":
            LOG.warning("kernel datapath failed (%s); falling back to the userspace datapath", error)
            self.vsctl("--if-exists", "del-br", name)
            self._datapath_type = "netdev"
            self._create_bridge(name, dpid, target)
            error = self.vsctl("get", "Interface", name, "error").strip()
        if error not in ("[]", '""'):
            raise KernelError(f"bridge {name} has an error", "ovs-vsctl add-br", error)
        if self.private and self.datapath_type == "netdev":
            self.appctl("dpctl/ct-disable-tcp-seq-chk")  # the datapath exists once a bridge does
        if name not in self._bridges:
            self._bridges.append(name)

    def _create_bridge(self, name: str, dpid: int, target: str) -> None:
        """One vsctl transaction creating the bridge and its controller record."""
        self.vsctl(
            "--may-exist", "add-br", name,
            "--", "set", "Bridge", name, f"datapath_type={self.datapath_type}", "fail_mode=secure",
            "protocols=OpenFlow13", f"other-config:datapath-id={dpid:016x}",
            "other-config:disable-in-band=true", *controller_args(name, target))

    def set_controller(self, bridge: str, target: str | None) -> None:
        """Put `bridge` under the controller at `target` again, or (None) cut it off its controller."""
        if target is None:
            self.vsctl("del-controller", bridge)
        else:
            self.vsctl(*controller_args(bridge, target)[1:])

    def clear_flows(self, bridge: str) -> None:
        """Delete every flow and group of `bridge` (a rebooted switch's empty tables)."""
        self.ofctl("del-flows", bridge)
        self.ofctl("del-groups", bridge)

    def add_ports(self, bridge: str, ports: Iterable[tuple[str, int | None]],
                  peer_netns: Mapping[str, str] | None = None) -> dict[str, int]:
        """Attach root-namespace links in one transaction; returns each one's OpenFlow port.

        With the userspace datapath, TX checksum offload goes off on each link and, when
        `peer_netns` names the namespace (name or path) of a veth's other end, on that end
        too: the sender's end is the one that matters.
        """
        ports = list(ports)
        if not ports:
            return {}
        if self.datapath_type == "netdev":
            for ifname, _ in ports:
                disable_tx_offload(ifname, self.netns)
                if peer_netns and ifname in peer_netns:
                    disable_peer_tx_offload(ifname, peer_netns[ifname])
        args: list[str] = []
        for ifname, ofport in ports:
            args += ["--", "--may-exist", "add-port", bridge, ifname]
            if ofport is not None:
                args += ["--", "set", "Interface", ifname, f"ofport_request={ofport}"]
        self.vsctl(*args[1:])
        for ifname, _ in ports:
            disable_ipv6(ifname, self.netns)
        ip_batch(self.netns, [f"link set dev {ifname} up" for ifname, _ in ports])
        query: list[str] = []
        for ifname, _ in ports:
            query += ["--", "get", "Interface", ifname, "ofport"]
        deadline = time.monotonic() + 10
        while True:  # ofport is "[]" until ovs-vswitchd has opened the port
            raw = self.vsctl(*query[1:]).split()
            if all(x.lstrip("-").isdigit() for x in raw) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        numbers = [int(x) if x.lstrip("-").isdigit() else -1 for x in raw]
        result = dict(zip([p[0] for p in ports], numbers))
        bad = [n for n, num in result.items() if num <= 0]
        if bad:
            err = self.vsctl("get", "Interface", bad[0], "error").strip()
            raise KernelError(f"port {bad[0]} did not attach to {bridge}", "ovs-vsctl add-port", err)
        self.tune_port_sockets()
        return result

    def tune_port_sockets(self) -> None:
        """Private instance, userspace datapath: a receive buffer big enough for a TCP burst on
        the packet socket of every port opened since the last call (emulator/kernel/sockbuf.py
        says why). Where the kernel refuses (no pidfd_getfd, no CAP_SYS_PTRACE), one warning
        and the default buffers."""
        if not (self.private and self.datapath_type == "netdev") or self._tune_failed:
            return
        pid = self._daemon_pid("ovs-vswitchd")
        if pid is None:
            return
        try:
            self._tuned = force_packet_rcvbuf(pid, done=self._tuned)
        except OSError as e:
            self._tune_failed = True
            LOG.warning("could not enlarge the receive buffers of Open vSwitch's port sockets (%s): "
                        "bursts of TCP segments may be dropped at the switch", e)

    def add_port(self, bridge: str, ifname: str, ofport: int | None = None,
                 peer_netns: str | None = None) -> int:
        """Attach one root-namespace link to a bridge; returns its OpenFlow port number."""
        peers = {ifname: peer_netns} if peer_netns else None
        return self.add_ports(bridge, [(ifname, ofport)], peers)[ifname]

    def del_port(self, bridge: str, ifname: str) -> None:
        """Detach a port (no error if it is already gone)."""
        self.vsctl("--if-exists", "del-port", bridge, ifname)

    def ofports(self, bridge: str) -> dict[str, int]:
        """Port name -> OpenFlow port number of every port on the bridge."""
        out = self.vsctl("--format=csv", "--no-headings", "--columns=name,ofport", "list", "Interface")
        names = set(self.vsctl("list-ports", bridge).split())
        result: dict[str, int] = {}
        for line in out.splitlines():
            name, _, num = line.partition(",")
            name = name.strip('"')
            if name in names:
                result[name] = int(num)
        return result
