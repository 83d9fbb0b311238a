"""The Ingress part of one cloud controller pass, with its I/O injected.

`IngressSync` lists Ingresses and what they refer to, asks `IngressCore` for the plan,
gives the VPC state its extra routes (Ingress addresses -> the Google front end host)
and firewall rule, sends the proxy its config when it changed (`push_proxy(config,
files, addresses)`: the front end host's agent), then writes each Ingress's status
(`patch_status(ns, name, status)`). `applied` records, per Ingress, the resourceVersion
whose load balancer is live (proxy reloaded and VPC pushed), for readiness checks.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from emulator.cloud.ingress import IngressCore, IngressPlan
from emulator.cloud.ingress_model import ingress_key
from emulator.cloud.vpcstate import node_ips
from emulator.records.cloud import CloudHost

log = logging.getLogger(__name__)
KINDS = ("Ingress", "EndpointSlice", "BackendConfig", "SecurityPolicy", "Secret")


class IngressSync:
    """Plan under the controller's lock; apply and write status outside it."""

    def __init__(self, core: IngressCore, list_objects: Callable[[str], list[dict]],
                 push_proxy: Callable[[str, dict, list], Any], patch_status: Callable[[str, str, dict], Any],
                 gfe_host: str) -> None:
        self.core, self.list_objects = core, list_objects
        self.push_proxy, self.patch_status = push_proxy, patch_status
        self.gfe_host = gfe_host
        self.current = IngressPlan()
        self._versions: dict[str, str] = {}
        self._pushed: tuple | None = None
        self.applied: dict[str, str] = {}
        self.proxy_failures = 0

    def plan(self, nodes: list[dict], services: list[dict], taken: set[str]) -> IngressPlan:
        """Decide addresses, config and status for the current objects."""
        objs = {k: self.list_objects(k) for k in KINDS}
        objs["Service"] = services
        self.current = self.core.sync(objs, node_ips(nodes), taken)
        self._versions = {ingress_key(i): i["metadata"].get("resourceVersion", "") for i in objs["Ingress"]}
        return self.current

    def vpc_hosts(self, hosts: list[CloudHost]) -> list[CloudHost]:
        """The planned hosts with the Ingress addresses routed to the front end host."""
        routes = [f"{ip}/32" for ip in sorted(self.current.addresses)]
        return [h.model_copy(update={"routes": routes}) if h.name == self.gfe_host and routes else h for h in hosts]

    def vpc_rules(self) -> list[dict]:
        return list(self.current.firewall)

    def apply_proxy(self) -> bool:
        """Send the proxy its config when it changed; False when that failed."""
        p = self.current
        want = (p.config, tuple(sorted(p.files.items())), tuple(p.addresses))
        if want == self._pushed or not p.config and self._pushed is None:
            return True
        try:
            self.push_proxy(p.config, dict(p.files), list(p.addresses))
        except Exception as e:
            self.proxy_failures += 1
            log.warning("configuring the Ingress proxy failed: %s", e)
            return False
        self._pushed = want
        log.info("Ingress proxy configured: %s", ", ".join(f"{k} -> {v['servers']}" for k, v in p.backends.items()))
        return True

    def write_status(self, live: bool) -> bool:
        """Write Ingress statuses; when `live`, mark these versions as applied."""
        ok = True
        for ns, name, status in self.current.patches:
            try:
                self.patch_status(ns, name, status)
                log.info("Ingress %s/%s: %s", ns, name, status)
            except Exception as e:
                log.warning("writing the status of Ingress %s/%s failed: %s", ns, name, e)
                ok = False
        if live:
            self.applied = dict(self._versions)
        return ok

    def view(self) -> dict:
        """Per Ingress: errors and the applied resourceVersion; the backends' servers."""
        return {"ingresses": {k: {"errors": v, "applied_rv": self.applied.get(k),
                                  "backends": self.current.uses.get(k, [])}
                              for k, v in self.current.errors.items()},
                "backends": self.current.backends, "addresses": list(self.current.addresses)}
