"""Pod commands run contained: a real pod namespace, a hostile command, checks from both sides."""
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from emulator.naming import RunNames, new_run_id
from emulator.kernel import netns as kernel_netns
from emulator.node.podexec import container_sandbox, exec_in_pod, start_in_pod
from emulator.node.podnet import PodNetwork
from emulator.node.probes import check_probe
from emulator.node.runtime import PodProcesses
from emulator.node.sandbox import NOBODY, Identity
from emulator.runner import cleanup
from tests.netns.fabric_helpers import sh
from tests.waiting import poll

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None,
                                 reason="needs root and bubblewrap")]
REPO = Path(__file__).resolve().parents[2]
POD_CIDR = "10.89.3.0/24"
NODE_IP = "10.89.3.1"   # the pod range's gateway on cbr0: the node's address the pods see

# Each attempt prints "<letter>:escaped" if it worked; the pod's own /tmp write is read back.
ATTACK = r"""
m={marker}
echo owned > /tmp/$m.tmp && [ "$(cat /tmp/$m.tmp)" = owned ] && echo own-tmp:ok
echo x > /root/$m.root 2>/dev/null && echo b:escaped
echo x > /proc/1/root/root/$m.root 2>/dev/null && echo b:escaped
cat /root/.ray/auth_token 2>/dev/null && echo c:escaped
cat /root/$m.secret 2>/dev/null && echo c:escaped
cat /proc/1/root/root/$m.secret 2>/dev/null && echo c:escaped
nsenter --net=/proc/1/ns/net true 2>/dev/null && echo d:escaped
nsenter --net=/run/netns/{node_ns} true 2>/dev/null && echo d:escaped
echo "netns:$(stat -L -c %i /proc/1/ns/net) $(stat -L -c %i /proc/self/ns/net)"
echo "procs:$(ls -d /proc/[0-9]* | wc -l)"
cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' | grep -q -e "$m-deco[y]" && echo e:escaped
ls {run_dir} >/dev/null 2>&1 && echo f:escaped
ls /run/kubemu /run/netns {repo} /home /var/run >/dev/null 2>&1 && echo f:escaped
cat /etc/shadow >/dev/null 2>&1 && echo shadow:escaped
echo "id:$(id -u):$(grep CapEff /proc/self/status | cut -f2)"
echo "host:$(hostname) env:$(env | grep -c -e PYTHONPATH -e RAY_ -e PYTEST)"
echo "resolv:$(grep nameserver /etc/resolv.conf)"
echo done
"""


def wait_for(pred, what: str, timeout: float = 30.0):
    """Poll `pred` until it returns a true value (tests/waiting.py)."""
    return poll(pred, what, timeout, interval=0.1)


@pytest.fixture
def pod(tmp_path):
    """(names, node_ns, pod_ns, pod_ip, podnet): a node namespace with cbr0 and one pod."""
    run_id = new_run_id()
    names = RunNames(run_id)
    node_ns, pod_ns = f"{names.prefix}-node", names.pod_netns("default", "web")
    kernel_netns.add(node_ns)
    podnet = PodNetwork(node_ns, POD_CIDR, "native")
    try:
        sh("ip", "-n", node_ns, "link", "set", "lo", "up")
        podnet.setup_node()
        ip = podnet.add_pod(pod_ns, "default", "web", {"search": ["default.svc.cluster.local"],
                                                        "nameserver": "10.96.0.10"})
        yield names, node_ns, pod_ns, ip, podnet
    finally:
        podnet.remove_pod(pod_ns, None)
        for pid in kernel_netns.pids(node_ns):
            os.kill(pid, 9)
        kernel_netns.delete(node_ns)


@pytest.fixture
def root_secret():
    """A world-readable secret in root's home (only the sandbox's mounts keep it from pods),
    and a host process carrying the marker in its command line (a pod must not see it)."""
    marker = f"kubemu-sbx-{new_run_id()}"
    secret = Path("/root") / f"{marker}.secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", f"{marker}-decoy"])
    try:
        yield marker
    finally:
        decoy.kill()
        decoy.wait()
        for p in (secret, Path("/root") / f"{marker}.root", Path("/tmp") / f"{marker}.tmp"):
            p.unlink(missing_ok=True)


def http_code(netns, url):
    r = subprocess.run(["ip", "netns", "exec", netns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        "--max-time", "2", url], capture_output=True, text=True)
    return r.stdout.strip() == "200"


def check_attack_output(out, marker, pod_ns, uid):
    lines = out.splitlines()
    assert "done" in lines, out
    assert "own-tmp:ok" in lines, out                  # the pod's /tmp works, for the pod
    assert not [x for x in lines if "escaped" in x], out
    root_ns, own_ns = next(x for x in lines if x.startswith("netns:"))[6:].split()
    assert root_ns == own_ns == str(os.stat(f"/run/netns/{pod_ns}").st_ino)   # /proc/1 is the pod's
    assert int(next(x for x in lines if x.startswith("procs:"))[6:]) <= 8
    assert f"id:{uid}:0000000000000000" in lines, out
    assert "host:web env:0" in lines, out
    assert "resolv:nameserver 10.96.0.10" in lines, out
    # and from the host's side: nothing landed in its /tmp or /root
    assert not (Path("/tmp") / f"{marker}.tmp").exists()
    assert not (Path("/root") / f"{marker}.root").exists()


