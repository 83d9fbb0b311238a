"""Kubernetes protobuf request bodies (`kubectl create deployment|service|secret|namespace` send them),
decoded to the JSON form with the field tables in protos.json (scripts/kubeapi_protos.py makes them).

Go's protobuf marshals zero values of non-pointer fields; JSON omits them (omitempty), so
empty strings, zeros, false and empty containers are dropped, as the JSON body would have.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import importlib.resources
import json
import struct
from typing import Any

from emulator.kubeapi.wire import StatusError

MAGIC = b"k8s\x00"
META = "k8s.io.apimachinery.pkg.apis.meta.v1."
PACKAGES = {"": "k8s.io.api.core.v1", "apps": "k8s.io.api.apps.v1", "networking.k8s.io": "k8s.io.api.networking.v1",
            "discovery.k8s.io": "k8s.io.api.discovery.v1", "coordination.k8s.io": "k8s.io.api.coordination.v1",
            "autoscaling": "k8s.io.api.autoscaling.v1", "meta.k8s.io": META.rstrip(".")}
KEEP_ZERO = {"replicas", "port", "exitCode", "value"}    # pointer fields where 0 is meaningful


@functools.lru_cache(maxsize=1)
def tables() -> dict[str, dict[str, list]]:
    """message -> {field number: [json name, type, label]}."""
    return json.loads((importlib.resources.files("emulator.kubeapi") / "protos.json").read_text())


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, raw value) of one message."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wt == 5:
            v, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, wt, v))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(typ: str, v: Any) -> Any:
    if typ == "string":
        return bytes(v).decode()
    if typ == "bytes":
        return base64.b64encode(bytes(v)).decode()
    if typ == "bool":
        return bool(v)
    if typ in ("int32", "int64"):
        return _signed(v)
    if typ in ("double", "fixed64"):
        return struct.unpack("<d", v.to_bytes(8, "little"))[0]
    return v


def _special(typ: str, buf: bytes) -> tuple[bool, Any]:
    """Types whose JSON form is not an object of their fields."""
    if typ in (META + "Time", META + "MicroTime"):
        f = {n: v for n, _, v in _fields(buf)}
        if not f.get(1) and not f.get(2):
            return True, None
        t = dt.datetime.fromtimestamp(_signed(f.get(1, 0)) + f.get(2, 0) / 1e9, dt.timezone.utc)
        return True, t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if typ.endswith("MicroTime") else "%Y-%m-%dT%H:%M:%SZ")
    if typ == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        f = {n: v for n, _, v in _fields(buf)}
        return True, bytes(f.get(3, b"")).decode() if f.get(1) == 1 else _signed(f.get(2, 0))
    if typ == "k8s.io.apimachinery.pkg.api.resource.Quantity":
        return True, bytes(dict((n, v) for n, _, v in _fields(buf)).get(1, b"")).decode()
    if typ in ("k8s.io.apimachinery.pkg.runtime.RawExtension", META + "FieldsV1"):
        raw = bytes(dict((n, v) for n, _, v in _fields(buf)).get(1, b""))
        return True, json.loads(raw) if raw else None
    if typ == META + "Duration":
        ns = _signed(dict((n, v) for n, _, v in _fields(buf)).get(1, 0))
        return True, f"{ns / 1e9:g}s"
    return False, None


def _empty(name: str, v: Any) -> bool:
    if v is None or v == "" or v == [] or v == {}:
        return True
    return (v is False or (v == 0 and not isinstance(v, bool))) and name not in KEEP_ZERO


def decode_message(typ: str, buf: bytes) -> Any:
    """One message as its JSON value."""
    special, value = _special(typ, buf)
    if special:
        return value
    table = tables().get(typ)
    if table is None:
        raise StatusError(415, f"protobuf message {typ} is not known to kubemu", "UnsupportedMediaType")
    out: dict[str, Any] = {}
    for num, wt, v in _fields(buf):
        spec = table.get(str(num))
        if spec is None:
            continue
        name, ftyp, label = spec
        if label.startswith("map:"):
            entry = {n: x for n, _, x in _fields(v)}
            key = _scalar(label[4:], entry.get(1, b"" if label[4:] == "string" else 0))
            val = entry.get(2, b"")
            out.setdefault(name, {})[key] = _scalar(ftyp, val) if ftyp in _SCALAR else decode_message(ftyp, val)
            continue
        if ftyp in _SCALAR:
            if wt == 2 and ftyp not in ("string", "bytes"):      # packed repeated scalars
                vals, i = [], 0
                while i < len(v):
                    x, i = _varint(v, i)
                    vals.append(_scalar(ftyp, x))
                out.setdefault(name, []).extend(vals)
                continue
            value = _scalar(ftyp, v)
        else:
            value = decode_message(ftyp, v)
        if label == "repeated":
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return {k: v for k, v in out.items() if not _empty(k, v)}


_SCALAR = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float", "fixed64"}


def decode_body(raw: bytes) -> dict:
    """A `application/vnd.kubernetes.protobuf` body (magic + runtime.Unknown) as a JSON object."""
    if not raw.startswith(MAGIC):
        raise StatusError(400, "protobuf body without the k8s magic prefix")
    try:
        env = {n: v for n, _, v in _fields(raw[len(MAGIC):])}
        type_meta = {n: bytes(v).decode() for n, _, v in _fields(env.get(1, b""))}
        api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
        group = api_version.rpartition("/")[0]
        package = PACKAGES.get(group)
        if package is None:
            raise StatusError(415, f"protobuf bodies of {api_version} are not supported", "UnsupportedMediaType")
        obj = decode_message(f"{package}.{kind}", bytes(env.get(2, b"")))
    except (ValueError, UnicodeDecodeError, IndexError) as e:
        raise StatusError(400, f"the body of the request could not be decoded: {e}") from None
    return {"apiVersion": api_version, "kind": kind, **obj}
