"""What a user sees of a whole run: the quickstart passes, bad input is refused cleanly,
and normal exit, Ctrl-C, SIGHUP, SIGINT to a background run, and kill -9 followed by
`kubemu clean` leave nothing behind; `kubemu clean` never touches a live run unforced."""
from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from emulator.naming import RunNames
from emulator.runner import cleanup

pytestmark = pytest.mark.e2e
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUBEMU = [sys.executable, "-m", "emulator.cli"]
QUICKSTART = os.path.join(ROOT, "scenarios", "quickstart.yaml")


def root_namespace_state() -> dict[str, str]:
    """Routes, addresses and iptables of the root namespace (must never change)."""
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout
    def rules(text: str) -> str:   # without the dated comment lines and the packet counters
        return re.sub(r"\[\d+:\d+\]", "", re.sub(r"^#.*$", "", text, flags=re.M))
    return {"routes": out("ip", "route", "show", "table", "all"), "addrs": out("ip", "-o", "addr"),
            "legacy": rules(out("iptables-legacy-save")), "nft": rules(out("iptables-nft-save"))}


def leftovers(run_id: str) -> list[str]:
    """Everything of run `run_id` still on the machine."""
    prefix = f"kubemu{run_id}"
    found = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(prefix)] if os.path.isdir("/run/netns") else []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {ln.split(':')[1].strip()}" for ln in links.splitlines() if prefix in ln]
    found += [f"process {p}" for p in cleanup.run_processes(run_id)]
    found += [f"path {p}" for p in glob.glob(f"/etc/netns/{prefix}*") + glob.glob(f"/run/kubemu/{prefix}*")
              + glob.glob(f"/tmp/{prefix}-ray")]
    return found


def start_run(tmp_path, scenario: str = QUICKSTART, env: dict | None = None,
              **popen) -> tuple[subprocess.Popen, str]:
    """`kubemu run` in the background (`env`: more environment); returns the process and its
    run id (from its first line)."""
    proc = subprocess.Popen([*KUBEMU, "run", scenario, "--runs-dir", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200", **(env or {})}, **popen)
    first = proc.stdout.readline()
    m = re.search(r"run kubemu([a-z0-9]{4})", first)
    assert m, first
    return proc, m.group(1)


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 90) -> str:
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r}; got: {''.join(seen)}")