@pytest.mark.parametrize("uid", [NOBODY, 0])
def test_pod_command_is_contained_and_still_serves(pod, root_secret, tmp_path, uid):
    names, node_ns, pod_ns, ip, _ = pod
    attack = ATTACK.format(marker=root_secret, node_ns=node_ns, run_dir=tmp_path, repo=REPO)
    who = Identity(uid, uid)
    procs = PodProcesses()
    web = container_sandbox({"command": ["python3", "-m", "http.server", "80"], "workingDir": "/tmp"},
                            who, pod_ns, "web", names.run_id)
    hostile = container_sandbox({"command": ["sh", "-c", attack + "sleep 600"]}, who, pod_ns, "web", names.run_id)
    procs.procs.append(start_in_pod(web, str(tmp_path / "web.log")))
    procs.procs.append(start_in_pod(hostile, str(tmp_path / "hostile.log")))
    try:
        # port 80 as an unprivileged user, answered to a request from the node's namespace
        wait_for(lambda: http_code(node_ns, f"http://{ip}:80/"), "the pod's HTTP server")
        out = wait_for(lambda: "done" in (t := (tmp_path / "hostile.log").read_text()) and t, "the hostile pod")
        check_attack_output(out, root_secret, pod_ns, uid)

        # the same through the exec entry point (kubectl exec / exec probes), stdin included
        res = exec_in_pod(replace(hostile, argv=("sh",)), stdin=attack.encode(), timeout=30)
        assert res.code == 0, res.stderr
        check_attack_output(res.stdout.decode(), root_secret, pod_ns, uid)
        assert check_probe({"exec": {"command": ["python3", "-c",
                                                 "import socket; socket.create_connection(('127.0.0.1', 80), 1)"]}},
                           ip, {}, 5.0, web)
        assert not check_probe({"exec": {"command": ["cat", f"/root/{root_secret}.secret"]}}, ip, {}, 5.0, web)

        # `kubemu clean` still finds the contained processes of the run
        inside = kernel_netns.pids(pod_ns)
        found = set(cleanup.run_processes(names.run_id))
        assert inside and set(inside) <= found
        assert any(cleanup._proc_info(p)[1] == names.run_id for p in inside)
    finally:
        procs.stop()
    # stopping the bwrap pid stops everything inside (--die-with-parent: a SIGKILL on its way)
    wait_for(lambda: kernel_netns.pids(pod_ns) == [], "the pod's processes to exit", 10)


def test_stop_sends_sigterm_to_the_contained_command(pod, tmp_path):
    names, _, pod_ns, _, _ = pod
    script = "trap 'echo got-term; exit 0' TERM; echo up; while :; do sleep 0.1; done"
    procs = PodProcesses()
    procs.procs.append(start_in_pod(container_sandbox({"command": ["sh", "-c", script]}, Identity(), pod_ns,
                                                      "web", names.run_id), str(tmp_path / "c.log")))
    wait_for(lambda: "up" in (tmp_path / "c.log").read_text(), "the command to start")
    procs.stop(grace=10)
    assert (tmp_path / "c.log").read_text().split() == ["up", "got-term"]
    assert kernel_netns.pids(pod_ns) == []


def test_host_network_pod_serves_on_the_node_address(pod, tmp_path):
    names, node_ns, pod_ns, ip, podnet = pod
    podnet.allow_unprivileged_ports(node_ns)
    web = container_sandbox({"command": ["python3", "-m", "http.server", "81"]}, Identity(), node_ns,
                            "hostweb", names.run_id, host_network=True)
    procs = PodProcesses()
    procs.procs.append(start_in_pod(web, str(tmp_path / "web.log")))
    try:
        wait_for(lambda: http_code(pod_ns, f"http://{NODE_IP}:81/"), "the hostNetwork pod's server")
        res = exec_in_pod(replace(web, argv=("sh", "-c", "id -u; hostname; ls /run/netns 2>&1 | head -1")))
        assert res.stdout.decode().splitlines()[:2] == [str(NOBODY), "hostweb"]
        assert "No such file" in res.stdout.decode()
    finally:
        procs.stop()



def test_host_network_pod_reads_the_resolv_conf_of_its_dns_policy(pod):
    """ClusterFirstWithHostNet: the kubelet's resolv.conf is bound over /etc/resolv.conf."""
    from emulator.node.podnet import ETC_NETNS
    from emulator.node.resolvconf import resolv_conf
    names, node_ns, _, _, _ = pod
    etc = os.path.join(ETC_NETNS, names.pod_netns("default", "hostdns"))   # as the kubelet names it
    os.makedirs(etc)
    try:
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write(resolv_conf({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}, "default", "10.8.0.10"))
        sb = container_sandbox({"command": ["cat", "/etc/resolv.conf"]}, Identity(), node_ns, "hostdns",
                               names.run_id, host_network=True, etc_dir=etc)
        res = exec_in_pod(sb)
        assert res.code == 0 and "nameserver 10.8.0.10\n" in res.stdout.decode(), res
        assert "search default.svc.cluster.local svc.cluster.local cluster.local" in res.stdout.decode()
    finally:
        shutil.rmtree(etc, ignore_errors=True)
