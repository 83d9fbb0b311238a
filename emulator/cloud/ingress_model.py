"""GKE's Ingress controller, pure part: Ingress + Services + endpoints -> one L7 load balancer.

Reads Ingress objects of `networking.k8s.io/v1beta1` (`serviceName`/`servicePort`) and
`networking.k8s.io/v1` (`service.name`/`service.port`, `pathType`, `defaultBackend`,
`tls`) and resolves every backend as GKE does:

- without container-native load balancing the backend Service must be NodePort or
  LoadBalancer and the proxy sends to every node's NodeIP:NodePort (instance groups);
- with `cloud.google.com/neg: '{"ingress": true}'` on the Service it sends straight to
  the ready pod IP:targetPort (network endpoint groups), any Service type;
- `cloud.google.com/backend-config` on the Service names a BackendConfig whose
  `securityPolicy` (a kubemu.io/v1 SecurityPolicy, Cloud Armor's rules) and `iap`
  guard the backend; IAP members come from the BackendConfig annotation
  `kubemu.io/iap-members` (IAM's httpsResourceAccessor role in GCP).

Errors (unknown Service, wrong type, missing Secret...) are collected per Ingress and
written to its status; the other rules keep working, as on GKE.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import re
from dataclasses import dataclass, field

from emulator.gke import BACKEND_CONFIG_ANNOTATION, NEG_ANNOTATION, is_neg

IAP_MEMBERS_ANNOTATION = "kubemu.io/iap-members"
ALLOW_HTTP_ANNOTATION = "kubernetes.io/ingress.allow-http"
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
ARMOR_ACTIONS = {"allow": None, "deny-403": 403, "deny-404": 404, "deny-502": 502}
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$")   # what may go into the proxy's config


@dataclass(frozen=True)
class ArmorRule:
    """One Cloud Armor rule: source ranges, action, priority, preview."""

    priority: int
    action: str                 # allow | deny-403 | deny-404 | deny-502
    src_ranges: tuple[str, ...]
    preview: bool = False

    @property
    def deny_status(self) -> int | None:
        return ARMOR_ACTIONS[self.action]


@dataclass(frozen=True)
class Policy:
    """A security policy: rules in priority order, then the default rule."""

    name: str
    rules: tuple[ArmorRule, ...]
    default_action: str = "allow"


@dataclass(frozen=True)
class Server:
    """One backend server: a node's NodePort or a pod's port (NEG)."""

    name: str
    ip: str
    port: int


@dataclass(frozen=True)
class Backend:
    """A GCP backend service: one Service port, its servers, health check and guards."""

    name: str                   # haproxy backend name
    service: str                # ns/name:port
    neg: bool
    servers: tuple[Server, ...]
    check_path: str = "/"
    check_port: int | None = None
    policy: Policy | None = None
    iap_members: tuple[str, ...] | None = None   # None: IAP off


@dataclass(frozen=True)
class Route:
    """host (None: any) + path match -> backend name."""

    host: str | None
    match: str                  # any | exact | prefix
    path: str
    backend: str


@dataclass
class LoadBalancer:
    """One Ingress's load balancer: address, routes, default backend, TLS certificates."""

    key: str                    # ns/name
    ip: str | None
    routes: list[Route] = field(default_factory=list)
    default_backend: str | None = None   # None: GKE's default backend (404)
    certs: list[tuple[str, str]] = field(default_factory=list)   # (file name, PEM cert+key)
    http: bool = True
    errors: list[str] = field(default_factory=list)


def ingress_key(ing: dict) -> str:
    meta = ing.get("metadata", {})
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def is_gce_ingress(ing: dict) -> bool:
    """GKE's controller takes Ingresses of class gce (or none given)."""
    ann = (ing.get("metadata", {}).get("annotations") or {}).get(INGRESS_CLASS_ANNOTATION)
    cls = ing.get("spec", {}).get("ingressClassName")
    return (ann or cls or "gce") in ("gce", "gce-external")


def _backend_ref(b: dict | None) -> tuple[str, str | int] | None:
    """(service name, port number or name) of a v1 or v1beta1 backend."""
    if not b:
        return None
    if "service" in b:
        port = b["service"].get("port") or {}
        return b["service"]["name"], port.get("number") or port.get("name")
    if "serviceName" in b:
        return b["serviceName"], b.get("servicePort")
    return None


