"""The live driver (`kubemu up`): a run whose cluster stays up for kubectl and ad hoc commands.

`run_scenario(..., live=LiveRun(...))` calls, in order: `extend_plan` (a control-plane
host on the fabric, outside the VPC like GKE's), `start` once the cluster is up (the
HTTPS API endpoint of emulator.kubeapi with its kubeconfig, the service account files,
the in-cluster `kubernetes` Service and the forwarder behind it), `hold` after the
steps (the control socket, live.json, then wait for `kubemu down`, Ctrl-C or SIGTERM),
and `stop` first in the cluster's teardown.

In-cluster path: pods -> `kubernetes` ClusterIP:443 -> kube-proxy DNAT -> control-plane
host <ip>:443 (a socket this process made in that host's namespace) -> forwarded from
this process to the endpoint on 127.0.0.1 of the root namespace. TLS passes through.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

import ray
from pydantic import ValidationError
from ruamel.yaml import YAML

from controllers.vpc_types import DEFAULT_ROUTER_MAC
from emulator.config.scenario import TrafficStep
from emulator.control.events import expired
from emulator.errors import KubemuError
from emulator.kernel.netns import socket_in
from emulator.live import registry
from emulator.live.control import ControlServer
from emulator.live.forward import Forwarder
from emulator.live.podexec import ExecBackend, LogsBackend
from emulator.naming import RunNames
from emulator.node import serviceaccount
from emulator.records.hosts import HostSpec
from emulator.records.results import Results
from emulator.runner import cleanup, flows

log = logging.getLogger(__name__)
# GKE's control plane sits in a /28 outside the VPC (172.16.0.0/28 is the default
# master range of private clusters); the emulated one is a host there, not firewalled.
CONTROL_PLANE = {"name": "gke-control-plane", "ip": "172.16.0.2", "gateway": "172.16.0.1", "range": "172.16.0.0/28"}
API_PORT = 443
EVENT_TTL = 3600.0        # kube-apiserver's --event-ttl default
EVENT_GC_PERIOD = 60.0
KUBERNETES_NAMES = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local"]


def _sigterm(_signum, _frame) -> None:
    raise KeyboardInterrupt("SIGTERM")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def kubernetes_service_ip(service_range: str) -> str:
    """The `kubernetes` Service's ClusterIP: the first address of the service range."""
    return str(ipaddress.ip_network(service_range).network_address + 1)


def in_cluster_sans(service_range: str) -> list[str]:
    """Names and addresses in-cluster clients use for the API server: the endpoint's cert must list them."""
    return [kubernetes_service_ip(service_range), CONTROL_PLANE["ip"], *KUBERNETES_NAMES]


def kubernetes_objects(service_range: str) -> list[dict]:
    """default/kubernetes (no selector) and its EndpointSlice pointing at the control-plane host."""
    ip = kubernetes_service_ip(service_range)
    port = {"name": "https", "port": API_PORT, "protocol": "TCP"}
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kubernetes", "namespace": "default",
                      "labels": {"component": "apiserver", "provider": "kubernetes"}},
         "spec": {"clusterIP": ip, "type": "ClusterIP", "ports": [{**port, "targetPort": API_PORT}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "kubernetes", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "kubernetes",
                                 "endpointslice.kubernetes.io/managed-by": "kube-apiserver"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [CONTROL_PLANE["ip"]], "conditions": {"ready": True}}],
         "ports": [port]},
    ]


def kubeconfig_for_run(cfg: dict, context: str) -> dict:
    """The endpoint's kubeconfig with its cluster, user and context all named `context`."""
    cluster = dict(cfg["clusters"][0], name=context)
    user = dict(cfg["users"][0], name=context)
    ctx = {"name": context, "context": {**cfg["contexts"][0].get("context", {}), "cluster": context, "user": context}}
    return {**cfg, "clusters": [cluster], "users": [user], "contexts": [ctx], "current-context": context}


def write_kubeconfig(path: str, cfg: dict) -> None:
    """Write the kubeconfig 0600 (it holds the run's bearer token)."""
    tmp = path + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        YAML(typ="safe", pure=True).dump(cfg, f)
    os.replace(tmp, path)


