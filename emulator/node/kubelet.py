"""The kubelet of an emulated node: pods bound to it become namespaces with running workloads.

Watches Pods bound to this node; for each new pod builds its network (PodNetwork),
starts its containers (runtime), runs its readiness probe and reports status to the
API server; tears all of it down when the pod is deleted.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import replace

import ray

from emulator.api.client import Informer
from emulator.control.events import EventRecorder, involved_ref
from emulator.control.nodelifecycle import ready_status
from emulator.errors import KubemuError
from emulator.node import containers, podexec, runtime, sandbox, serviceaccount, termination
from emulator.node.podnet import PodNetwork
from emulator.node.sandbox import ExecResult, SandboxError, SandboxSpec
from emulator.node.probes import ProbeRunner, ProbeTarget
from emulator.paths import ETC_NETNS
from emulator.workloads.agnhost import agnhost_argv, parse_netexec_args
from emulator.config.timing import Timing
from emulator.node import resolvconf
from emulator.node.dns_records import build_zone

log = logging.getLogger(__name__)
STATUS_SYNC = "status-sync"   # a worker queue item: post the pod readiness the API server has wrong
SYNC_RETRY_MAX = 30.0          # seconds: the longest wait before a failed pod sync is tried again


def sync_retry_delay(failures: int) -> float:
    """Seconds before a pod whose sync failed `failures` times in a row is synced again: 1, 2,
    4... up to SYNC_RETRY_MAX (the kubelet's pod workers back off and retry; without a retry, a
    pod whose namespace could not be made on a busy machine waited for another change to it)."""
    return containers.backoff_seconds(failures, base=1.0, cap=SYNC_RETRY_MAX)


def sync_pod_status(kubelet) -> None:
    """Post the status of every local pod whose stored Ready condition differs from the kubelet's
    (the node lifecycle controller marks pods not ready while the node is silent). A cached pod
    older than the kubelet's own last post of it is not the API server's: the watch is behind,
    unless that post failed."""
    if kubelet is None:
        return
    for key, local in list(kubelet.pods.items()):
        ns, name = key.split("/", 1)
        with kubelet.informer.lock:
            pod = kubelet.informer.cache.get(("Pod", ns, name))
        if pod is None or (not local.post_failed
                           and int(pod["metadata"].get("resourceVersion") or 0) <= local.posted_rv):
            continue
        if ready_status(pod) != kubelet.ready_of(local):
            kubelet.post_status(local)


class LocalPod:
    """What the kubelet holds for a running pod."""

    def __init__(self, key: str, netns: str, ip: str, host_network: bool = False) -> None:
        self.key, self.netns, self.ip, self.host_network = key, netns, ip, host_network
        self.processes = runtime.PodProcesses()
        self.servers: list = []
        self.dns_dir: str | None = None
        self.etc_dir: str | None = None    # a hostNetwork pod's own resolv.conf directory
        self.sandboxes: dict[str, SandboxSpec] = {}   # container name -> its sandbox (argv: its command)
        self.ref: dict | None = None            # involvedObject of its events
        self.containers: dict[str, containers.ContainerState] = {}
        self.procs: dict[str, object] = {}         # container name -> its running process (Popen-like)
        self.probe_ready = False
        self.policy = "Always"                     # restartPolicy
        self.term_deadline: float | None = None   # monotonic end of the grace period once terminating
        self.wake = threading.Event()              # set when the grace period shortens or the pod goes
        self.posted_rv = 0                         # resourceVersion of the kubelet's last status post
        self.post_lock = threading.Lock()          # one status post at a time: the last one is the newest
        self.post_failed = False                   # the last status post did not reach the API server


class Kubelet:
    """Runs the pods the scheduler bound to this node."""

    def __init__(self, api, node_name: str, node_ip: str, names, podnet: PodNetwork,
                 workloads, timing: Timing, run_dir: str, dns: dict | None,
                 services: "callable", slices: "callable" = list, watch: "callable | None" = None) -> None:
        self.api, self.node_name, self.node_ip, self.names = api, node_name, node_ip, names
        self.podnet, self.workloads, self.timing = podnet, workloads, timing
        self.run_dir, self.dns, self.services, self.slices = run_dir, dns, services, slices
        self.pods: dict[str, LocalPod] = {}
        # the Pods bound here: `watch(handler)` gives the node host's shared view, else its own watch
        self.informer = (watch(self._on_event) if watch is not None
                         else Informer(api, ["Pod"], self._on_event, node_name=node_name))
        self.probes = ProbeRunner(podnet.node_netns, self._on_probe)
        self._queue: "queue.Queue[str | None]" = queue.Queue()
        self._workers = [threading.Thread(target=self._work, name=f"kubelet-{i}", daemon=True) for i in range(2)]
        self._busy: set[str] = set()
        self._sync_failures: dict[str, int] = {}   # pod key -> failed syncs in a row (retried with back-off)
        self._lock = threading.Lock()
        self._status_pending = False
        self.events = EventRecorder(api, "kubelet", node_name)
        self._stopped = threading.Event()
        self._monitor = threading.Thread(target=self._watch_containers, name="kubelet-containers", daemon=True)

    def start(self) -> None:
        self.probes.start()
        for w in self._workers:
            w.start()
        self._monitor.start()
        self.informer.start()

    def stop(self) -> None:
        self._stopped.set()
        self.informer.stop()
        self.probes.stop()
        for _ in self._workers:
            self._queue.put(None)
        for key in list(self.pods):
            self._teardown(key)

    def _on_event(self, _type: str, pod: dict) -> None:
        self._queue.put(self._key(pod))

    @staticmethod
    def _key(pod: dict) -> str:
        return f"{pod['metadata'].get('namespace', 'default')}/{pod['metadata']['name']}"

    def request_status_sync(self) -> None:
        """Have a worker post again every pod readiness the API server has wrong (after each
        renewal of the node's lease), unless one such sync is still waiting."""
        with self._lock:
            if self._status_pending:
                return
            self._status_pending = True
        self._queue.put(STATUS_SYNC)

    def _work(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            if key == STATUS_SYNC:
                with self._lock:
                    self._status_pending = False
                try:
                    sync_pod_status(self)
                except Exception as e:   # cut off or API server restarting: the next renewal asks again
                    log.warning("pod status sync failed: %s", e)
                continue
            with self._lock:
                if key in self._busy:  # another worker has it: retry shortly
                    threading.Timer(0.05, self._queue.put, (key,)).start()
                    continue
                self._busy.add(key)
            try:
                self._sync(key)
                self._sync_failures.pop(key, None)
            except Exception:
                failures = self._sync_failures[key] = self._sync_failures.get(key, 0) + 1
                delay = sync_retry_delay(failures)
                if failures == 1:
                    log.exception("pod %s sync failed; again in %g s", key, delay)
                else:   # the traceback was in the first line: one line per retry
                    log.warning("pod %s sync failed (%d in a row): %s; again in %g s", key, failures,
                                sys.exc_info()[1], delay)
                if not self._stopped.is_set():
                    retry = threading.Timer(delay, self._queue.put, (key,))
                    retry.daemon = True
                    retry.start()
            finally:
                with self._lock:
                    self._busy.discard(key)

    def _sync(self, key: str) -> None:
        ns, name = key.split("/", 1)
        with self.informer.lock:
            pod = self.informer.cache.get(("Pod", ns, name))
        gone = pod is None or pod["spec"].get("nodeName") != self.node_name
        terminating = pod is not None and pod["metadata"].get("deletionTimestamp") is not None
        if gone:
            if key in self.pods:
                self._teardown(key)
            return
        if terminating:
            local = self.pods.get(key)
            if local is None:   # nothing runs here (e.g. after a crash): the kubelet confirms the deletion
                ray.get(self.api.delete.remote("Pod", ns, name, 0))
            else:
                self._begin_termination(local, pod)
            return
        if key not in self.pods and pod.get("status", {}).get("phase") not in ("Failed", "Succeeded"):
            self._start(pod)

    def _start(self, pod: dict) -> None:
        ns, name = pod["metadata"].get("namespace", "default"), pod["metadata"]["name"]
        key = f"{ns}/{name}"
        spec = pod["spec"]
        host_network = bool(spec.get("hostNetwork"))
        try:
            kinds = [runtime.container_kind(c) for c in spec.get("containers", [])]
            if host_network and set(kinds) & {"netexec", "kube-dns"}:
                raise runtime.UnsupportedContainer("hostNetwork: true is supported for containers with "
                                                   "a command only, not built-in netexec/kube-dns")
            identities = {c.get("name", "c"): sandbox.container_identity(spec, c)
                          for c in spec.get("containers", [])}
            if "command" in kinds or any("exec" in (c.get("readinessProbe") or {}) for c in spec["containers"]):
                podexec.bwrap_path()
        except (runtime.UnsupportedContainer, SandboxError, KubemuError) as e:
            reason = "CreateContainerError" if isinstance(e, SandboxError) else "UnsupportedContainer"
            ray.get(self.api.patch_status.remote("Pod", ns, name, {
                "phase": "Failed", "reason": reason, "message": str(e)}))
            return
        etc_dir = None
        if host_network:
            pod_netns, ip = self.podnet.node_netns, self.node_ip
            self.podnet.allow_unprivileged_ports(pod_netns)
            etc_dir = self._host_network_etc(spec, ns, name)
        else:
            pod_netns = self.names.pod_netns(ns, name)
            ip = self.podnet.add_pod(pod_netns, ns, name, self._etc_files(spec, ns, name))
        sa_dir = serviceaccount.write_pod_serviceaccount(self.names.run_id, ns, name)   # live runs only
        local = LocalPod(key, pod_netns, ip, host_network)
        local.etc_dir = etc_dir
        local.ref = involved_ref(pod)
        local.policy = spec.get("restartPolicy") or "Always"
        local.containers = {c.get("name", "c"): containers.ContainerState(c.get("name", "c"), c.get("image", ""))
                            for c in spec["containers"]}
        self.pods[key] = local
        env = serviceaccount.service_env(self.services())
        secrets = serviceaccount.mounted_files(sa_dir)
        for c in spec["containers"]:
            local.sandboxes[c.get("name", "c")] = podexec.container_sandbox(
                c, identities[c.get("name", "c")], pod_netns, name, self.names.run_id, host_network, etc_dir,
                extra_env=env, data_files=secrets)
        podexec.save_sandboxes(serviceaccount.pod_state_dir(self.names.run_id, ns, name), local.sandboxes)
        ports: dict[str, int] = {}
        for c, kind in zip(spec["containers"], kinds):
            for p in c.get("ports", []) or []:
                if p.get("name"):
                    ports[p["name"]] = p["containerPort"]
            self._start_container(local, name, c, kind)
            cname = c.get("name", "c")
            self.events.record(local.ref, "Pulled", f'Container image "{c.get("image", "")}" already present on machine')
            self.events.record(local.ref, "Created", f"Created container {cname}")
            self.events.record(local.ref, "Started", f"Started container {cname}")
        # Synchronous: the probe's later Ready update must not overtake this one.
        ray.get(self.api.patch_status.remote("Pod", ns, name, {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": self.node_ip,
            "startTime": time.time(), **self._status(local)}))
        prober, prober_kind = next(((c, k) for c, k in zip(spec["containers"], kinds) if c.get("readinessProbe")),
                                   (None, None))
        probe = prober.get("readinessProbe") if prober else None
        t = self.timing
        period = max(t.readiness_probe_min_period, (probe or {}).get("periodSeconds", 10) * t.readiness_probe_scale)
        self.probes.add(ProbeTarget(
            key=key, pod_ip=ip, pod_netns=pod_netns, probe=probe or {},
            ports=ports, period=period,
            timeout=max(0.2, min((probe or {}).get("timeoutSeconds", 1), period)),
            success_threshold=(probe or {}).get("successThreshold", 1),
            failure_threshold=(probe or {}).get("failureThreshold", 3),
            next_due=time.monotonic() + (probe or {}).get("initialDelaySeconds", 0) * t.readiness_probe_scale,
            sandbox=local.sandboxes.get(prober.get("name", "c")) if prober else None,
            in_process=prober_kind == "netexec"))

    def _etc_files(self, spec: dict, ns: str, name: str) -> dict | None:
        """The pod's resolv.conf text and its hosts text as a function of its IP (resolvconf.py)."""
        if not self.dns:
            return None
        return {"resolv_conf": resolvconf.resolv_conf(spec, ns, self.dns["nameserver"]),
                "hosts": lambda ip: resolvconf.hosts_file(spec, ns, name, ip)}

    def _host_network_etc(self, spec: dict, ns: str, name: str) -> str | None:
        """A hostNetwork pod's own resolv.conf (ClusterFirstWithHostNet: the cluster's; else the
        node's resolver, which has no upstream in kubemu), in a directory named like its
        netns would be; the pod's sandbox binds it over /etc/resolv.conf."""
        if not self.dns:
            return None
        etc_dir = os.path.join(ETC_NETNS, self.names.pod_netns(ns, name))
        os.makedirs(etc_dir, exist_ok=True)
        with open(os.path.join(etc_dir, "resolv.conf"), "w") as f:
            f.write(resolvconf.resolv_conf(spec, ns, self.dns["nameserver"]))
        return etc_dir

    def _start_container(self, local: LocalPod, pod_name: str, c: dict, kind: str) -> None:
        cname = c.get("name", "c")
        st = local.containers[cname]
        log_path = os.path.join(self.run_dir, "pods", local.key.replace("/", "_"), f"{cname}.log")
        now, mono = time.time(), time.monotonic()
        if kind == "netexec":
            cfg = parse_netexec_args(agnhost_argv(c) or [], env=runtime.container_env(c))
            on_exit = lambda code: self._exited(local, cname, code)   # noqa: E731
            try:
                if self.workloads.add_pod_server(local.netns, pod_name, self.node_name, cfg,
                                                 log_path=log_path, on_exit=on_exit) is not None:
                    local.servers.append(local.netns)
            except KubemuError as e:
                containers.start_failed(st, str(e), now, mono, local.policy)
                return
        elif kind == "kube-dns":
            local.dns_dir = os.path.join(self.run_dir, "dns", local.key.replace("/", "_"))
            os.makedirs(local.dns_dir, exist_ok=True)
            self.write_dns(local)
            kubedns_log = os.path.join(os.path.dirname(log_path), "kubedns.log")
            local.processes.procs.append(runtime.start_process(
                local.netns, runtime.kubedns_argv(os.path.join(local.dns_dir, "zone.json")), kubedns_log))
            if not runtime.wait_for_line(kubedns_log, "kubedns: serving"):
                log.warning("kubedns of %s did not start; see %s", local.key, kubedns_log)
            local.processes.procs.append(runtime.start_process(
                local.netns, runtime.dnsmasq_argv(local.ip, os.path.join(local.dns_dir, "dnsmasq.pid")), log_path))
        elif kind == "connect":   # args only with the agnhost image: the command is agnhost itself
            spec = replace(local.sandboxes[cname], argv=("agnhost", *(agnhost_argv(c) or [])))
            local.procs[cname] = runtime.ThreadRun(lambda: podexec.exec_in_pod(spec), log_path)
        elif kind == "command":
            spec = local.sandboxes[cname]
            missing = containers.missing_command(list(spec.argv), dict(spec.env).get("PATH", sandbox.DEFAULT_PATH))
            if missing:
                log.info("pod %s container %s: %s", local.key, cname, missing)
                containers.start_failed(st, missing, now, mono, local.policy)
                return
            proc = podexec.start_in_pod(spec, log_path)
            local.processes.procs.append(proc)
            local.procs[cname] = proc
        containers.started(st, now)

    def _exited(self, local: LocalPod, cname: str, code: int) -> None:
        """A built-in server's container exited (/exit, /shutdown)."""
        if local.term_deadline is None and self.pods.get(local.key) is local:
            containers.exited(local.containers[cname], code, time.time(), time.monotonic(),
                              local.policy, local.key.split("/", 1)[1])
            # called on the workloads' loop: post from another thread, not blocking every server
            threading.Thread(target=self.post_status, args=(local,), daemon=True).start()

    def _watch_containers(self) -> None:
        """Notice exited containers and restart them when their back-off is over."""
        while not self._stopped.wait(0.25):
            for local in list(self.pods.values()):
                try:
                    self._check_containers(local)
                except Exception:  # noqa: BLE001 - one pod's trouble must not stop the others
                    log.exception("pod %s container check failed", local.key)

    def _check_containers(self, local: LocalPod) -> None:
        if local.term_deadline is not None:
            return
        changed = False
        name = local.key.split("/", 1)[1]
        for cname, proc in list(local.procs.items()):
            code = proc.poll()
            if code is not None:
                del local.procs[cname]
                if proc in local.processes.procs:
                    local.processes.procs.remove(proc)
                containers.exited(local.containers[cname], code, time.time(), time.monotonic(), local.policy, name)
                changed = True
        for st in local.containers.values():
            changed = containers.tick(st, time.monotonic(), name) or changed
        with self.informer.lock:
            pod = self.informer.cache.get(("Pod", *local.key.split("/", 1)))
        for c in (pod or {}).get("spec", {}).get("containers", []):
            st = local.containers.get(c.get("name", "c"))
            if st is not None and st.restart_due is not None and time.monotonic() >= st.restart_due:
                st.restart_due = None
                self._start_container(local, name, c, runtime.container_kind(c))
                changed = True
        if changed:
            self.post_status(local)

    def _status(self, local: LocalPod) -> dict:
        """containerStatuses and conditions of a local pod."""
        states = list(local.containers.values())
        return {"containerStatuses": [containers.api_status(st, local.probe_ready) for st in states],
                "conditions": containers.pod_conditions(states, local.probe_ready)}

    def ready_of(self, local: LocalPod) -> str:
        """"True"/"False": the Ready condition this kubelet holds for a local pod."""
        return next(c["status"] for c in self._status(local)["conditions"] if c["type"] == "Ready")

    def post_status(self, local: LocalPod) -> None:
        """Send the pod's containerStatuses and conditions to the API server."""
        ns, name = local.key.split("/", 1)
        # Status computed and posted under the pod's lock: a post computed before a probe's
        # change cannot land after the probe's own post (the status sync trusts `posted_rv`).
        with local.post_lock:
            try:
                out = ray.get(self.api.patch_status.remote("Pod", ns, name, self._status(local)))
            except Exception as e:
                local.post_failed = True   # the status sync posts it again, whatever the stored version
                if isinstance(e, ConnectionError):   # cut off from the API server
                    log.warning("pod %s status not posted: %s", local.key, e)
                    return
                raise
            local.post_failed = False
            if out is not None:
                local.posted_rv = max(local.posted_rv, int(out["metadata"].get("resourceVersion") or 0))

    def write_dns(self, local: LocalPod | None = None) -> None:
        """Rewrite the zone file of every kube-dns pod here (its kubedns re-reads it), and the
        `services` hosts file (`kubemu reach` reads Service IPs from it)."""
        targets = [local] if local else [p for p in self.pods.values() if p.dns_dir]
        if not targets:
            return
        services = self.services()
        files = {"services": runtime.render_dns_hosts(services),
                 "zone.json": json.dumps(build_zone(services, self.slices()), sort_keys=True)}
        for p in targets:
            for fname, text in files.items():
                path = os.path.join(p.dns_dir, fname)
                tmp = f"{path}.{threading.get_ident()}.tmp"   # the informer and a worker may both write
                with open(tmp, "w") as f:
                    f.write(text)
                os.replace(tmp, path)

    def _on_probe(self, key: str, ready: bool) -> None:
        local = self.pods.get(key)
        if local is not None:
            local.probe_ready = ready
            self.post_status(local)

    def _begin_termination(self, local: LocalPod, pod: dict) -> None:
        """Start (or shorten) the graceful termination of a pod that got a deletionTimestamp."""
        deadline = time.monotonic() + termination.grace_seconds(pod)
        if local.term_deadline is not None:
            if deadline < local.term_deadline:
                local.term_deadline = deadline
                local.wake.set()
            return
        local.term_deadline = deadline
        threading.Thread(target=self._terminate, args=(local, pod), daemon=True,
                         name=f"terminate-{local.key}").start()

    def _terminate(self, local: LocalPod, pod: dict) -> None:
        """preStop hooks, SIGTERM, wait for the end or the grace period, then delete the pod."""
        key, ns, name = local.key, *local.key.split("/", 1)
        left = lambda: local.term_deadline - time.monotonic()   # noqa: E731
        ports = termination.container_ports(pod)
        for hook in termination.prestop_hooks(pod):
            outcome = termination.run_hook(hook, local.ip, ports, self.podnet.node_netns,
                                           local.sandboxes.get(hook.container), left(), local.wake)
            log.info("pod %s container %s preStop %s: %s", key, hook.container, hook.kind, outcome)
        local.processes.terminate()
        delay = 0.0
        for srv in local.servers:
            delay = max(delay, self.workloads.begin_pod_termination(srv))
        servers_end = time.monotonic() + delay
        gone = lambda: self.pods.get(key) is not local   # noqa: E731 - force-deleted, kubelet stopped
        termination.wait_until(lambda: min(local.term_deadline, servers_end),
                               lambda: gone() or (not local.processes.running() and time.monotonic() >= servers_end),
                               local.wake)
        if gone():
            return
        log.info("pod %s terminated (%s)", key, "in time" if left() > 0 else "grace period over: SIGKILL")
        self._teardown(key)
        try:
            ray.get(self.api.delete.remote("Pod", ns, name, 0))
        except Exception as e:  # noqa: BLE001 - the API is unreachable: the resync deletes it later
            log.warning("pod %s not deleted: %s", key, e)

    def _teardown(self, key: str) -> None:
        local = self.pods.pop(key, None)
        if local is None:
            return
        local.wake.set()
        self.probes.remove(key)
        for cname in local.containers:
            self.events.record(local.ref, "Killing", f"Stopping container {cname}")
        for srv in local.servers:
            try:
                self.workloads.remove_pod_server(srv)
            except Exception:
                log.exception("stopping server of %s failed", key)
        local.processes.stop()
        if not local.host_network:
            self.podnet.remove_pod(local.netns, local.ip)
        elif local.etc_dir:
            shutil.rmtree(local.etc_dir, ignore_errors=True)
        serviceaccount.remove_pod_serviceaccount(self.names.run_id, *key.split("/", 1))

    def exec(self, namespace: str, name: str, argv: list[str], container: str | None = None,
             stdin: bytes | None = None, timeout: float = 30.0) -> ExecResult:
        """Run a command contained in a pod, as its container (first one by default) runs:
        the entry point of `kubectl exec`. KeyError when the pod or container is not here."""
        local = self.pods.get(f"{namespace}/{name}")
        if local is None:
            raise KeyError(f"pod {namespace}/{name} is not running here")
        base = local.sandboxes[container] if container else next(iter(local.sandboxes.values()))
        return podexec.exec_in_pod(replace(base, argv=tuple(argv)), stdin, timeout)

    def pod_netns(self, namespace: str, name: str) -> str | None:
        p = self.pods.get(f"{namespace}/{name}")
        return p.netns if p else None