def _path_match(path: str | None, path_type: str | None) -> tuple[str, str]:
    """(match kind, path) with GKE's meaning of each pathType."""
    p = path or "/"
    if path_type == "Exact":
        return "exact", p
    if path_type == "Prefix":
        p = p.rstrip("/") or "/"
        return ("any", "/") if p == "/" else ("prefix", p)
    # ImplementationSpecific (and v1beta1 without a type): GCE's URL map syntax,
    # `/*` everything, `/foo/*` the prefix /foo, anything else exact.
    if p in ("/", "/*"):
        return "any", "/"
    if p.endswith("/*"):
        return "prefix", p[:-2] or "/"
    return "exact", p


def parse_policy(obj: dict) -> Policy:
    """A kubemu.io/v1 SecurityPolicy object as a Policy (rules sorted by priority)."""
    spec = obj.get("spec") or {}
    rules = []
    for r in spec.get("rules") or []:
        match = r.get("match") or {}
        ranges = tuple("*" if x == "*" else str(ipaddress.ip_network(x, strict=False))
                       for x in match.get("srcIpRanges") or [])
        rules.append(ArmorRule(int(r["priority"]), r.get("action", "allow"), ranges, bool(r.get("preview", False))))
    rules.sort(key=lambda r: r.priority)
    return Policy(obj["metadata"]["name"], tuple(rules), spec.get("defaultRuleAction", "allow"))


def _by_name(objs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["metadata"].get("namespace", "default"), o["metadata"]["name"]): o for o in objs}


def _backend_config_name(svc: dict, port: dict) -> str | None:
    """The BackendConfig of a Service port: `{"default": X}` or `{"ports": {"80": X}}`."""
    raw = (svc["metadata"].get("annotations") or {}).get(BACKEND_CONFIG_ANNOTATION)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    ports = data.get("ports") or {}
    for k in (str(port.get("port")), port.get("name")):
        if k and k in ports:
            return ports[k]
    return data.get("default")


