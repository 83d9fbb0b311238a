"""The pod sandbox: securityContext -> identity, manifest env -> clean env, spec -> argv."""
import pytest

from emulator.node.sandbox import (NOBODY, HostLayout, SandboxError, SandboxSpec, bwrap_args,
                                   container_env, container_identity, sandboxed_argv)

pytestmark = pytest.mark.unit
LAYOUT = HostLayout(system=(("/usr", None), ("/bin", "usr/bin")),
                    etc_secret_files=("/etc/shadow",), etc_secret_dirs=("/etc/ssh",))


def spec(**kw):
    base = dict(netns_path="/run/netns/kubemuabc123-p-web", argv=("python3", "-m", "http.server", "80"),
                hostname="web-0", env=(("PATH", "/usr/bin"), ("FOO", "bar")),
                etc_files=(("/etc/netns/kubemuabc123-p-web/resolv.conf", "/etc/resolv.conf"),))
    return SandboxSpec(**{**base, **kw})


def pairs(argv, flag):
    """Every (a, b) following `flag` in argv."""
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_chain_enters_netns_then_drops_root_then_bwrap_then_the_command():
    argv = sandboxed_argv(spec(), LAYOUT, bwrap="/usr/bin/bwrap")
    assert argv[:3] == ["nsenter", "--net=/run/netns/kubemuabc123-p-web", "--"]
    setpriv = argv[3:argv.index("/usr/bin/bwrap")]
    assert setpriv == ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                       "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    assert argv[-5:] == ["--", "python3", "-m", "http.server", "80"]


