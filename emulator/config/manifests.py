"""Kubernetes manifests: multi-document files or inline objects, validated one by one.

Core kinds are checked against the official OpenAPI schemas bundled in the
`kubernetes-validate` package (strict: unknown fields are errors, as with
`kubectl --validate=strict`); kinds those schemas lack use the pydantic models of
`extra_kinds`. Objects stay plain dicts (namespace defaulted) in `ManifestObject`, which
keeps each field's source line for later error messages.
"""
from __future__ import annotations

import functools
import importlib.resources
import json
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pydantic
from referencing import Registry, Resource
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from emulator.config.extra_kinds import BackendConfig, IngressV1beta1, SecurityPolicy
from emulator.config.source import Loc, YamlDoc, format_path, read_yaml_all, validation_error
from emulator.config.types import is_dns_label, is_dns_subdomain
from emulator.errors import ConfigError

KUBERNETES_VERSION = "1.33"
OPENAPI = "openapi"
SUPPORTED_KINDS: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): OPENAPI,
    ("v1", "Pod"): OPENAPI,
    ("v1", "Service"): OPENAPI,
    ("v1", "Secret"): OPENAPI,
    ("apps/v1", "Deployment"): OPENAPI,
    ("networking.k8s.io/v1", "NetworkPolicy"): OPENAPI,
    ("networking.k8s.io/v1", "Ingress"): OPENAPI,
    ("networking.k8s.io/v1beta1", "Ingress"): IngressV1beta1,
    ("cloud.google.com/v1", "BackendConfig"): BackendConfig,
    ("kubemu.io/v1", "SecurityPolicy"): SecurityPolicy,
}
CLUSTER_SCOPED_KINDS = {"Namespace"}
DNS_LABEL_NAMED_KINDS = {"Namespace", "Service"}
DEFAULT_NAMESPACE = "default"


@dataclass
class ManifestObject:
    """One Kubernetes object as a plain dict, with where it was written."""

    obj: dict[str, Any]
    file: str
    line: int
    prefix: Loc = ()                                   # field path of the object in its file
    lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """`Service`, `Deployment`, ..."""
        return self.obj["kind"]

    @property
    def api_version(self) -> str:
        """`v1`, `apps/v1`, ..."""
        return self.obj["apiVersion"]

    @property
    def name(self) -> str:
        """metadata.name."""
        return self.obj["metadata"]["name"]

    @property
    def namespace(self) -> str | None:
        """metadata.namespace (None for cluster-scoped kinds)."""
        return self.obj["metadata"].get("namespace")

    @property
    def key(self) -> tuple[str, str | None, str]:
        """(kind, namespace, name): unique among a scenario's objects."""
        return (self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        """`Service default/web`, for messages."""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    @property
    def where(self) -> str:
        """`file:line`, for messages."""
        return f"{self.file}:{self.line}"

    def line_of(self, loc: Loc) -> int:
        """Source line of a field of the object (the nearest written parent if it is absent)."""
        for end in range(len(loc), 0, -1):
            line = self.lines.get(format_path(loc[:end]))
            if line is not None:
                return line
        return self.line

    def error(self, loc: Loc, message: str) -> ConfigError:
        """A ConfigError pointing at a field of this object."""
        return ConfigError(message, self.file, self.line_of(loc), format_path(self.prefix + loc) or None)


def _field_lines(doc: YamlDoc) -> dict[str, int]:
    """format_path -> 1-based line for every key and item of a document."""
    out: dict[str, int] = {}

    def walk(node: Any, loc: Loc) -> None:
        if isinstance(node, CommentedMap):
            for key, value in node.items():
                out[format_path(loc + (str(key),))] = node.lc.key(key)[0] + 1
                walk(value, loc + (str(key),))
        elif isinstance(node, CommentedSeq):
            for i, value in enumerate(node):
                out[format_path(loc + (i,))] = node.lc.item(i)[0] + 1
                walk(value, loc + (i,))

    walk(doc.root, ())
    return out


def load_manifest_file(file: str) -> list[ManifestObject]:
    """Every object of a multi-document manifest file, each validated on its own."""
    return [validate_object(doc) for doc in read_yaml_all(file)]


def validate_object(doc: YamlDoc, prefix: Loc = ()) -> ManifestObject:
    """Check one object (kind, schema, names) and return it with its namespace defaulted."""
    root = doc.root
    if not isinstance(root, dict):
        raise ConfigError("a manifest must be a mapping (a Kubernetes object)", doc.file,
                          doc.line, format_path(prefix) or None)
    for key in ("apiVersion", "kind"):
        if key not in root:
            raise _err(doc, prefix, (key,), "required field missing")
        if not isinstance(root[key], str):
            raise _err(doc, prefix, (key,), "must be a string")
    api_version, kind = root["apiVersion"], root["kind"]
    schema = SUPPORTED_KINDS.get((api_version, kind))
    if schema is None:
        raise _err(doc, prefix, ("kind",), f"unsupported kind {api_version} {kind}; kubemu knows "
                   + ", ".join(f"{a} {k}" for a, k in SUPPORTED_KINDS))
    obj = doc.plain()
    null_item = _first_null_item(obj)
    if null_item is not None:
        raise _err(doc, prefix, null_item, "empty (null) list item")
    if schema == OPENAPI:
        _check_openapi(obj, doc, prefix)
    else:
        try:
            schema.model_validate(obj)
        except pydantic.ValidationError as exc:
            raise validation_error(exc, doc, prefix, schema) from None
    _check_metadata(obj, doc, prefix)
    if kind not in CLUSTER_SCOPED_KINDS:
        obj["metadata"].setdefault("namespace", DEFAULT_NAMESPACE)
    return ManifestObject(obj, doc.file, doc.line or 1, prefix, _field_lines(doc))


def _first_null_item(data: Any, loc: Loc = ()) -> Loc | None:
    """Path of the first null list item (the API server rejects them; schemas allow them)."""
    if isinstance(data, dict):
        items = [(k, v) for k, v in data.items()]
    elif isinstance(data, list):
        items = list(enumerate(data))
    else:
        return None
    for key, value in items:
        if value is None and isinstance(data, list):
            return loc + (key,)
        found = _first_null_item(value, loc + (key,))
        if found is not None:
            return found
    return None


def _err(doc: YamlDoc, prefix: Loc, loc: Loc, message: str) -> ConfigError:
    """A ConfigError at `loc` inside an object whose own path in the file is `prefix`."""
    return ConfigError(message, doc.file, doc.line_of(loc), format_path(prefix + loc) or None)


# YAML reads `1e9` and `3.0` as floats; the API server refuses them where an integer goes.
_WHOLE_NUMBERS = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
_StrictValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_WHOLE_NUMBERS)


