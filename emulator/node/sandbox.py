"""How a pod's process is contained: the argv that runs it in a bubblewrap sandbox.

Pure: a typed spec in, an argv out; the adapter (podexec.py) inspects the host and runs it.
The chain is `nsenter --net` (the pod's network namespace) -> `setpriv` (drop from root to
an unprivileged host uid, no capabilities, no new privileges) -> `bwrap` (own user, mount,
PID, IPC, UTS and cgroup namespaces; read-only system directories; private /tmp, /proc
and /dev; a clean environment). Root in a pod (`runAsUser: 0`) is root only inside its
user namespace: on the host it is uid 65534 with no capabilities.
"""
from __future__ import annotations

from dataclasses import dataclass

NOBODY = 65534
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Under /etc: files replaced by /dev/null and directories by an empty tmpfs (password
# hashes, host keys, other pods' files, OVS state, and tool configs that may hold tokens).
ETC_SECRET_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-",
                    "/etc/security/opasswd", "/etc/machine-id", "/etc/pip.conf", "/etc/npmrc",
                    "/etc/gitconfig", "/etc/environment")
ETC_SECRET_DIRS = ("/etc/ssh", "/etc/ssl/private", "/etc/sudoers.d", "/etc/netns",
                   "/etc/openvswitch", "/etc/ray")


class SandboxError(Exception):
    """A pod's process cannot be run contained (bad securityContext, no bwrap)."""


@dataclass(frozen=True)
class HostLayout:
    """What the host offers the sandbox: system paths (target of a symlink, or None for a
    directory) and the secret /etc entries that exist there and must be hidden."""

    system: tuple[tuple[str, str | None], ...]
    etc_secret_files: tuple[str, ...] = ()
    etc_secret_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxSpec:
    """One contained process of a pod."""

    netns_path: str                      # /run/netns/<pod netns> (the node's for hostNetwork)
    argv: tuple[str, ...]
    hostname: str
    uid: int = NOBODY                    # uid/gid inside the sandbox
    gid: int = NOBODY
    env: tuple[tuple[str, str], ...] = ()
    etc_files: tuple[tuple[str, str], ...] = ()   # (host source, /etc target), e.g. resolv.conf
    # (host file, path in the pod): copied in by bwrap from a descriptor kubemu opens as root,
    # so the pod reads its copy (service account token) without any access to the host file.
    data_files: tuple[tuple[str, str], ...] = ()
    tty: bool = False                    # on a pty of kubemu's own (exec -t): keep it as the
                                         # controlling terminal (no --new-session)
    cwd: str = "/"

    @property
    def host_uid(self) -> int:
        """The uid on the host: the same as inside, except that root maps to nobody."""
        return self.uid if self.uid != 0 else NOBODY

    @property
    def host_gid(self) -> int:
        return self.gid if self.gid != 0 else NOBODY


@dataclass(frozen=True)
class Identity:
    """Who a container runs as (from its and its pod's securityContext)."""

    uid: int = NOBODY
    gid: int = NOBODY


def container_identity(pod_spec: dict, container: dict) -> Identity:
    """runAsUser/runAsGroup (container overrides pod); nobody when unset; SandboxError
    for runAsNonRoot with runAsUser 0, as the kubelet refuses it."""
    pod_sc = pod_spec.get("securityContext") or {}
    c_sc = container.get("securityContext") or {}

    def pick(key: str):
        return c_sc.get(key, pod_sc.get(key))
    uid, gid, non_root = pick("runAsUser"), pick("runAsGroup"), pick("runAsNonRoot")
    for key, v in (("runAsUser", uid), ("runAsGroup", gid)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 2**31):
            raise SandboxError(f"securityContext.{key} must be a non-negative integer, got {v!r}")
    if non_root and uid == 0:
        raise SandboxError("securityContext: runAsNonRoot is true but runAsUser is 0")
    uid = NOBODY if uid is None else uid
    gid = (uid if uid != NOBODY else NOBODY) if gid is None else gid
    return Identity(uid, gid)


def container_env(container: dict, hostname: str, run_id: str | None,
                  extra: dict[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """A container's environment from scratch: PATH, HOME, HOSTNAME, the run id (how
    `kubemu clean` finds leftovers), `extra` (e.g. KUBERNETES_SERVICE_*), then its `env:`."""
    env = {"PATH": DEFAULT_PATH, "HOME": "/tmp", "HOSTNAME": hostname}
    if run_id:
        env["KUBEMU_RUN_ID"] = run_id
    env.update(extra or {})
    for e in container.get("env", []) or []:
        if isinstance(e, dict) and "name" in e:
            env[str(e["name"])] = str(e.get("value", ""))
    return tuple(env.items())


def bwrap_args(spec: SandboxSpec, layout: HostLayout, fds: tuple[int, ...] = ()) -> list[str]:
    """The bwrap options (everything between `bwrap` and `--`); `fds[i]` is an open descriptor
    of `spec.data_files[i]` (inherited by bwrap)."""
    a = ["--unshare-user", "--disable-userns", "--uid", str(spec.uid), "--gid", str(spec.gid),
         "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
         "--hostname", spec.hostname, "--die-with-parent", *([] if spec.tty else ["--new-session"]),
         "--cap-drop", "ALL", "--clearenv"]
    for k, v in spec.env:
        a += ["--setenv", k, v]
    for path, target in layout.system:
        a += ["--symlink", target, path] if target else ["--ro-bind", path, path]
    a += ["--ro-bind", "/etc", "/etc"]
    for f in layout.etc_secret_files:
        a += ["--ro-bind", "/dev/null", f]
    for d in layout.etc_secret_dirs:
        a += ["--tmpfs", d, "--remount-ro", d]
    for src, dst in spec.etc_files:
        a += ["--ro-bind", src, dst]
    if len(fds) != len(spec.data_files):
        raise SandboxError("one open descriptor per data file is needed")
    for fd, (_, dst) in zip(fds, spec.data_files):
        a += ["--perms", "0444", "--ro-bind-data", str(fd), dst]
    a += ["--proc", "/proc", "--dev", "/dev",
          "--perms", "1777", "--tmpfs", "/tmp", "--perms", "1777", "--tmpfs", "/var/tmp",
          "--remount-ro", "/", "--chdir", spec.cwd]
    return a


def sandboxed_argv(spec: SandboxSpec, layout: HostLayout, bwrap: str = "bwrap",
                   fds: tuple[int, ...] = ()) -> list[str]:
    """The whole command line: enter the netns, drop to the host uid, then bwrap."""
    if not spec.argv:
        raise SandboxError("empty command")
    return ["nsenter", f"--net={spec.netns_path}", "--",
            "setpriv", f"--reuid={spec.host_uid}", f"--regid={spec.host_gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            bwrap, *bwrap_args(spec, layout, fds), "--", *spec.argv]


@dataclass(frozen=True)
class ExecResult:
    """What a one-shot command in a pod returned."""

    code: int
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
