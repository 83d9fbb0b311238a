"""The client hosts' roles: a VM or internet host, and the prober host (Google's health checkers and front end).

A client host is a machine on the fabric that sends traffic and runs commands
(`EmulatedHost` as it is). The prober host also sends the load balancers' health-check
probes in batches (emulator/workloads/hc_prober.py, asked by the cloud controller) and
runs the Ingress front-end proxy, HAProxy in its namespace (emulator/workloads/gfe_proxy.py),
started on the first config it is given.
"""
from __future__ import annotations

import os
from typing import Sequence

from emulator.naming import RunNames
from emulator.node.emulated_host import EmulatedHost, stop_each
from emulator.paths import state_dir
from emulator.records.hosts import HostSpec
from emulator.workloads.gfe_proxy import HaproxyRunner
from emulator.workloads.hc_prober import probe_batch


class ClientHost(EmulatedHost):
    """A VPC VM or an internet host: sends traffic, runs commands, can be impaired, partitioned or crashed."""

    kind = "host"


class ProberHost(EmulatedHost):
    """The health-check prober and Google front end host: probe batches and the Ingress proxy."""

    kind = "prober"

    def __init__(self, names: RunNames, spec: HostSpec, run_dir: str, netns_name: str) -> None:
        super().__init__(names, spec, run_dir, netns_name)
        self.gfe: HaproxyRunner | None = None

    def http_probes(self, targets: Sequence[Sequence], timeout: float,
                    late_cap: float | None = None) -> list[tuple[bool, bool]]:
        """One batch of HTTP health checks from this host: (passed, answered late) per target
        (emulator/workloads/hc_prober.py)."""
        return probe_batch(self.netns, targets, timeout, late_cap)

    def proxy_apply(self, config: str, files: dict, addresses: list) -> dict:
        """Install and (re)load the Ingress proxy (HAProxy), starting it on the first config."""
        if self.gfe is None:
            self.gfe = HaproxyRunner(self.netns, os.path.join(state_dir(self.names.run_id), "gfe"),
                                     os.path.join(self.run_dir, "logs"), self.names.run_id)
        return self.gfe.apply(config, files, addresses)

    def proxy_servers(self) -> dict:
        """The Ingress proxy's health view: backend -> server -> UP/DOWN ({} before it runs)."""
        return self.gfe.server_states() if self.gfe is not None else {}

    def stop(self) -> None:
        """Stop HAProxy, then remove the host."""
        stop_each([self.gfe], self.name)
        super().stop()