@functools.lru_cache(maxsize=None)
def _openapi_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """A cached strict validator for one kind, from the schemas bundled in kubernetes-validate."""
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / \
        f"v{KUBERNETES_VERSION}.0-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)   # networking.k8s.io/v1 -> networking-v1
    schema = json.loads((folder / f"{kind.lower()}-{group}.json").read_text(encoding="utf-8"))
    definitions = json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return _StrictValidator(schema, registry=registry)


def _check_openapi(obj: dict[str, Any], doc: YamlDoc, prefix: Loc) -> None:
    """Validate against the official OpenAPI schema (strict); raise the first error."""
    try:
        validator = _openapi_validator(obj["apiVersion"], obj["kind"])
    except FileNotFoundError:
        raise _err(doc, prefix, ("kind",), f"no bundled schema for {obj['apiVersion']} {obj['kind']} "
                   f"(Kubernetes {KUBERNETES_VERSION})") from None
    exc = next(iter(validator.iter_errors(obj)), None)
    if exc is None:
        return
    loc: Loc = tuple(exc.absolute_path)
    message = exc.message
    if exc.validator == "additionalProperties" and isinstance(exc.instance, dict):
        known = set(exc.schema.get("properties", {}))
        extra = sorted(k for k in exc.instance if k not in known)
        if extra:
            loc += (extra[0],)
            message = f"unknown field (allowed: {', '.join(sorted(known))})"
    elif exc.validator == "required" and isinstance(exc.instance, dict):
        missing = [k for k in exc.validator_value if k not in exc.instance]
        if missing:
            loc += (missing[0],)
            message = "required field missing"
    raise _err(doc, prefix, loc, message)


def _check_metadata(obj: dict[str, Any], doc: YamlDoc, prefix: Loc) -> None:
    """metadata.name present and a valid DNS name; namespace a DNS label."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise _err(doc, prefix, ("metadata",), "metadata with a name is required")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise _err(doc, prefix, ("metadata", "name"), "required field missing")
    if obj["kind"] in DNS_LABEL_NAMED_KINDS:
        if not is_dns_label(name) or (obj["kind"] == "Service" and not name[0].isalpha()):
            raise _err(doc, prefix, ("metadata", "name"),
                       f"{name!r} is not a valid {obj['kind']} name (a DNS label: lowercase "
                       "letters, digits and '-', at most 63 characters)")
    elif not is_dns_subdomain(name):
        raise _err(doc, prefix, ("metadata", "name"),
                   f"{name!r} is not a valid name (lowercase letters, digits, '-' and '.')")
    namespace = meta.get("namespace")
    if obj["kind"] in CLUSTER_SCOPED_KINDS and namespace is not None:
        raise _err(doc, prefix, ("metadata", "namespace"), f"a {obj['kind']} has no namespace")
    if namespace is not None and not is_dns_label(namespace):
        raise _err(doc, prefix, ("metadata", "namespace"), f"{namespace!r} is not a valid namespace")