def test_quickstart_passes_and_leaves_nothing(tmp_path):
    before = root_namespace_state()
    proc, run_id = start_run(tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "scenario passed" in out
    results = json.load(open(glob.glob(str(tmp_path / "*" / "results.json"))[0]))
    flow = results["flows"]["client-to-web"]
    assert flow["count"] == 1000 and flow["success_ratio"] == 1.0 and flow["distinct_backends"] >= 5
    assert leftovers(run_id) == []
    assert root_namespace_state() == before


def test_ctrl_c_mid_run_tears_everything_down(tmp_path):
    proc, run_id = start_run(tmp_path)
    wait_for_line(proc, r"step 1/")
    assert any(n.startswith(f"kubemu{run_id}") for n in os.listdir("/run/netns"))  # it was up
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert leftovers(run_id) == []


def test_kill_9_then_kubemu_clean_removes_everything(tmp_path):
    proc, run_id = start_run(tmp_path)
    wait_for_line(proc, r"step 1/")
    proc.kill()
    proc.wait(10)
    assert leftovers(run_id) != []          # a crash leaves things behind...
    res = subprocess.run([*KUBEMU, "clean", run_id], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"kubemu{run_id}: removed" in res.stdout
    time.sleep(0.5)
    assert leftovers(run_id) == []          # ...and `kubemu clean` removes exactly them


def long_scenario(tmp_path) -> str:
    """The quickstart's cluster and workloads, then a 10-minute sleep (ended by the tests)."""
    path = tmp_path / "long.yaml"
    path.write_text(f"""name: long
topology: {ROOT}/topologies/regional-3.yaml
timing: fast
manifests: [{ROOT}/scenarios/manifests/quickstart.yaml]
steps:
  - wait: {{ready: deployment/web, timeout: 60s}}
  - wait: {{ready: pod/client, timeout: 60s}}
  - sleep: 600s
""")
    return str(path)


def test_sighup_to_the_whole_session_tears_down_even_with_the_terminal_gone(tmp_path):
    """A dropped SSH session: SIGHUP to the run's whole process group, and its output closed."""
    proc, run_id = start_run(tmp_path, long_scenario(tmp_path), start_new_session=True)
    wait_for_line(proc, r"step 3/")
    assert any(n.startswith(f"kubemu{run_id}-") for n in os.listdir("/run/netns"))
    os.killpg(proc.pid, signal.SIGHUP)     # what the shell does to its jobs when the terminal goes
    proc.stdout.close()                    # ... and nobody reads the output any more
    assert proc.wait(timeout=180) == 129
    assert leftovers(run_id) == []


def test_sigint_reaches_a_run_started_with_sigint_ignored(tmp_path):
    """`kubemu run ... &` in a script: bash starts it with SIGINT ignored."""
    proc, run_id = start_run(tmp_path, long_scenario(tmp_path), start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for_line(proc, r"step 3/")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out
    assert "interrupted by SIGINT: cluster torn down" in out
    assert leftovers(run_id) == []


def clean(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != cleanup.RUN_ENV}
    return subprocess.run([*KUBEMU, "clean", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**env, "COLUMNS": "300"})


def assert_intact(proc: subprocess.Popen, run_id: str, namespaces: list[str]) -> None:
    """The live run still runs: its driver, every namespace, and a Service answers a pod."""
    assert proc.poll() is None
    assert sorted(n for n in os.listdir("/run/netns") if n.startswith(f"kubemu{run_id}-")) == namespaces
    get = "import urllib.request; print(urllib.request.urlopen('http://web/hostname', timeout=5).read().decode())"
    res = subprocess.run(["ip", "netns", "exec", RunNames(run_id).pod_netns("default", "client"), sys.executable, "-c", get],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("web-"), res.stdout + res.stderr


def test_clean_never_touches_a_live_run_unless_forced(tmp_path):
    proc, run_id = start_run(tmp_path, long_scenario(tmp_path), start_new_session=True)
    wait_for_line(proc, r"step 3/")
    namespaces = sorted(n for n in os.listdir("/run/netns") if n.startswith(f"kubemu{run_id}-"))
    assert len(namespaces) >= 10
    for bad in ("", run_id[:2], run_id[:3], run_id + "x", "*"):   # empty, prefixes, wildcards: refused
        res = clean(bad)
        assert res.returncode == 2 and res.stdout == "", res.stdout
        assert [ln for ln in res.stderr.splitlines() if ln] == [f"error: {bad!r} is not a run id (4 characters "
                                                                "a-z0-9, e.g. q3zx from `running ... as run "
                                                                "kubemuq3zx`); `kubemu clean` alone lists every run"]
    assert_intact(proc, run_id, namespaces)
    res = clean("--dry-run")
    assert res.returncode == 0 and f"kubemu{run_id}: its driver (pid {proc.pid}) is running: not touched" in res.stdout
    res = clean()                                  # every dead run goes, the live one stays
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith(f"kubemu{run_id}:"))
    assert "is running: not touched" in line and f"{len(namespaces)} namespaces" in line
    assert_intact(proc, run_id, namespaces)
    res = clean(run_id)                            # named exactly, still refused while it runs
    assert res.returncode == 1 and f"kubemu{run_id}: its driver (pid {proc.pid}) is running" in res.stdout
    assert_intact(proc, run_id, namespaces)
    res = clean(run_id, "--force")                 # stops its driver (which tears down), sweeps the rest
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"kubemu{run_id}: stopped its driver (pid {proc.pid})")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "interrupted by SIGTERM: cluster torn down" in out, out
    assert leftovers(run_id) == []


@pytest.mark.parametrize("fixture", ["bad-yaml.yaml", "unknown-field.yaml", "scenario-bad-cidr.yaml",
                                     "inline-topology-overlap.yaml", "deployment-replicas-negative.yaml"])
def test_malformed_scenario_is_one_line_exit_2_and_builds_nothing(fixture):
    path = os.path.join("tests", "unit", "config", "fixtures", "bad", fixture)
    expected = open(os.path.join(ROOT, path)).readline().split("expect:", 1)[1].strip()
    res = subprocess.run([*KUBEMU, "run", path], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "300"}, timeout=60)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr
    file_line, field, message = expected.split(": ", 2)
    assert lines[0].startswith("error: tests/unit/config/fixtures/bad/")
    assert f"/{file_line}: " in lines[0]                     # file and line
    if field != "-":
        assert f": {field}: " in lines[0]                    # field path
    assert message.split(":")[0] in lines[0]
    assert res.stdout == ""          # not a single bring-up step was started


def test_service_behaviors_scenario_passes(tmp_path):
    res = subprocess.run([*KUBEMU, "run", os.path.join(ROOT, "scenarios", "service-behaviors.yaml"),
                          "--runs-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"}, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    results = json.load(open(glob.glob(str(tmp_path / "*" / "results.json"))[0]))
    asserts = [c for s in results["steps"] if s["step"] == "assert" for c in s["checks"]]
    assert len(asserts) >= 25 and all(c["ok"] for c in asserts)
