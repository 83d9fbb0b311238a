"""The resources kubemu serves: group, version, plural, kind, scope, short names, verbs."""
from __future__ import annotations

from dataclasses import dataclass

from emulator.api.store import NAMESPACED

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
READ_ONLY = ("get", "list", "watch")
DERIVED_NAMESPACED = {"Endpoints"}      # views computed from stored objects (endpoints.py)


@dataclass(frozen=True)
class Resource:
    """One REST resource (e.g. apps/v1 deployments) and its subresources."""

    group: str
    version: str
    plural: str
    kind: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    definition: str = ""          # OpenAPI definition name, e.g. io.k8s.api.core.v1.Pod
    verbs: tuple[str, ...] = tuple(VERBS)

    @property
    def namespaced(self) -> bool:
        return self.kind in NAMESPACED or self.kind in DERIVED_NAMESPACED

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _r(gv: str, plural: str, kind: str, short: tuple[str, ...] = (), cats: tuple[str, ...] = (),
       subs: tuple[str, ...] = (), definition: str = "") -> Resource:
    group, _, version = gv.rpartition("/")
    return Resource(group, version, plural, kind, short, cats, subs, definition)


ALL = ("all",)
RESOURCES: tuple[Resource, ...] = (
    _r("v1", "namespaces", "Namespace", ("ns",), (), ("status",), "io.k8s.api.core.v1.Namespace"),
    _r("v1", "nodes", "Node", ("no",), (), ("status",), "io.k8s.api.core.v1.Node"),
    _r("v1", "pods", "Pod", ("po",), ALL, ("status", "log", "exec"), "io.k8s.api.core.v1.Pod"),
    _r("v1", "services", "Service", ("svc",), ALL, ("status",), "io.k8s.api.core.v1.Service"),
    Resource("", "v1", "endpoints", "Endpoints", ("ep",), (), (), "io.k8s.api.core.v1.Endpoints", READ_ONLY),
    _r("v1", "secrets", "Secret", (), (), (), "io.k8s.api.core.v1.Secret"),
    _r("v1", "events", "Event", ("ev",), (), (), "io.k8s.api.core.v1.Event"),
    _r("apps/v1", "deployments", "Deployment", ("deploy",), ALL, ("status", "scale"),
       "io.k8s.api.apps.v1.Deployment"),
    _r("apps/v1", "replicasets", "ReplicaSet", ("rs",), ALL, ("status", "scale"),
       "io.k8s.api.apps.v1.ReplicaSet"),
    _r("discovery.k8s.io/v1", "endpointslices", "EndpointSlice", (), (), (),
       "io.k8s.api.discovery.v1.EndpointSlice"),
    _r("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", ("netpol",), (), (),
       "io.k8s.api.networking.v1.NetworkPolicy"),
    _r("networking.k8s.io/v1", "ingresses", "Ingress", ("ing",), (), ("status",),
       "io.k8s.api.networking.v1.Ingress"),
    _r("coordination.k8s.io/v1", "leases", "Lease", (), (), (), "io.k8s.api.coordination.v1.Lease"),
    _r("cloud.google.com/v1", "backendconfigs", "BackendConfig", ("bc",), (), (),
       "com.google.cloud.v1.BackendConfig"),
)
GROUP_ORDER = ("", "apps", "discovery.k8s.io", "networking.k8s.io", "coordination.k8s.io",
               "cloud.google.com")


def by_path(group: str, version: str, plural: str) -> Resource | None:
    """The resource at /api(s)/<group>/<version>/<plural>, or None."""
    for r in RESOURCES:
        if (r.group, r.version, r.plural) == (group, version, plural):
            return r
    return None


def by_kind(kind: str) -> Resource | None:
    """The resource serving a kind."""
    return next((r for r in RESOURCES if r.kind == kind), None)


def group_versions() -> dict[str, list[str]]:
    """group -> versions served ("" is the core group)."""
    out: dict[str, list[str]] = {}
    for g in GROUP_ORDER:
        out[g] = sorted({r.version for r in RESOURCES if r.group == g})
    return out

