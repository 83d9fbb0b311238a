"""`kubemu up/ls/down/exec/logs/traffic`: live clusters from the command line.

`up` is the live driver (emulator.live.driver); the others run in another shell:
`down` and `traffic` talk to the driver over its control socket (it has the Cluster and
the step executors, so a flow runs exactly as the scenario `traffic` step does); `exec`
and `logs` need no driver: a pod is a namespace and a log file on this machine.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import click

from emulator.errors import ConfigError, KubemuError


def _cli():
    from emulator import cli
    return cli


def _fail(e: KubemuError) -> None:
    _cli()._fail(e)


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--no-steps", is_flag=True, help="Only build the cluster and apply the manifests.")
@click.option("--runs-dir", default="runs", show_default=True, help="Where run directories are created.")
@click.option("--iptables", "iptables_backend", type=click.Choice(["auto", "legacy", "nft"]), default="auto",
              show_default=True, help="iptables backend inside nodes.")
@click.option("--machines", type=click.IntRange(1, 16), default=None, help="Spread the hosts over N machines.")
@click.option("--placement", type=click.Choice(["spread", "pack", "zone"]), default=None,
              help="Which machine each host runs on.")
def up(scenario: str, no_steps: bool, runs_dir: str, iptables_backend: str, machines: int | None,
       placement: str | None) -> None:
    """Build SCENARIO's cluster, run its steps, and keep it up until `kubemu down` or Ctrl-C."""
    from emulator.config import load_scenario
    from emulator.live.driver import LiveRun
    from emulator.naming import new_run_id
    from emulator.runner.run import run_scenario
    console = _cli().console
    try:
        sc = load_scenario(scenario)
    except KubemuError as e:
        _fail(e)
    t0, run_id = time.time(), new_run_id()

    def progress(msg: str) -> None:
        console.print(f"[dim]{time.time() - t0:6.1f}s[/] {msg}", soft_wrap=True)

    def announce(msg: str) -> None:
        console.print(msg, soft_wrap=True, markup=False, highlight=False)
        sys.stdout.flush()
    console.print(f"[bold]kubemu[/] bringing up scenario [bold]{sc.name}[/] as live run kubemu{run_id} "
                  f"({len(sc.topology.nodes())} nodes)")
    try:
        spread = (machines or sc.machines.count, placement or sc.machines.placement)
        results = run_scenario(sc, runs_dir, progress, None, iptables_backend, run_id, spread,
                               live=LiveRun(sc, run_id, announce), steps=not no_steps)
    except KeyboardInterrupt:
        _cli().err_console.print("[yellow]stopped: cluster torn down[/]")
        sys.exit(0)
    except KubemuError as e:
        _fail(e)
    _cli().print_flows(results.flows)
    console.print(f"live run kubemu{run_id} torn down; results: {results.run_dir}/results.json", soft_wrap=True)


@click.command("ls")
def ls() -> None:
    """List the live runs on this machine."""
    from rich.table import Table
    from emulator.live.registry import age, live_runs
    runs = live_runs()
    if not runs:
        click.echo("no live runs")
        return
    t = Table(expand=False)
    for col in ("id", "scenario", "status", "age", "nodes", "kubeconfig", "pid"):
        t.add_column(col, no_wrap=True)
    for r in runs:
        t.add_row(r["run_id"], r["scenario"], r.get("status", "?"), age(r), str(r.get("nodes", "?")),
                  r.get("kubeconfig") or "-", str(r["pid"]))
    _cli().console.print(t)


@click.command()
@click.argument("run_id", required=False)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for the teardown.")
def down(run_id: str | None, timeout: float) -> None:
    """Tear down a live run (the only one when RUN_ID is not given)."""
    from emulator.live import registry
    from emulator.live.control import request
    try:
        rec = registry.resolve(run_id)
        try:
            request(rec["control"], "down", timeout=10)
        except KubemuError:   # still starting (no control socket yet): what Ctrl-C does
            os.kill(rec["pid"], signal.SIGTERM)
    except (KubemuError, ProcessLookupError) as e:
        _fail(KubemuError(str(e)))
    click.echo(f"kubemu{rec['run_id']}: tearing down (driver pid {rec['pid']})")
    t0 = time.time()
    while _alive(rec["pid"]):   # the driver exits after the teardown and its report
        if time.time() - t0 > timeout:
            _fail(KubemuError(f"kubemu{rec['run_id']} is still tearing down after {timeout:g}s"))
        time.sleep(0.2)
    click.echo(f"kubemu{rec['run_id']}: down")


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _pod_target(run_id: str | None, pod: str, namespace: str | None) -> tuple[dict, str, str]:
    """(live record, namespace, pod) from `POD` or `NS/POD` and -n."""
    from emulator.live import registry
    rec = registry.resolve(run_id)
    if "/" in pod and not pod.startswith("pod/"):
        namespace, pod = pod.split("/", 1)
    return rec, namespace or "default", pod.removeprefix("pod/")


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("--run", "run_id", default=None, help="The live run (needed when several are up).")
@click.option("-n", "--namespace", default=None, help="The pod's namespace (default: default).")
@click.option("-c", "--container", default=None, help="The container whose sandbox runs it (default: the first).")
@click.option("-i", "--stdin", "stdin_", is_flag=True, help="Pass stdin to the command (always on here).")
@click.option("-t", "--tty", is_flag=True, help="Accepted for kubectl compatibility: the terminal is passed through.")
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(run_id, namespace, container, stdin_, tty, pod, command) -> None:
    """Run COMMAND in POD, contained as its container is (stdin/stdout/stderr passed through; its exit code)."""
    from emulator.live.podexec import pod_exec_spec
    from emulator.naming import RunNames
    from emulator.node.podexec import popen_in_pod
    try:
        rec, ns, name = _pod_target(run_id, pod, namespace)
        spec = pod_exec_spec(RunNames(rec["run_id"]), ns, name, container, list(command))
    except KubemuError as e:
        _fail(e)
    # The terminal stays the caller's: the pod gets it as stdio in a session of its own.
    sys.exit(popen_in_pod(spec).wait())