class LiveRun:
    """The live parts of one run; see the module docstring for the order of calls."""

    def __init__(self, scenario, run_id: str, announce: Callable[[str], None] = print) -> None:
        self.scenario, self.run_id, self.announce = scenario, run_id, announce
        self.names = RunNames(run_id)
        self.context = f"kubemu-{scenario.name}-{run_id}"
        self.cluster = None
        self.ctx = None
        self.results: Results | None = None
        self.endpoint = None
        self.forwarder = None
        self.control: ControlServer | None = None
        self.kubeconfig: str | None = None
        self.record: dict = {}
        self._down = threading.Event()
        self._lock = threading.Lock()   # one ad hoc traffic flow at a time
        self._flows = 0
        self._stopped = False

    # --- plan ---
    def extend_plan(self, plan) -> None:
        """Add the control-plane host (its address must not be one of the topology's ranges)."""
        cp = ipaddress.ip_network(CONTROL_PLANE["range"])
        for what in (plan.subnet, plan.cluster_cidr, plan.service_range, plan.external_range,
                     *(f"{h.ip}/32" for h in plan.hosts)):
            if what and ipaddress.ip_network(what, strict=False).overlaps(cp):
                raise KubemuError(f"the topology uses {what}, which overlaps the control plane's "
                                  f"{CONTROL_PLANE['range']}: choose other ranges for a live run")
        plan.probers.append(HostSpec(**{k: CONTROL_PLANE[k] for k in ("name", "ip", "gateway")},
                                     role="host", kind="prober", zone=None, gateway_mac=DEFAULT_ROUTER_MAC,
                                     fabric_port=self.names.fabric_port(len(plan.hosts))))

    # --- start ---
    def start(self, cluster, run_dir: str) -> None:
        """API endpoint, kubeconfig, service account files, the `kubernetes` Service."""
        self.cluster, self.run_dir = cluster, run_dir
        cluster.on_down.append(self.stop)
        # ray.init replaced the run's SIGTERM handler by its own (sys.exit in the middle of
        # whatever runs): SIGTERM tears down like Ctrl-C instead.
        signal.signal(signal.SIGTERM, _sigterm)
        self.record = {"run_id": self.run_id, "scenario": self.scenario.name, "scenario_file": self.scenario.file,
                       "run_dir": run_dir, "context": self.context, "pid": os.getpid(), "started": time.time(),
                       "nodes": len(cluster.plan.nodes), "control": registry.control_path(self.run_id),
                       "kubeconfig": None, "endpoint": None, "status": "starting"}
        registry.write_record(self.run_id, self.record)
        self.endpoint = self._start_endpoint(run_dir)
        if self.endpoint is None:
            return
        self.kubeconfig = os.path.join(run_dir, "kubeconfig")
        write_kubeconfig(self.kubeconfig, kubeconfig_for_run(self.endpoint.kubeconfig(self.context), self.context))
        self.record.update(kubeconfig=self.kubeconfig, endpoint=self.endpoint.url)
        serviceaccount.write_run_credentials(self.run_id, self.endpoint.token, self.endpoint.ca_pem)
        pods, _ = ray.get(cluster.api.list.remote("Pod"))
        for p in pods:   # started before the credentials existed (kube-dns)
            serviceaccount.write_pod_serviceaccount(self.run_id, p["metadata"]["namespace"], p["metadata"]["name"])
        self._start_in_cluster()
        registry.write_record(self.run_id, self.record)

    def _start_endpoint(self, run_dir: str):
        """The HTTPS Kubernetes API in front of the ApiServer actor; None when kubeapi is missing."""
        try:
            from emulator.kubeapi.endpoint import KubeApiEndpoint   # optional: the run works without it
        except ImportError as e:
            self.announce(f"no Kubernetes API endpoint: emulator.kubeapi is not available ({e}); "
                          "kubectl cannot reach this run, kubemu exec/logs/traffic can")
            return None
        kwargs = {"run_id": self.run_id, "state_dir": cleanup.state_dir(self.run_id), "host": "127.0.0.1",
                  "port": 0, "exec_backend": ExecBackend(self.run_id),
                  "logs_backend": LogsBackend(self.run_id, run_dir)}
        # The certificate must name what in-cluster clients dial; the endpoint cannot listen
        # there itself (those addresses exist only inside the emulated network).
        sans = in_cluster_sans(self.cluster.plan.service_range)
        ep = KubeApiEndpoint(self.cluster.api, **kwargs, extra_sans=[s for s in sans if _is_ip(s)])
        ep.start()
        return ep

    def _start_in_cluster(self) -> None:
        """Listen on the control-plane host's <ip>:443, forward to the endpoint; the `kubernetes` Service."""
        port = urlsplit(self.endpoint.url).port
        self.forwarder = Forwarder(("127.0.0.1", port), name=f"{self.names.prefix}-forwarder")
        netns = self.names.host_netns(CONTROL_PLANE["name"])
        if not os.path.exists(os.path.join("/run/netns", netns)):   # placed on another real machine
            self.announce("no in-cluster API: the control-plane host runs on another machine than this driver")
            return
        self.forwarder.serve(socket_in(netns, bind=(CONTROL_PLANE["ip"], API_PORT)))
        for obj in kubernetes_objects(self.cluster.plan.service_range):
            ray.get(self.cluster.api.apply.remote(obj))
        self.record["in_cluster"] = f"https://{kubernetes_service_ip(self.cluster.plan.service_range)}:{API_PORT}"

    # --- hold ---
    def hold(self, ctx, results: Results) -> None:
        """Serve the control socket and wait until asked to tear down."""
        self.ctx, self.results = ctx, results
        self.control = ControlServer(registry.control_path(self.run_id),
                                     {"info": lambda r: self.record, "traffic": self._traffic, "down": self._down_op,
                                      "list": self._list})
        self.record["status"] = "ready"
        registry.write_record(self.run_id, self.record)
        self.announce_ready()
        last_gc = time.time()
        while not self._down.wait(0.5):
            if time.time() - last_gc > EVENT_GC_PERIOD:
                last_gc = time.time()
                self._expire_events(last_gc)
        self.announce("tearing down (kubemu down)")

    def _expire_events(self, now: float) -> None:
        """Delete Events older than the TTL, as the API server does (a live run may last for days)."""
        try:
            events, _ = ray.get(self.cluster.api.list.remote("Event"), timeout=30)
            for ev in expired(events, now, EVENT_TTL):
                self.cluster.api.delete.remote("Event", ev["metadata"]["namespace"], ev["metadata"]["name"])
        except Exception:  # noqa: BLE001 - the next round tries again
            log.warning("expiring events failed", exc_info=True)

    def announce_ready(self) -> None:
        rid = self.run_id
        lines = [f"live run kubemu{rid} is up; stop it with `kubemu down {rid}` or Ctrl-C"]
        if self.kubeconfig:
            lines += [f"export KUBECONFIG={self.kubeconfig}", f"context: {self.context}",
                      "  kubectl get nodes,pods -o wide", "  kubectl get events",
                      "  kubectl exec client -- wget -qO- http://web/hostname"]
        lines += [f"  kubemu exec client -- ip -4 addr", f"  kubemu logs {{POD}} -f",
                  "  kubemu traffic --from pod/client http://web.default.svc.cluster.local/hostname --requests 100"]
        self.announce("\n".join(lines))

    def _list(self, req: dict) -> dict:
        """Objects of a kind straight from the ApiServer actor (no kubectl needed)."""
        items, rv = ray.get(self.cluster.api.list.remote(req["kind"], req.get("namespace")))
        return {"items": items, "resourceVersion": rv}

    def _down_op(self, _req: dict) -> dict:
        self._down.set()
        return {"ok": True, "pid": os.getpid()}

    def _traffic(self, req: dict) -> dict:
        """One ad hoc flow, as the scenario `traffic` step runs it; its summary."""
        with self._lock:
            self._flows += 1
            spec = {**req.get("spec", {}), "name": f"adhoc-{self._flows}"}
            try:
                step = TrafficStep.model_validate({"traffic": spec})
            except ValidationError as e:
                raise KubemuError(f"bad traffic request: {e.errors()[0]['msg']}") from None
            rec = flows.run_traffic(step, self.ctx)
            out = flows.new_results(self.ctx)
            self.results.record_step(rec)
            self.results.flows.update(out)
            return {"flows": out, "describe": flows.describe(step.traffic)}

    # --- stop ---
    def stop(self) -> None:
        """Close the control socket, the forwarder and the endpoint (before the actors stop)."""
        if self._stopped:
            return
        self._stopped = True
        self._down.set()
        self.record["status"] = "stopping"
        try:
            registry.write_record(self.run_id, self.record)
        except OSError:
            pass
        for part in (self.control, self.forwarder, self.endpoint):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # noqa: BLE001 - tear down the rest anyway
                    log.warning("stopping %s failed", part, exc_info=True)
