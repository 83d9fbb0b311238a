"""Names of every kernel object and process kubemu creates, all under one run prefix.

A run is identified by a 4-character id; every network namespace, link, OVS bridge and
process of the run carries `kubemu<id>` so `kubemu clean` can find exactly its own
objects and never deletes by broad name. Interface names respect the kernel's 15
character limit: `kubemu` (6) + id (4) + kind (1) + index (up to 4).
"""
from __future__ import annotations

import hashlib
import re
import secrets
import string

PREFIX = "kubemu"
RUN_ID_LEN = 4
_ALPHABET = string.ascii_lowercase + string.digits
RUN_ID_RE = re.compile(rf"^[a-z0-9]{{{RUN_ID_LEN}}}$")
IFNAMSIZ = 15
NETNS_NAME_MAX = 255          # `ip netns` names are files in /run/netns (NAME_MAX)
_HASH_CHARS = 20              # hex characters of the hash that ends a shortened name
# `kubemu<id>` as a whole token: not inside a longer word, and followed by the end, a
# delimiter (`-`, `_`, `/`, space, ...) or an interface name's kind letter and index
# (`kubemuq3zxp12`). Ids have a fixed length, so run `q3zx` never matches `q3zy`'s objects.
_OWNED = re.compile(rf"(?<![a-z0-9]){PREFIX}([a-z0-9]{{{RUN_ID_LEN}}})(?=$|[^a-z0-9]|[a-z][0-9]+(?![a-z0-9]))")


def new_run_id() -> str:
    """A fresh random run id, e.g. `q3zx`."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(RUN_ID_LEN))


class RunNames:
    """Every name derived from one run id."""

    def __init__(self, run_id: str) -> None:
        if not RUN_ID_RE.match(run_id):
            raise ValueError(f"bad run id {run_id!r}")
        self.run_id = run_id
        self.prefix = f"{PREFIX}{run_id}"          # kubemuq3zx

    # --- namespaces (no length limit beyond NAME_MAX) ---
    def node_netns(self, node: str) -> str:
        """Named netns (bind mount of the node's Mininet host) for `ip netns exec`."""
        return f"{self.prefix}-node-{node}"

    def host_netns(self, host: str) -> str:
        return f"{self.prefix}-host-{host}"

    def fabric_netns(self, machine_index: int = 0) -> str:
        """The machine's fabric namespace: its OVS bridge and the fabric ends of every link."""
        return f"{self.prefix}-fabric{machine_index}"

    def pod_netns(self, namespace: str, pod: str) -> str:
        """A pod's named netns: distinct for distinct (namespace, pod), within NETNS_NAME_MAX.

        The namespace (a DNS label, no '.') and the pod name are joined by '.', so no two
        pods share a name (`x-y/z` -> `...-x-y.z`, `x/y-z` -> `...-x.y-z`); a name too long
        is cut and ends in a hash of the pod's key, and is longer than any uncut name.
        """
        return fit_name(f"{self.prefix}-pod-{namespace}.{pod}", f"{namespace}/{pod}", NETNS_NAME_MAX)

    # --- fabric links and OVS objects (15 characters at most) ---
    def fabric_port(self, index: int) -> str:
        """Fabric end of a node's or host's eth0 veth (in the fabric namespace), an OVS port."""
        return self._ifname("p", index)

    def bridge(self, machine_index: int = 0) -> str:
        """The per-machine OVS bridge that is the VPC fabric."""
        return self._ifname("b", machine_index)

    def tunnel(self, index: int) -> str:
        return self._ifname("t", index)

    def ifname(self, kind: str, index: int) -> str:
        """A run-prefixed interface name of a kind letter and an index (e.g. `kubemuq3zxu1`)."""
        return self._ifname(kind, index)

    def _ifname(self, kind: str, index: int) -> str:
        name = f"{self.prefix}{kind}{index}"
        if len(name) > IFNAMSIZ:
            raise ValueError(f"interface name {name} is longer than {IFNAMSIZ} characters")
        return name

    def mininet_name(self, name: str) -> str:
        """Name given to a Mininet host: its shell's command line carries the prefix."""
        return f"{self.prefix}-{name}"


def fit_name(name: str, key: str, limit: int) -> str:
    """`name` if it is shorter than `limit` - 21 characters, else cut to `limit` with a hash of `key`.

    Uncut names stay shorter than cut ones, so a cut name never equals an uncut one.
    """
    if len(name) <= limit - _HASH_CHARS - 1:
        return name
    digest = hashlib.sha256(key.encode()).hexdigest()[:_HASH_CHARS]
    return f"{name[:limit - _HASH_CHARS - 1]}-{digest}"


def pod_veth_name(namespace: str, pod: str) -> str:
    """Node-side name of a pod's veth, like the real CNI: `veth` + 8 hex of a hash."""
    digest = hashlib.sha1(f"{namespace}/{pod}".encode()).hexdigest()[:8]
    return f"veth{digest}"


def is_kubemu_name(name: str) -> bool:
    """True for names created by some kubemu run."""
    return name.startswith(PREFIX) and RUN_ID_RE.match(name[len(PREFIX):len(PREFIX) + RUN_ID_LEN]) is not None


def valid_run_id(text: str) -> bool:
    """True for a well-formed run id (`q3zx`), never for an empty or partial one."""
    return RUN_ID_RE.match(text) is not None


def run_id_of(name: str) -> str | None:
    """The run owning a kernel object or directory name (`kubemuq3zx-node-a` -> `q3zx`), if any."""
    m = _OWNED.match(name)
    return m.group(1) if m else None


def owned_by(name: str, run_id: str) -> bool:
    """True when `name` is one of run `run_id`'s objects (exact id, never a prefix of it)."""
    return valid_run_id(run_id) and run_id_of(name) == run_id


def run_ids_in(text: str) -> set[str]:
    """Every run id named as a whole `kubemu<id>` token in a text, e.g. a command line."""
    return {m.group(1) for m in _OWNED.finditer(text)}