def test_bwrap_unshares_everything_but_the_network_and_drops_all_caps():
    a = bwrap_args(spec(), LAYOUT)
    for flag in ("--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                 "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in a
    assert "--unshare-net" not in a and "--unshare-all" not in a
    assert a[a.index("--cap-drop") + 1] == "ALL" and "--cap-add" not in a
    assert a[a.index("--hostname") + 1] == "web-0"
    assert (a[a.index("--uid") + 1], a[a.index("--gid") + 1]) == (str(NOBODY), str(NOBODY))


def test_filesystem_is_system_dirs_read_only_with_private_tmp_proc_dev():
    a = bwrap_args(spec(), LAYOUT)
    ro = pairs(a, "--ro-bind")
    assert ("/usr", "/usr") in ro and ("/etc", "/etc") in ro
    assert ("usr/bin", "/bin") in pairs(a, "--symlink")
    assert ("/dev/null", "/etc/shadow") in ro       # secrets masked
    assert a[a.index("--tmpfs") + 1] == "/etc/ssh"
    # the pod's own resolv.conf, bound after /etc so it wins
    assert ro.index(("/etc/netns/kubemuabc123-p-web/resolv.conf", "/etc/resolv.conf")) > ro.index(("/etc", "/etc"))
    assert a[a.index("--proc") + 1] == "/proc" and a[a.index("--dev") + 1] == "/dev"
    tmp = a.index("/tmp")
    assert a[tmp - 1] == "--tmpfs" and a[tmp - 3:tmp - 1] == ["--perms", "1777"]
    sources = {src for src, _ in ro}
    for host_only in ("/", "/root", "/home", "/run", "/tmp", "/var", "/proc", "/sys"):
        assert host_only not in sources
    assert a[a.index("--remount-ro") + 1] == "/etc/ssh" and ["--remount-ro", "/"] == a[-4:-2]


def test_env_is_exactly_the_given_one():
    a = bwrap_args(spec(), LAYOUT)
    assert pairs(a, "--setenv") == [("PATH", "/usr/bin"), ("FOO", "bar")]
    assert a.index("--clearenv") < a.index("--setenv")


def test_root_in_the_pod_is_nobody_on_the_host():
    s = spec(uid=0, gid=0)
    argv = sandboxed_argv(s, LAYOUT)
    assert f"--reuid={NOBODY}" in argv and f"--regid={NOBODY}" in argv
    assert (argv[argv.index("--uid") + 1], argv[argv.index("--gid") + 1]) == ("0", "0")
    s = spec(uid=1000, gid=3000)
    assert (s.host_uid, s.host_gid) == (1000, 3000)


def test_empty_command_is_refused():
    with pytest.raises(SandboxError):
        sandboxed_argv(spec(argv=()), LAYOUT)


@pytest.mark.parametrize("pod_sc, c_sc, want", [
    ({}, {}, (NOBODY, NOBODY)),
    ({"runAsUser": 1000}, {}, (1000, 1000)),
    ({"runAsUser": 1000, "runAsGroup": 2000}, {"runAsUser": 0}, (0, 2000)),
    ({"runAsNonRoot": True}, {"runAsUser": 1001}, (1001, 1001)),
    ({"runAsNonRoot": False}, {}, (NOBODY, NOBODY)),
])
def test_identity_from_security_context(pod_sc, c_sc, want):
    who = container_identity({"securityContext": pod_sc}, {"securityContext": c_sc})
    assert (who.uid, who.gid) == want


@pytest.mark.parametrize("sc", [{"runAsNonRoot": True, "runAsUser": 0}, {"runAsUser": -1},
                                {"runAsUser": "root"}, {"runAsGroup": True}])
def test_bad_security_context_is_an_error(sc):
    with pytest.raises(SandboxError, match="securityContext"):
        container_identity({}, {"securityContext": sc})


def test_container_env_starts_clean():
    env = dict(container_env({"env": [{"name": "A", "value": 1}, {"name": "PATH", "value": "/x"},
                                      {"name": "B", "valueFrom": {}}]}, "web-0", "abc123"))
    assert env == {"PATH": "/x", "HOME": "/tmp", "HOSTNAME": "web-0", "KUBEMU_RUN_ID": "abc123",
                   "A": "1", "B": ""}


def test_no_bwrap_is_an_error_not_a_fallback(monkeypatch, tmp_path):
    from emulator.node import podexec
    monkeypatch.setattr(podexec, "OUTER_PATH", str(tmp_path))
    with pytest.raises(SandboxError, match="bubblewrap"):
        podexec.exec_in_pod(spec())


def test_data_files_are_copied_in_from_open_descriptors_before_the_root_goes_read_only():
    s = spec(data_files=(("/run/kubemu/x/token", "/var/run/secrets/kubernetes.io/serviceaccount/token"),))
    a = bwrap_args(s, LAYOUT, fds=(7,))
    i = a.index("--ro-bind-data")
    assert a[i + 1:i + 3] == ["7", "/var/run/secrets/kubernetes.io/serviceaccount/token"]
    assert a[i - 2:i] == ["--perms", "0444"]
    assert i < a.index("--remount-ro", a.index("--proc"))
    assert "/run/kubemu/x/token" not in a                    # the host path never enters the pod
    with pytest.raises(SandboxError):
        bwrap_args(s, LAYOUT)                                # a data file without its descriptor


def test_tty_exec_keeps_its_controlling_terminal_others_get_a_new_session():
    assert "--new-session" not in bwrap_args(spec(tty=True), LAYOUT)
    assert "--new-session" in bwrap_args(spec(), LAYOUT)


def test_host_network_pod_binds_its_own_resolv_conf_only_when_given(tmp_path):
    """hostNetwork: no /etc/netns files, but the kubelet's etc_dir (its dnsPolicy's resolv.conf) when given."""
    from emulator.node.podexec import container_sandbox
    from emulator.node.sandbox import Identity
    (tmp_path / "resolv.conf").write_text("nameserver 10.8.0.10\n")
    c = {"command": ["sleep", "1"]}
    assert container_sandbox(c, Identity(), "node-ns", "p", None, host_network=True).etc_files == ()
    bound = container_sandbox(c, Identity(), "node-ns", "p", None, host_network=True, etc_dir=str(tmp_path))
    assert [src for src, _ in bound.etc_files] == [str(tmp_path / "resolv.conf")]
    assert bound.etc_files[0][1].endswith("resolv.conf")
