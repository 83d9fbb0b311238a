"""Discovery documents: /version, /api, /apis, per group-version resource lists, aggregated v2."""
from __future__ import annotations

from emulator.kubeapi.resources import RESOURCES, Resource, group_versions

GIT_VERSION = "v1.33.0-kubemu"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
SUB_VERBS = {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"],
             "log": ["get"], "exec": ["create", "get"]}


def version_info() -> dict:
    """The /version document."""
    return {"major": "1", "minor": "33", "emulationMajor": "1", "emulationMinor": "33",
            "gitVersion": GIT_VERSION, "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
            "compiler": "gc", "platform": "linux/amd64"}


def _sub_kind(r: Resource, sub: str) -> tuple[str, str, str]:
    """(group, version, kind) a subresource answers with."""
    if sub == "scale":
        return "autoscaling", "v1", "Scale"
    if sub == "exec":
        return "", "v1", "PodExecOptions"
    return r.group, r.version, r.kind


def api_versions(server_address: str) -> dict:
    """/api (legacy core group)."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(name: str, versions: list[str]) -> dict:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> dict:
    """/apis."""
    groups = [_group(g, vs) for g, vs in group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> dict | None:
    """/apis/<group>."""
    vs = group_versions().get(name)
    if not name or not vs:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, vs)}


def resource_list(group: str, version: str) -> dict | None:
    """/api/v1 or /apis/<group>/<version>: an APIResourceList, or None if not served."""
    rs = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not rs:
        return None
    out = []
    for r in rs:
        item = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                "kind": r.kind, "verbs": list(r.verbs)}
        if r.short_names:
            item["shortNames"] = list(r.short_names)
        if r.categories:
            item["categories"] = list(r.categories)
        out.append(item)
        for sub in r.subresources:
            g, v, k = _sub_kind(r, sub)
            s = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                 "kind": k, "verbs": SUB_VERBS[sub]}
            if (g, v) != (r.group, r.version):
                s.update(group=g, version=v)
            out.append(s)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _discovery_resource(r: Resource) -> dict:
    item = {"resource": r.plural,
            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "scope": "Namespaced" if r.namespaced else "Cluster",
            "singularResource": r.singular, "verbs": list(r.verbs)}
    if r.short_names:
        item["shortNames"] = list(r.short_names)
    if r.categories:
        item["categories"] = list(r.categories)
    subs = []
    for sub in r.subresources:
        g, v, k = _sub_kind(r, sub)
        subs.append({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k},
                     "verbs": SUB_VERBS[sub]})
    if subs:
        item["subresources"] = subs
    return item


def aggregated(legacy: bool) -> dict:
    """APIGroupDiscoveryList (apidiscovery.k8s.io/v2) for /api (legacy) or /apis."""
    items = []
    for g, vs in group_versions().items():
        if (g == "") != legacy:
            continue
        versions = [{"version": v, "freshness": "Current",
                     "resources": [_discovery_resource(r) for r in RESOURCES if (r.group, r.version) == (g, v)]}
                    for v in vs]
        items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": items}
