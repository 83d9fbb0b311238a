"""The driver's side of node hosts: which hosts share a process, and a handle per host.

A `NodeHost` actor (emulator/node/host_process.py) runs the agents of a group of hosts
of one machine. `plan_groups` cuts each machine's hosts into groups; a `HostedAgent` is
used as an actor handle of one host: `agent.method.remote(*a, **kw)` becomes
`host.call.remote(name, "method", *a, **kw)`, so code written for one actor per host
keeps working (it pickles, so other actors can hold it too: the cloud controller's prober).
"""
from __future__ import annotations

import math
import os
from typing import Any

from emulator.fabric.placement import by_machine

SHARED_INFORMERS_ENV = "KUBEMU_SHARED_INFORMERS"   # 0: each node keeps its own watches
HOSTS_PER_PROCESS = 64   # default group size: the GIL, not memory, sets how many fit
ALONE_FROM = 16          # a machine with this many other hosts gives the `alone` hosts a process each
# Concurrent calls of a node host: its hosts' long calls (flows, execs, chaos waits) must not
# starve the others. Ray starts every one of an actor's max_concurrency threads at once (a
# 1024-call actor has 1045 threads, idle or not), and a machine's pid_max (32768 here) counts
# threads: 1000 nodes in 16 processes of 1024 would hold half of it in idle threads.
CALLS_PER_HOST = 4
MIN_CALLS, MAX_CALLS = 64, 256


def plan_groups(placement: dict[str, int], machines: int, per_process: int = HOSTS_PER_PROCESS,
                alone: frozenset[str] = frozenset()) -> list[tuple[int, list[str]]]:
    """(machine, hosts) of each node host: every machine's hosts in placement order, cut into
    as few groups of at most `per_process` as fit, of even size. A host of `alone` (the
    health-check prober, whose probe timeouts run on its own thread) gets a process of its
    own on a machine with at least ALONE_FROM other hosts, away from their threads."""
    if per_process < 1:
        raise ValueError("at least one host per process")
    out: list[tuple[int, list[str]]] = []
    for machine, hosts in enumerate(by_machine(placement, machines)):
        apart = [h for h in hosts if h in alone] if len(hosts) - len(alone & set(hosts)) >= ALONE_FROM else []
        out.extend((machine, [h]) for h in apart)
        hosts = [h for h in hosts if h not in apart]
        if not hosts:
            continue
        size = math.ceil(len(hosts) / math.ceil(len(hosts) / per_process))
        out.extend((machine, hosts[i:i + size]) for i in range(0, len(hosts), size))
    return out


def shared_informers_wanted() -> bool:
    """Whether node hosts share one watch per kind set among their nodes (yes unless KUBEMU_SHARED_INFORMERS=0)."""
    return os.environ.get(SHARED_INFORMERS_ENV, "1") != "0"


def max_calls(hosts: int) -> int:
    """The call concurrency of a node host of `hosts` hosts (long calls must not starve the others)."""
    return max(MIN_CALLS, min(MAX_CALLS, CALLS_PER_HOST * hosts))


class _Call:
    """`handle.method`: `.remote(*a, **kw)` calls the method in the host's node host."""

    __slots__ = ("host", "name", "method")

    def __init__(self, host: Any, name: str, method: str) -> None:
        self.host, self.name, self.method = host, name, method

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self.host.call.remote(self.name, self.method, *args, **kwargs)


class HostedAgent:
    """The handle of one hosted agent, used as an actor handle: `agent.create.remote(...)`."""

    def __init__(self, host: Any, name: str) -> None:
        self.host, self.name = host, name

    def __getattr__(self, method: str) -> _Call:
        if method.startswith("_"):
            raise AttributeError(method)
        return _Call(self.host, self.name, method)

    def __repr__(self) -> str:
        return f"HostedAgent({self.name})"