@click.command()
@click.option("--run", "run_id", default=None, help="The live run (needed when several are up).")
@click.option("-n", "--namespace", default=None, help="The pod's namespace (default: default).")
@click.option("-c", "--container", default=None, help="The container (default: the pod's only or first one).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the pod goes or Ctrl-C.")
@click.option("--tail", default=-1, show_default=True, help="Only the last N lines (-1: all).")
@click.argument("pod")
def logs(run_id, namespace, container, follow, tail, pod) -> None:
    """Print POD's log: a command container's output, or the built-in netexec's request lines."""
    from emulator.live.podexec import LogsBackend

    async def copy(it) -> None:
        async for chunk in it:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    try:
        rec, ns, name = _pod_target(run_id, pod, namespace)
        it = LogsBackend(rec["run_id"], rec["run_dir"]).read(ns, name, container, follow,
                                                             None if tail < 0 else tail, None)
        asyncio.run(copy(it))
    except KubemuError as e:
        _fail(e)
    except KeyboardInterrupt:
        pass


KIND_FIELD = {"http": "url", "tcp": "target", "udp": "target", "ping": "host"}


def traffic_spec(source: str, target: str, kind: str, requests: int | None, concurrency: int | None,
                 rate: float | None, duration: float | None, timeout: float) -> dict:
    """The `traffic` step's spec (without its name) for these command-line options."""
    load: dict = {KIND_FIELD[kind]: target}
    if kind == "ping":
        load.update(count=requests or 10)
    else:
        load.update({k: v for k, v in (("requests", requests), ("concurrency", concurrency), ("rate", rate),
                                       ("duration", duration), ("timeout", timeout)) if v is not None})
    return {"from": source, kind: load}


@click.command()
@click.option("--run", "run_id", default=None, help="The live run (needed when several are up).")
@click.option("--from", "source", required=True, help="pod/NAME, pod/NS/NAME, node/NAME or host/NAME.")
@click.option("--kind", type=click.Choice(sorted(KIND_FIELD)), default="http", show_default=True)
@click.option("--requests", type=click.IntRange(1), default=None, help="Requests (ping: echoes); default 100.")
@click.option("--concurrency", type=click.IntRange(1), default=None, help="Requests in flight.")
@click.option("--rate", type=float, default=None, help="Requests started per second (instead of concurrency).")
@click.option("--duration", type=float, default=None, help="Seconds to keep starting requests.")
@click.option("--timeout", type=float, default=2.0, show_default=True, help="Seconds per request.")
@click.argument("target")
def traffic(run_id, source, kind, requests, concurrency, rate, duration, timeout, target) -> None:
    """Send traffic to TARGET (http: a URL; tcp/udp: HOST:PORT; ping: a host) in a live run."""
    from pydantic import ValidationError
    from emulator.config.scenario import TrafficStep
    from emulator.live import registry
    from emulator.live.control import request
    if requests is None and duration is None and kind != "ping":
        requests = 100
    spec = traffic_spec(source, target, kind, requests, concurrency, rate, duration, timeout)
    try:
        TrafficStep.model_validate({"traffic": {**spec, "name": "adhoc"}})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(map(str, err["loc"][1:])) or "spec"
        _fail(ConfigError(f"traffic: {where}: {err['msg'].removeprefix('Value error, ')}"))
    try:
        rec = registry.resolve(run_id)
        _cli().console.print(f"kubemu{rec['run_id']}: {kind} traffic from {source} to {target}", soft_wrap=True)
        out = request(rec["control"], "traffic", timeout=None, spec=spec)
    except KubemuError as e:
        _fail(e)
    flows = out["flows"]
    _cli().print_flows(flows)
    ok = all((f.get("success_ratio") or 0) >= 1.0 for f in flows.values() if f.get("success_ratio") is not None)
    sys.exit(0 if ok else 1)


COMMANDS = [up, ls, down, exec_, logs, traffic]
