"""The `kubemu` command line: run, check, clean, iptables."""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emulator.errors import KubemuError

if TYPE_CHECKING:
    from emulator.records.results import Results


def _silence() -> None:
    """The terminal or reader is gone (a dropped SSH session): output goes nowhere from now on."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)


class _Console(Console):
    """rich's Console, which on a broken pipe goes on silently instead of exiting (mid-teardown)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _silence()


# Not a terminal (a CI log, a pipe): wide enough that tables and URLs are not cut.
_WIDTH = None if sys.stdout.isatty() else 160
console = _Console(highlight=False, width=_WIDTH)
err_console = _Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def _fail(e: KubemuError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
    sys.exit(e.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what every component does.")
def main(verbose: bool) -> None:
    """kubemu: emulate a GKE cluster's networking with real kernel parts."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


@main.command()
@click.argument("scenario", type=click.Path())
@click.option("--runs-dir", default="runs", show_default=True, help="Where run directories are created.")
@click.option("--address", envvar="RAY_ADDRESS", default=None, help="Ray cluster to join (default: a local one).")
@click.option("--iptables", "iptables_backend", type=click.Choice(["auto", "legacy", "nft"]), default="auto",
              show_default=True, help="iptables backend inside nodes (auto: the faster one available).")
@click.option("--machines", type=click.IntRange(1, 16), default=None,
              help="Spread the hosts over N machines (simulated on this host unless --address); "
                   "overrides the scenario's machines.count.")
@click.option("--placement", type=click.Choice(["spread", "pack", "zone"]), default=None,
              help="Which machine each host runs on (default: the scenario's, else spread).")
def run(scenario: str, runs_dir: str, address: str | None, iptables_backend: str,
        machines: int | None, placement: str | None) -> None:
    """Build the cluster of SCENARIO, run its steps, report, and tear everything down."""
    from emulator.config import load_scenario
    from emulator.naming import new_run_id
    from emulator.runner import signals
    from emulator.runner.run import run_scenario
    try:
        sc = load_scenario(scenario)
    except KubemuError as e:
        _fail(e)
    t0 = time.time()
    run_id = new_run_id()

    def progress(msg: str) -> None:
        _print(console, f"[dim]{time.time() - t0:6.1f}s[/] {msg}")
    console.print(f"[bold]kubemu[/] running scenario [bold]{sc.name}[/] as run kubemu{run_id} "
                  f"({len(sc.topology.nodes())} nodes, timing {sc.timing})")
    try:
        spread = (machines or sc.machines.count, placement or sc.machines.placement)
        results = run_scenario(sc, runs_dir, progress, address, iptables_backend, run_id, spread)
    except KeyboardInterrupt as e:   # Ctrl-C, SIGTERM, SIGHUP (emulator/runner/signals.py)
        why = f" by {e}" if str(e).startswith("SIG") else ""
        _print(err_console, f"[yellow]interrupted{why}: cluster torn down[/]")
        sys.exit(signals.exit_code(e))
    except KubemuError as e:
        _fail(e)
    print_results(results)
    sys.exit(0 if results.ok else 1)


def _print(where: Console, text: str) -> None:
    """Print, and once the terminal is gone (EIO of a hung-up tty) go on silently."""
    try:
        where.print(text)
    except OSError:
        _silence()


def print_results(results: Results) -> None:
    """The summary table, the assertions and where the results are."""
    print_flows(results.flows)
    for step in results.steps:
        if step.step not in ("assert", "sweep"):   # a sweep's checks bound its slope
            continue
        s = step.fields
        for c in s.get("checks") or []:
            mark = "[green]PASS[/]" if c["ok"] else "[red]FAIL[/]"
            actual = _shown(c["actual"])
            expected = c["expected"] if isinstance(c["expected"], str) and "flow" in s else "= " + _shown(c["expected"])
            console.print(f"{mark} {s.get('flow') or s.get('object')}: {c['metric']} {escape(expected)} "
                          f"(actual {escape(actual)})")
    tl = results.timeline or {}
    if "first_ready" in tl:
        console.print(f"cluster ready in {tl.get('nodes', 0):.1f}s, workloads ready at {tl['first_ready']:.1f}s")
    verdict = "[bold green]scenario passed[/]" if results.ok else "[bold red]scenario FAILED[/]"
    console.print(f"{verdict} in {results.seconds or 0:.1f}s; results: {results.run_dir}/results.json")


def print_flows(flows: dict) -> None:
    """The traffic table, requests per backend pod and failures of each flow."""
    if flows:
        t = Table(title="traffic", expand=False)
        for col in ("flow", "kind", "requests", "ok", "pods", "p50 ms", "p90 ms", "p99 ms", "req/s", "Mbit/s"):
            t.add_column(col, justify="left" if col in ("flow", "kind") else "right", no_wrap=True)
        for name, f in flows.items():
            lat = f.get("total_ms") or {}
            bps = f.get("bits_per_second")
            t.add_row(name, f.get("kind", "http"), str(f["count"]),
                      "-" if f.get("success_ratio") is None else f"{100 * f['success_ratio']:.1f}%",
                      str(f["distinct_backends"]), _ms(lat.get("p50")), _ms(lat.get("p90")), _ms(lat.get("p99")),
                      f"{f.get('throughput_rps') or 0:.0f}", "-" if bps is None else f"{bps / 1e6:.1f}")
        console.print(t)
        for name, f in flows.items():
            pods = f.get("per_pod") or {}
            if pods:
                share = ", ".join(f"{p} {n}" for p, n in sorted(pods.items()))
                console.print(f"[bold]{name}[/] requests per backend pod: {share}")
            errs = {k: v for k, v in (f.get("outcomes") or {}).items() if k != "ok" and v}
            if errs:
                bad = {c: n for c, n in (f.get("statuses") or {}).items() if not c.startswith("2")}
                codes = f" (HTTP {', '.join(f'{c} x{n}' for c, n in sorted(bad.items()))})" if bad else ""
                console.print(f"[bold]{name}[/] failures: " + ", ".join(f"{k} {v}" for k, v in errs.items()) + codes)


def _shown(v) -> str:
    """An assertion's value: a number to 4 digits, a list joined, anything else as text."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return str(v)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}"


@main.command()
@click.argument("file", type=click.Path())
def check(file: str) -> None:
    """Validate a scenario or topology file without touching the kernel."""
    from emulator.config import check as check_file
    try:
        console.print(check_file(file), soft_wrap=True, markup=False)
    except KubemuError as e:
        _fail(e)


@main.command()
@click.argument("run_ids", nargs=-1)
@click.option("--force", is_flag=True, help="With RUN_IDs: also a live run (its driver is stopped first).")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def clean(run_ids: tuple[str, ...], force: bool, dry_run: bool) -> None:
    """Remove what runs left behind: RUN_ID... exactly (e.g. q3zx), else every run whose driver is gone.

    A run whose driver is alive is never touched without --force."""
    from emulator.runner.cleanup import clean as do_clean
    try:
        reports = do_clean(list(run_ids) or None, force, dry_run)
    except KubemuError as e:
        _fail(e)
    if not reports:
        console.print("nothing to clean")
    refused = False
    for rep in reports:
        console.print(f"kubemu{rep.run_id}: {_clean_line(rep)}", soft_wrap=True, markup=False)
        refused |= rep.action == "skipped"
    sys.exit(1 if refused and run_ids else 0)


def _clean_line(rep) -> str:
    """One line per run: what is there, and what was done with it."""
    found = "; ".join(f"{len(v)} {k} ({_few(v)})" for k, v in rep.found.items() if v) or "nothing left"
    if rep.action == "skipped":
        return (f"its driver (pid {rep.driver}) is running: not touched (stop it, or "
                f"`kubemu clean {rep.run_id} --force`); has {found}")
    if rep.action == "would remove":
        return f"would remove {found}" + (f" after stopping its driver (pid {rep.driver})" if rep.driver else "")
    stopped = f"stopped its driver (pid {rep.driver}), " if rep.driver else ""
    return stopped + (f"removed {found}" if any(rep.found.values()) else "nothing left to remove")


def _few(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f", ... {len(items) - n} more" if len(items) > n else "")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def report(run_dir: str) -> None:
    """Rebuild report.md and the PNG plots of RUN_DIR from its stored records."""
    from emulator.report.render import write_report
    try:
        paths = write_report(run_dir)
    except KubemuError as e:
        _fail(e)
    for path in paths.plots.values():
        console.print(f"plot: {path}", soft_wrap=True)
    console.print(f"report: {paths.markdown}", soft_wrap=True)


@main.command("compare")
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
def compare_cmd(run_a: str, run_b: str) -> None:
    """Put the flows of two run directories side by side (matched by name), with B against A."""
    from emulator.report.compare_runs import HEADER, compare_runs, table_rows
    from emulator.report.render import load_run
    from emulator.errors import ConfigError
    try:
        a, b = load_run(run_a), load_run(run_b)
    except KubemuError as e:   # a directory that is not a run: bad input (exit 2)
        _fail(ConfigError(str(e)))
    result = compare_runs(a.records, b.records)
    t = Table(title=f"A = {run_a}\nB = {run_b}", expand=False)
    for col in HEADER:
        t.add_column(col, justify="left" if col == "flow" else "right", no_wrap=col == "flow")
    for row in table_rows(result):
        t.add_row(*row)
    console.print(t)
    for side, names in (("A", result["only_a"]), ("B", result["only_b"])):
        if names:
            console.print(f"only in {side}: {', '.join(names)}")


@main.command()
@click.argument("node")
@click.option("--table", "-t", default=None, help="Only this table (filter, nat, ...).")
@click.option("--run", "run_id", default=None, help="The run's id (needed when several runs are up).")
def iptables(node: str, table: str | None, run_id: str | None) -> None:
    """Print NODE's iptables rules (as iptables-save does on a GKE node) from a running run."""
    from emulator.kernel import netns
    from emulator.kernel.iptables import IptablesRunner, backend_in_use
    from emulator.naming import RunNames, run_id_of
    runs = sorted({rid for n in netns.names() if (rid := run_id_of(n)) and (run_id in (None, rid))
                   and n == RunNames(rid).node_netns(node)})
    if not runs:
        _fail(KubemuError(f"no running node called {node!r} (is a run in progress?)"))
    if len(runs) > 1:
        _fail(KubemuError(f"node {node!r} exists in several runs ({', '.join(runs)}): choose one with --run"))
    ns = RunNames(runs[0]).node_netns(node)
    try:
        sys.stdout.write(IptablesRunner.in_netns(ns, backend_in_use(ns)).save((table,) if table else ()))
    except KubemuError as e:
        _fail(e)


@main.command("iap-token")
@click.option("--member", required=True, help="The identity, e.g. user@example.com (or user:user@example.com).")
@click.option("--ttl", default=3600, show_default=True, help="Seconds the token stays valid.")
@click.option("--run", "run_id", default=None, help="The run's id (needed when several runs are up).")
def iap_token(member: str, ttl: int, run_id: str | None) -> None:
    """Print a token the running run's Identity-Aware Proxy accepts (send it as `Authorization: Bearer`)."""
    from emulator.cloud.iap import issue_token, run_key
    try:
        click.echo(issue_token(run_key(run_id), member, ttl))
    except KubemuError as e:
        _fail(e)


@main.command()
@click.option("--run", "run_id", default=None, help="The run's id (needed when several runs are up).")
@click.option("--pods", default="", help="NS/POD,NS/POD,... (default: every pod of --namespaces).")
@click.option("--namespaces", default="", help="Probe every pod of these namespaces: NS,NS,...")
@click.option("--ports", default="80/tcp", show_default=True, help="PORT/PROTO,... (tcp, udp, sctp).")
@click.option("--service", default="s-{namespace}-{pod}", show_default=True, help="Each target pod's Service.")
@click.option("--default", "default_", type=click.Choice(["allow", "deny"]), default="allow", show_default=True,
              help="Expected outcome of a cell no pattern names.")
@click.option("--deny", multiple=True, help="Expected blocked: 'FROM -> TO[:PORT/PROTO]' (globs); repeatable.")
@click.option("--allow", multiple=True, help="Expected allowed (wins over --deny); repeatable.")
@click.option("--timeout", default=1.0, show_default=True, help="Seconds per probe.")
def reach(run_id, pods, namespaces, ports, service, default_, deny, allow, timeout) -> None:
    """Probe every pod pair of a running run through its Services; print the reachability matrix."""
    from emulator.runner.reach import reach_matrix
    split = lambda text: [x.strip() for x in text.split(",") if x.strip()]  # noqa: E731
    if not pods and not namespaces:
        _fail(KubemuError("give --pods or --namespaces"))
    raw = {"ports": split(ports), "service": service, "timeout": timeout,
           "expect": {"default": default_, "deny": list(deny), "allow": list(allow)}}
    try:
        rec = reach_matrix(run_id, split(pods), split(namespaces), raw)
    except KubemuError as e:
        _fail(e)
    click.echo(rec["text"])
    sys.exit(0 if rec["ok"] else 1)


def _add_live_commands() -> None:
    """up, ls, down, exec, logs, traffic (emulator/live/commands.py)."""
    from emulator.live.commands import COMMANDS
    for cmd in COMMANDS:
        main.add_command(cmd)


_add_live_commands()

if __name__ == "__main__":
    main()
