"""Command lines that start a generator inside a namespace (used by the node agent).

`ip netns exec NS` also bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf,
so the generator resolves names through the namespace's DNS server.
"""
from __future__ import annotations

import sys

from emulator.kernel.netns import ns_exec_prefix


def http_load_argv(url: str, out: str, requests: int | None = None, duration: float | None = None,
                   concurrency: int | None = None, rate: float | None = None, timeout: float = 5.0,
                   keepalive: bool = False, resolve_once: bool = False,
                   python: str = sys.executable, headers: dict[str, str] | None = None,
                   cacert: str | None = None, urls: list[str] | None = None,
                   schedule: str | None = None) -> list[str]:
    """argv of `python -m emulator.traffic.http_load ...` (wrap with `in_netns`); `urls` and
    `schedule`: further URLs interleaved with `url` (schedule digit i: URL i, `url` being 0)."""
    argv = [python, "-m", "emulator.traffic.http_load", f"--url={url}", "--out", out, "--timeout", str(timeout)]
    for extra in urls or []:
        argv.append(f"--url={extra}")
    if schedule:
        argv += ["--schedule", schedule]
    argv += _pacing(requests, duration, concurrency, rate)
    if keepalive:
        argv.append("--keepalive")
    if resolve_once:
        argv.append("--resolve-once")
    for name, value in (headers or {}).items():
        argv.append(f"--header={name}: {value}")
    if cacert:
        argv += ["--cacert", cacert]
    return argv


def udp_probe_argv(host: str, port: int, out: str, message: str = "hostname", requests: int | None = None,
                   duration: float | None = None, concurrency: int | None = None, rate: float | None = None,
                   timeout: float = 2.0, reuse_socket: bool = False, python: str = sys.executable) -> list[str]:
    """argv of `python -m emulator.traffic.udp_probe ...` (wrap with `in_netns`)."""
    argv = [python, "-m", "emulator.traffic.udp_probe", f"--host={host}", "--port", str(port),
            f"--message={message}", "--out", out, "--timeout", str(timeout)]
    argv += _pacing(requests, duration, concurrency, rate)
    if reuse_socket:
        argv.append("--reuse-socket")
    return argv


def in_netns(ns: str, argv: list[str]) -> list[str]:
    """`ip netns exec NS argv...`."""
    return ns_exec_prefix(ns) + argv


def _pacing(requests: int | None, duration: float | None, concurrency: int | None,
            rate: float | None) -> list[str]:
    if requests is None and duration is None:
        raise ValueError("give requests, duration or both")
    if rate is not None and concurrency is not None:
        raise ValueError("rate and concurrency exclude each other")
    out: list[str] = []
    if requests is not None:
        out += ["--requests", str(requests)]
    if duration is not None:
        out += ["--duration", str(duration)]
    if concurrency is not None:
        out += ["--concurrency", str(concurrency)]
    if rate is not None:
        out += ["--rate", str(rate)]
    return out