class Resolver:
    """Looks Services, endpoints, BackendConfigs, policies and Secrets up for backends."""

    def __init__(self, services: list[dict], slices: list[dict], node_ips: dict[str, str],
                 backend_configs: list[dict], policies: list[dict], secrets: list[dict]) -> None:
        self.services = _by_name(services)
        self.slices = slices
        self.node_ips = node_ips
        self.backend_configs = _by_name(backend_configs)
        self.policies = {o["metadata"]["name"]: o for o in policies}
        self.secrets = _by_name(secrets)
        self.backends: dict[str, Backend] = {}

    def backend(self, ns: str, ref: tuple[str, str | int], errors: list[str]) -> str | None:
        """The haproxy backend name for a Service port (built once), None on error."""
        name, want = ref
        svc = self.services.get((ns, name))
        if svc is None:
            errors.append(f"backend Service {ns}/{name} does not exist")
            return None
        port = next((p for p in svc["spec"].get("ports") or []
                     if want in (p.get("port"), p.get("name")) or str(want) == str(p.get("port"))), None)
        if port is None:
            errors.append(f"Service {ns}/{name} has no port {want}")
            return None
        key = f"be_{ns}_{name}_{port['port']}"
        if key in self.backends:
            return key
        neg = is_neg(svc)
        typ = svc["spec"].get("type", "ClusterIP")
        if not neg and typ not in ("NodePort", "LoadBalancer"):
            errors.append(f"Service {ns}/{name} is of type {typ}: an Ingress backend must be NodePort or "
                          f"LoadBalancer, or use container-native load balancing ({NEG_ANNOTATION})")
            return None
        servers = self._neg_servers(ns, name, port) if neg else tuple(
            Server(node, ip, int(port["nodePort"])) for node, ip in sorted(self.node_ips.items())
            if port.get("nodePort"))
        policy, members, check = self._guards(ns, svc, port, errors)
        self.backends[key] = Backend(key, f"{ns}/{name}:{port['port']}", neg, servers, check[0], check[1],
                                     policy, members)
        return key

    def _neg_servers(self, ns: str, name: str, port: dict) -> tuple[Server, ...]:
        """Ready pod IP:port of a Service port, from its EndpointSlices."""
        out = []
        for s in self.slices:
            meta = s["metadata"]
            if meta.get("namespace", "default") != ns or \
                    (meta.get("labels") or {}).get("kubernetes.io/service-name") != name:
                continue
            num = next((p.get("port") for p in s.get("ports") or [] if p.get("name", "") == port.get("name", "")),
                       None)
            if num is None:
                continue
            for e in s.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready") is False:
                    continue
                for ip in e.get("addresses") or []:
                    pod = (e.get("targetRef") or {}).get("name") or ip
                    out.append(Server(pod, ip, int(num)))
        return tuple(sorted(set(out), key=lambda s: (s.name, s.ip)))

    def _guards(self, ns: str, svc: dict, port: dict, errors: list[str]):
        """(policy, IAP members, (check path, check port)) from the port's BackendConfig."""
        bc_name = _backend_config_name(svc, port)
        if not bc_name:
            return None, None, ("/", None)
        bc = self.backend_configs.get((ns, bc_name))
        if bc is None:
            errors.append(f"BackendConfig {ns}/{bc_name} of Service {ns}/{svc['metadata']['name']} does not exist")
            return None, None, ("/", None)
        spec = bc.get("spec") or {}
        policy = None
        if spec.get("securityPolicy"):
            pname = spec["securityPolicy"]["name"]
            obj = self.policies.get(pname)
            if obj is None:
                errors.append(f"security policy {pname!r} of BackendConfig {ns}/{bc_name} does not exist")
            else:
                policy = parse_policy(obj)
        members = None
        if (spec.get("iap") or {}).get("enabled"):
            raw = (bc["metadata"].get("annotations") or {}).get(IAP_MEMBERS_ANNOTATION, "")
            members = tuple(sorted(m for m in (x.strip().removeprefix("user:") for x in raw.split(","))
                                   if EMAIL_RE.match(m)))
        hc = spec.get("healthCheck") or {}
        return policy, members, (hc.get("requestPath") or "/", hc.get("port"))

    def cert(self, ns: str, secret_name: str, errors: list[str]) -> tuple[str, str] | None:
        """(file name, PEM of certificate and key) of a kubernetes.io/tls Secret."""
        sec = self.secrets.get((ns, secret_name))
        if sec is None:
            errors.append(f"TLS Secret {ns}/{secret_name} does not exist")
            return None
        pem = []
        for k in ("tls.crt", "tls.key"):
            if k in (sec.get("stringData") or {}):
                pem.append(sec["stringData"][k])
            elif k in (sec.get("data") or {}):
                pem.append(base64.b64decode(sec["data"][k]).decode())
            else:
                errors.append(f"Secret {ns}/{secret_name} has no {k}")
                return None
        return f"{ns}_{secret_name}.pem", "".join(p.strip() + "\n" for p in pem)


def build_load_balancer(ing: dict, ip: str | None, res: Resolver) -> LoadBalancer:
    """One Ingress's load balancer (routes most specific first), errors collected."""
    ns = ing["metadata"].get("namespace", "default")
    spec = ing.get("spec") or {}
    lb = LoadBalancer(ingress_key(ing), ip)
    default = _backend_ref(spec.get("defaultBackend") or spec.get("backend"))
    if default:
        lb.default_backend = res.backend(ns, default, lb.errors)
    routes = []
    for rule in spec.get("rules") or []:
        host = (rule.get("host") or "").lower() or None
        for p in (rule.get("http") or {}).get("paths") or []:
            ref = _backend_ref(p.get("backend"))
            be = res.backend(ns, ref, lb.errors) if ref else None
            if be is None:
                continue
            match, path = _path_match(p.get("path"), p.get("pathType"))
            routes.append(Route(host, match, path, be))
    order = {"exact": 0, "prefix": 1, "any": 2}
    lb.routes = sorted(routes, key=lambda r: (r.host is None, r.host is not None and r.host.startswith("*."),
                                              order[r.match], -len(r.path)))
    for t in spec.get("tls") or []:
        if t.get("secretName"):
            c = res.cert(ns, t["secretName"], lb.errors)
            if c and c not in lb.certs:
                lb.certs.append(c)
    ann = ing["metadata"].get("annotations") or {}
    lb.http = ann.get(ALLOW_HTTP_ANNOTATION, "true").lower() != "false"
    return lb
