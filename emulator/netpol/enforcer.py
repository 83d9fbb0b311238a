"""The per-node NetworkPolicy enforcer: watch policies, pods and namespaces; apply in bulk.

Events only record the newest resourceVersion and ask for a sync; the sync (driven by
the kube-proxy worker's rate-limited, periodic loop) renders the node's rules from
the informer cache (`render_node`) and applies them with one `ipset restore` (new
sets), one `iptables-restore --noflush` (our chains, the FORWARD hook) and one
`ipset restore` (sets no rule uses any more). Unchanged rules skip the kernel.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from emulator.api.client import Informer
from emulator.errors import KernelError
from emulator.boundedsync import BoundedSyncRunner
from emulator.kernel import ipset
from emulator.kernel.iptables import IptablesRunner
from emulator.netpol.model import state_from
from emulator.netpol.render import (SET_PREFIX, hook_state, ipset_create_payload, ipset_destroy_payload,
                                    iptables_payload, render_node, saved_chains)

log = logging.getLogger(__name__)
KINDS = ["NetworkPolicy", "Pod", "Namespace"]


class PolicyEnforcer:
    """Renders and applies one node's policy rules (the `Proxier` interface the worker drives)."""

    def __init__(self, node_name: str, netns: str, runner: IptablesRunner, snapshot: Callable[[], tuple],
                 min_sync_period: float = 0.1, sync_period: float = 5.0) -> None:
        self.node_name, self.netns, self.runner, self.snapshot = node_name, netns, runner, snapshot
        self.min_sync_period, self.sync_period = min_sync_period, sync_period
        self.on_change: Callable[[], None] | None = None
        self.mark_fn: Callable[[], int] = lambda: 0
        self.synced_mark = 0
        self.syncs_applied = 0
        self._chains: dict[str, list[str]] | None = None
        self._sets: set[str] | None = None
        self._verify = True            # read the kernel's rules at the next sync
        self._lock = threading.Lock()

    def mark_queued(self) -> None:
        """Nothing to note (the worker calls this before periodic syncs)."""

    def check_canary(self) -> bool:
        """Before a periodic sync: have the next sync read the kernel (hook moved, chains flushed)."""
        self._verify = True
        return True

    def _ipset(self, payload: str) -> None:
        if payload:
            ipset.restore(self.netns, payload)

    def sync(self) -> bool:
        """Render and, when anything changed (or the hook moved), apply; True when applied."""
        with self._lock:
            mark = self.mark_fn()
            try:
                applied = self._sync(state_from(*self.snapshot()))
            except KernelError:
                self._chains, self._verify = None, True      # next sync re-applies everything
                raise
            self.synced_mark = max(self.synced_mark, mark)
            return applied

    def _sync(self, state) -> bool:
        rules = render_node(state, self.node_name)
        if rules.chains == self._chains and not self._verify:
            return False
        saved = self.runner.save(("filter",))
        self._verify = False
        hook = hook_state(saved)
        if self._sets is None:
            self._sets = {n for n in ipset.list_names(self.netns) if n.startswith(SET_PREFIX)}
        if not hook and rules.chains == self._chains and saved_chains(saved) == set(rules.chains):
            return False
        self._ipset(ipset_create_payload([s for n, s in sorted(rules.sets.items()) if n not in self._sets]))
        self._sets |= set(rules.sets)
        stale = sorted(saved_chains(saved) - set(rules.chains))
        self.runner.restore(iptables_payload(rules, stale, hook))
        self._chains = rules.chains
        unused = sorted(self._sets - set(rules.sets))
        try:
            self._ipset(ipset_destroy_payload(unused))
            self._sets -= set(unused)
        except KernelError as exc:          # retried at the next change
            log.warning("netpol %s: destroying sets failed: %s", self.node_name, exc)
        self.syncs_applied += 1
        return True


class NodePolicyAgent:
    """Informer + enforcer + worker thread for one node; `stop()` ends them."""

    def __init__(self, api, node_name: str, netns: str, backend: str, min_sync_period: float,
                 sync_period: float, lock_file: str | None = None, informers=None) -> None:
        runner = IptablesRunner.in_netns(netns, backend=backend, lock_file=lock_file)
        # the node host's shared watch (emulator/api/shared_informer.py) when it has one
        self.informer = (informers.subscribe(api, KINDS, self._on_event) if informers is not None
                         else Informer(api, KINDS, self._on_event))
        self.enforcer = PolicyEnforcer(node_name, netns, runner, self._snapshot, min_sync_period, sync_period)
        self.seen_rv = 0
        self.enforcer.mark_fn = lambda: self.seen_rv
        self.worker = BoundedSyncRunner(self.enforcer)   # same merging/periodic loop as kube-proxy

    def _snapshot(self) -> tuple[list[dict], list[dict], list[dict]]:
        return self.informer.list("Pod"), self.informer.list("Namespace"), self.informer.list("NetworkPolicy")

    def _on_event(self, _type: str, obj: dict) -> None:
        self.seen_rv = max(self.seen_rv, int(obj["metadata"].get("resourceVersion", 0)))
        self.worker.notify()

    def start(self, timeout: float = 30) -> None:
        """Start watching, wait for the first list, then sync."""
        self.informer.start()
        self.informer.synced.wait(timeout)
        self.seen_rv = max(self.seen_rv, self.informer.rv)
        self.worker.start()

    def stop(self) -> None:
        """Stop the watch and the sync thread (rules die with the node's namespace)."""
        self.informer.stop()
        self.worker.stop()

    @property
    def synced_mark(self) -> int:
        """The API resourceVersion of the newest policy/pod/namespace change in the rules."""
        return self.enforcer.synced_mark
