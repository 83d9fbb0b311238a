#!/usr/bin/env python3
"""Regenerate emulator/kubeapi/protos.json: protobuf field tables of the kinds kubemu serves.

Reads Kubernetes' generated.proto files (k8s.io/api and k8s.io/apimachinery at the release
kubemu models) from a folder and keeps the messages reachable from the served kinds:
    scripts/kubeapi_protos.py PROTO_DIR
"""
from __future__ import annotations

import json
import pathlib
import re
import sys

ROOTS = ["k8s.io.api.core.v1." + k for k in ("Namespace", "Node", "Pod", "Service", "Secret", "Event",
                                              "ConfigMap")]
ROOTS += ["k8s.io.api.apps.v1.Deployment", "k8s.io.api.apps.v1.ReplicaSet",
          "k8s.io.api.discovery.v1.EndpointSlice", "k8s.io.api.networking.v1.NetworkPolicy",
          "k8s.io.api.networking.v1.Ingress", "k8s.io.api.coordination.v1.Lease",
          "k8s.io.api.autoscaling.v1.Scale", "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions",
          "k8s.io.apimachinery.pkg.runtime.Unknown"]
FIELD = re.compile(r"^\s*(optional|repeated)?\s*(map<\s*(\S+)\s*,\s*(\S+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)")


def parse(text: str) -> dict[str, dict[str, list]]:
    """message full name -> {field number: [name, type, label]} (label: optional, repeated, map)."""
    pkg = re.search(r"^package\s+([\w.]+);", text, re.M).group(1)
    out: dict[str, dict[str, list]] = {}
    current = None
    for line in text.splitlines():
        line = line.split("//")[0]
        m = re.match(r"^message\s+(\w+)\s*{", line)
        if m:
            current = out.setdefault(f"{pkg}.{m.group(1)}", {})
            continue
        if line.startswith("}"):
            current = None
            continue
        m = FIELD.match(line)
        if current is None or m is None:
            continue
        label, typ, key, val, name, num = m.groups()
        if key:
            current[num] = [name, _qualify(val, pkg), f"map:{key}"]
        else:
            current[num] = [name, _qualify(typ, pkg), label or "optional"]
    return out


SCALARS = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float", "fixed64"}


def _qualify(typ: str, pkg: str) -> str:
    typ = typ.lstrip(".")
    return typ if typ in SCALARS or "." in typ else f"{pkg}.{typ}"


def main(folder: str) -> None:
    messages: dict[str, dict[str, list]] = {}
    for f in sorted(pathlib.Path(folder).glob("*.proto")):
        messages.update(parse(f.read_text()))
    keep, todo = {}, list(ROOTS)
    while todo:
        name = todo.pop()
        if name in keep or name not in messages:
            continue
        keep[name] = messages[name]
        todo += [f[1] for f in messages[name].values() if f[1] not in SCALARS]
    out = pathlib.Path(__file__).resolve().parent.parent / "emulator" / "kubeapi" / "protos.json"
    out.write_text(json.dumps(keep, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{len(keep)} messages -> {out}")


if __name__ == "__main__":
    main(sys.argv[1])
