"""`kubemu reach`: a reachability matrix against a running run, from the kernel side alone.

Finds the run's pods by their namespaces (`/run/netns/kubemu<id>-pod-<ns>.<pod>`) and each
target's Service IP in the kube-dns hosts file the run keeps (`<run dir>/dns/*/services`);
probes from inside each pod like the `reachability` step (the Service port is the probed
port, as with the per-pod Services of the upstream layout) and compares with an expectation.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pydantic

from emulator.config.reachability import ReachabilitySpec
from emulator.errors import ConfigError, KubemuError
from emulator.kernel import netns
from emulator.naming import PREFIX, RunNames
from emulator.netpol.matrix import compare, probe_matrix
from emulator.paths import STATE_ROOT


def find_run(run_id: str | None) -> tuple[str, str]:
    """(run id, run directory) of the one running run, or of `run_id`."""
    found = sorted(glob.glob(os.path.join(STATE_ROOT, f"{PREFIX}{run_id or '*'}", "driver.json")))
    if not found:
        raise KubemuError(f"no running run{' ' + run_id if run_id else ''} (is `kubemu run` in progress?)")
    if len(found) > 1:
        ids = ", ".join(os.path.basename(os.path.dirname(f))[len(PREFIX):] for f in found)
        raise KubemuError(f"several runs are up ({ids}): choose one with --run")
    with open(found[0]) as f:
        return os.path.basename(os.path.dirname(found[0]))[len(PREFIX):], json.load(f)["run_dir"]


def namespace_pods(names: RunNames, namespaces: list[str]) -> list[str]:
    """`ns/pod` for every pod namespace of the run in these Kubernetes namespaces."""
    out = []
    for ns in namespaces:
        start = names.pod_netns(ns, "")
        out += sorted(f"{ns}/{n[len(start):]}" for n in netns.names() if n.startswith(start))
    return out


def service_ips(run_dir: str) -> dict[str, str]:
    """`name.namespace` -> ClusterIP, from the run's kube-dns hosts files."""
    out = {}
    for path in glob.glob(os.path.join(run_dir, "dns", "*", "services")):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].endswith(".svc.cluster.local"):
                    out[parts[1][:-len(".svc.cluster.local")]] = parts[0]
    return out


def _spec(raw: dict) -> ReachabilitySpec:
    try:
        return ReachabilitySpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        e = exc.errors()[0]
        loc = [str(x) for x in e["loc"]]
        option = loc[1] if loc[:1] == ["expect"] and len(loc) > 1 else (loc or ["pods"])[0]
        raise ConfigError(e["msg"].removeprefix("Value error, "), field=f"--{option}") from None


def reach_matrix(run_id: str | None, pods: list[str], namespaces: list[str], raw: dict) -> dict:
    """Probe the matrix of a running run; the record the `reachability` step would write."""
    _spec({**raw, "pods": pods or ["x/x"]})            # bad input fails before anything is probed
    run_id, run_dir = find_run(run_id)
    names = RunNames(run_id)
    spec = _spec({**raw, "pods": pods or namespace_pods(names, namespaces)})
    ips = service_ips(run_dir)

    def target(dst: str, port: str) -> tuple[str, int] | None:
        ns, svc = spec.service_of(dst)
        ip = ips.get(f"{svc}.{ns}")
        return (ip, int(port.split("/")[0])) if ip else None

    def run(reqs: dict[str, list[list]]) -> dict[str, list[str]]:
        procs = {}
        for src, targets in reqs.items():
            req = json.dumps({"timeout": spec.timeout, "targets": targets})
            procs[src] = netns.popen(names.pod_netns(*src.split("/", 1)),
                                     [sys.executable, "-m", "emulator.netpol.probe", req],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out = {}
        for src, p in procs.items():
            stdout, stderr = p.communicate(timeout=30 + spec.timeout)
            if p.returncode != 0:
                raise KubemuError(f"probe from {src} failed: {stderr.strip()[-300:]}")
            out[src] = json.loads(stdout)
        return out
    outcome = probe_matrix(spec.pods, spec.ports, target, run)
    return compare(spec.name or "reachability", spec.pods, spec.ports, outcome, spec.expect.allows)
