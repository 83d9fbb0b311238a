"""Node hosts: one process (a Ray actor) runs many emulated hosts, as threads of one interpreter.

An emulated node's cost should be its kernel objects, not a Python interpreter: a
`NodeHost` holds the `NodeAgent` objects of a group of hosts (nodes, client hosts, the
prober) placed on one machine and routes every call to the agent it names. Its calls
run on a pool of threads sized for its hosts, so a long call of one host (a traffic
flow, an exec, a chaos action that waits) never blocks another host's calls. Faults act
on the agent object (emulator/node/chaos.py), so a crashed node leaves the other
nodes of its process untouched; a machine failure crashes every node placed there.

The driver groups the hosts and keeps a handle per host (emulator/runner/node_hosts.py).
Each hosted node keeps its own log file (emulator/node/node_logs.py). With shared
informers (the default), the nodes' kube-proxies and policy enforcers share one watch per
kind set (emulator/api/shared_informer.py) instead of one each, and their leases are
renewed together, in one API call per interval (emulator/node/lease.py).
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from emulator.api.shared_informer import SharedInformers
from emulator.node import node_logs
from emulator.node.agent import NodeAgent
from emulator.node.lease import LeaseGroups
from emulator.node.stall_watch import StallWatch
from emulator.records.hosts import HostSpec

# Nodes of one process boot a few at a time (`start`: kubelet, kube-proxy, its health servers'
# event loop...): 64 at once on a loaded machine left fresh event loops unscheduled for over
# 10 s (1000 nodes: kube-proxy's health server start timed out).
BOOT_CALLS = ("start",)
BOOTS_AT_ONCE = 8


class NodeHost:
    """The emulated hosts of one group: builds their agents and runs every call on the one it names."""

    def __init__(self, run_id: str, specs: list[HostSpec], run_dir: str, label: str,
                 shared_informers: bool = False) -> None:
        self.label = label
        self.logs = node_logs.setup_node_host_logging(run_dir, f"nodehost-{label}")
        # every thread's stack when the process stops running Python (all its nodes stop with it)
        self.watch = StallWatch(os.path.join(run_dir, "logs", f"nodehost-{label}-stalls.txt")).start()
        # one watch per kind set for all the nodes here (kube-proxy's, the policy enforcer's)
        self.informers = SharedInformers() if shared_informers else None
        self.leases = LeaseGroups()   # every node's lease renewed in one call per interval
        self.agents: dict[str, NodeAgent] = {}
        self._starting = threading.BoundedSemaphore(BOOTS_AT_ONCE)
        for spec in specs:
            self.logs.add_node(spec.name)
            with node_logs.tagged(spec.name):
                self.agents[spec.name] = NodeAgent(run_id, spec, run_dir)
                self.agents[spec.name].informers = self.informers
                self.agents[spec.name].leases = self.leases

    def call(self, name: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run `method` of host `name`'s agent, its log records going to that host's file."""
        agent = self.agents.get(name)
        if agent is None:
            raise KeyError(f"host {name} is not in node host {self.label}")
        if method.startswith("_"):
            raise AttributeError(f"{method} is not a node agent call")
        with node_logs.tagged(name), (self._starting if method in BOOT_CALLS else contextlib.nullcontext()):
            return getattr(agent, method)(*args, **kwargs)

    def proxy_synced_rvs(self) -> dict[str, int]:
        """Each hosted host's kube-proxy sync mark (`NodeAgent.proxy_synced_rv`; 0 without one), in one call."""
        return {name: agent.proxy_synced_rv() for name, agent in self.agents.items()}

    def late_probes(self) -> dict[str, tuple[int, int]]:
        """Hosted nodes whose readiness probes were answered late from load: node -> (answers, passed)."""
        return {name: late for name, agent in self.agents.items() if (late := agent.late_probes())[0]}

    def hosts(self) -> list[str]:
        """The hosts this process runs."""
        return list(self.agents)

    def pid(self) -> int:
        """This process's id (memory accounting, tests)."""
        return os.getpid()
