"""Thin adapter: applies one host's rendered link impairments in its namespace.

One `iptables-restore --noflush` (mangle table, our own chains only), one `tc -batch`
for eth0, and a supervised delay process (emulator.impair.delayd) when the kernel has
no sch_netem. Re-applying replaces everything; `clear()` removes it all.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from dataclasses import asdict

from emulator.errors import KernelError
from emulator.impair import render
from emulator.impair.render import ClassRule
from emulator.kernel import netns, tc
from emulator.kernel.iptables import IptablesRunner
from emulator.naming import PREFIX

log = logging.getLogger(__name__)
MECHANISM_ENV = "KUBEMU_IMPAIR_MECHANISM"   # force `nfqueue` (or `netem`) instead of probing


def choose_mechanism(ns: str) -> str:
    """`netem` where the kernel has it, else `nfqueue`; KUBEMU_IMPAIR_MECHANISM overrides."""
    forced = os.environ.get(MECHANISM_ENV, "")
    if forced in ("netem", "nfqueue"):
        return forced
    return "netem" if tc.netem_available(ns) else "nfqueue"


class HostImpairer:
    """The impairments of one host's egress: rules, qdiscs and the delay process."""

    def __init__(self, ns: str, prefix: str, host: str, iptables, log_dir: str) -> None:
        self.netns, self.prefix, self.host = ns, prefix, host
        self.iptables = iptables                 # an IptablesRunner for this namespace
        self.log_dir = log_dir
        self.mechanism: str | None = None
        self.hooked = False
        self.proc: subprocess.Popen | None = None
        self.queues: list[tuple[int, float, float]] = []
        self.restarts = 0
        self.lock = threading.Lock()

    @classmethod
    def for_host(cls, ns: str, prefix: str, host: str, backend: str, run_dir: str,
                 lock_file: str | None = None) -> "HostImpairer":
        """The impairer of a node agent's host (its own xtables lock file), logging under the run's logs/."""
        return cls(ns, prefix, host, IptablesRunner.in_netns(ns, backend=backend, lock_file=lock_file),
                   os.path.join(run_dir, "logs"))

    def apply_dicts(self, classes: list[dict]) -> dict:
        """`apply` with the classes as plain dicts (as they cross Ray)."""
        return self.apply([ClassRule(**{**c, "dests": tuple(c["dests"])}) for c in classes])

    def apply(self, classes: list[ClassRule]) -> dict:
        """Make the host's egress impaired exactly as `classes` say; returns what enforces each."""
        with self.lock:
            return self._apply(classes)

    def _apply(self, classes: list[ClassRule]) -> dict:
        if self.mechanism is None:
            self.mechanism = choose_mechanism(self.netns)
        if not classes and not self.hooked:
            return {"mechanism": self.mechanism, "classes": {}}
        queues = render.delay_queues(classes, self.mechanism)
        if queues != self.queues:
            # Rules first point away from the old queues, then the process changes.
            self.iptables.restore(render.mangle_restore(self.prefix, [], self.mechanism, not self.hooked))
            self.hooked = True
            self._stop_delayd()
            if queues:
                self._start_delayd(queues)
        tc.del_root_qdisc(self.netns, render.DEV)
        tc.batch(self.netns, render.tc_batch(classes, self.mechanism))
        self.iptables.restore(render.mangle_restore(self.prefix, classes, self.mechanism, not self.hooked))
        self.hooked = True
        return {"mechanism": self.mechanism,
                "classes": {c.name: {**asdict(c), "enforced_by": render.mechanism_of(c, self.mechanism)}
                            for c in classes}}

    def _start_delayd(self, queues: list[tuple[int, float, float]]) -> None:
        """Start the delay process in the namespace and wait for its `ready`."""
        argv = [sys.executable, "-m", "emulator.impair.delayd",
                f"{self.prefix}-delayd-{self.host}"]
        for num, delay, jitter in queues:
            argv += ["--queue", f"{num}:{delay:g}:{jitter:g}"]
        os.makedirs(self.log_dir, exist_ok=True)
        err = open(os.path.join(self.log_dir, f"delayd-{self.host}.log"), "a")
        env = {**os.environ, "KUBEMU_RUN_ID": self.prefix[len(PREFIX):]}
        proc = netns.popen(self.netns, argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                           start_new_session=True)
        err.close()
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            proc.wait()
            raise KernelError("the delay process did not start", " ".join(argv[1:]),
                              f"see {self.log_dir}/delayd-{self.host}.log")
        self.proc, self.queues = proc, queues
        log.info("delay process %s serving queues %s", proc.pid, queues)
        threading.Thread(target=self._supervise, args=(proc,), daemon=True, name=f"delayd-{self.host}").start()

    def _supervise(self, proc: subprocess.Popen) -> None:
        """Start the delay process again if it dies while its queues are in use."""
        proc.wait()
        with self.lock:
            if self.proc is not proc:
                return   # stopped on purpose
            log.warning("delay process %s exited with %s: starting it again", proc.pid, proc.returncode)
            self.restarts += 1
            queues, self.proc, self.queues = self.queues, None, []
            try:
                self._start_delayd(queues)
            except Exception:   # e.g. the namespace is gone: packets of the queues are dropped
                log.exception("delay process of %s could not be started again", self.host)

    def _stop_delayd(self) -> None:
        proc, self.proc, self.queues = self.proc, None, []
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop(self) -> None:
        """At teardown: stop the delay process (the namespace and its rules go with the host)."""
        with self.lock:
            self._stop_delayd()

    def clear(self) -> None:
        """Remove the impairments (rules emptied, qdisc removed, delay process stopped)."""
        if self.hooked:
            self.iptables.restore(render.mangle_restore(self.prefix, [], self.mechanism or "nfqueue", False))
        tc.del_root_qdisc(self.netns, render.DEV)
        with self.lock:
            self._stop_delayd()
