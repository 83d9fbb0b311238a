"""Which generator runs a flow of each kind, and running it in a namespace (the node agent's side).

    http   -> emulator.traffic.http_load    udp    -> emulator.traffic.udp_probe
    tcp    -> emulator.traffic.tcp_connect  ping   -> emulator.traffic.ping_probe (iputils ping)
    iperf3 -> emulator.traffic.iperf3_client (the iperf3 client, -J)
    dns    -> emulator.traffic.dns_query    (dig)

Every generator writes one JSON line per request, probe or test to its output file.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from emulator.traffic.launch import _pacing, http_load_argv, in_netns, udp_probe_argv

KINDS = ("http", "tcp", "udp", "ping", "iperf3", "dns")


def tcp_connect_argv(host: str, port: int, out: str, send: str | None = None, python: str = sys.executable,
                     **pacing: Any) -> list[str]:
    """argv of `python -m emulator.traffic.tcp_connect ...`."""
    argv = [python, "-m", "emulator.traffic.tcp_connect", f"--host={host}", "--port", str(port), "--out", out,
            "--timeout", str(pacing.pop("timeout", 2.0))]
    if send is not None:
        argv.append(f"--send={send}")   # `=`: a value starting with '-' is not an option
    return argv + _pacing(**pacing)


def ping_argv(host: str, out: str, count: int, interval: float, timeout: float,
              python: str = sys.executable) -> list[str]:
    """argv of `python -m emulator.traffic.ping_probe ...`."""
    return [python, "-m", "emulator.traffic.ping_probe", f"--host={host}", "--count", str(count),
            "--interval", f"{interval:g}", "--timeout", f"{timeout:g}", "--out", out]


def iperf3_argv(host: str, port: int, out: str, duration: float, parallel: int = 1, reverse: bool = False,
                timeout: float = 5.0, python: str = sys.executable) -> list[str]:
    """argv of `python -m emulator.traffic.iperf3_client ...`."""
    argv = [python, "-m", "emulator.traffic.iperf3_client", f"--host={host}", "--port", str(port),
            "--duration", f"{duration:g}", "--parallel", str(parallel), "--timeout", f"{timeout:g}", "--out", out]
    return argv + (["--reverse"] if reverse else [])


def dns_query_argv(name: str, out: str, type: str = "A", expect: list[str] | None = None,
                   within: float = 10.0, count: int = 1, interval: float = 0.2, timeout: float = 2.0,
                   search: bool = True, python: str = sys.executable) -> list[str]:
    """argv of `python -m emulator.traffic.dns_query ...`."""
    argv = [python, "-m", "emulator.traffic.dns_query", f"--name={name}", "--type", type,
            "--within", f"{within:g}", "--count", str(count), "--interval", f"{interval:g}",
            "--timeout", f"{timeout:g}", "--out", out]
    argv += [f"--expect={e}" for e in expect or []]
    return argv + ([] if search else ["--no-search"])


def generator_argv(kind: str, params: dict[str, Any], out: str, python: str = sys.executable) -> list[str]:
    """The generator's command line for a flow of `kind` with `params` (see each builder)."""
    builders = {"http": http_load_argv, "udp": udp_probe_argv, "tcp": tcp_connect_argv,
                "ping": ping_argv, "iperf3": iperf3_argv, "dns": dns_query_argv}
    if kind not in builders:
        raise ValueError(f"unknown traffic kind {kind!r} (known: {', '.join(KINDS)})")
    return builders[kind](out=out, python=python, **params)


def run_generator(netns: str, kind: str, params: dict[str, Any], out: str) -> list[dict]:
    """Run the generator in `netns` until it ends; its records (one dict per line of `out`)."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    proc = subprocess.run(in_netns(netns, generator_argv(kind, params, out)), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} traffic generator failed: {proc.stderr.strip()[-500:]}")
    with open(out, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
