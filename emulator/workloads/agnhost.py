"""Read a container's agnhost command line into a typed workload config.

Manifests that use the real agnhost image (`registry.k8s.io/e2e-test-images/agnhost`)
run kubemu's built-in server instead; this module decides what that server must do.
Flags follow agnhost's Cobra/pflag syntax (`--flag=value` or `--flag value`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from emulator.errors import ConfigError

NETEXEC_FLAGS = {"http-port", "udp-port", "sctp-port", "http-override", "udp-listen-addresses",
                 "tls-cert-file", "tls-private-key-file", "delay-shutdown"}
SERVE_HOSTNAME_FLAGS = {"port", "http", "udp", "tcp", "close"}
_BOOL_FLAGS = {"http", "udp", "tcp", "close"}


class WorkloadArgsError(ConfigError):
    """A container command line the built-in agnhost server cannot run."""


@dataclass(frozen=True)
class NetexecConfig:
    """What the built-in server serves for one container; `kind="pause"` serves nothing."""

    kind: str = "netexec"                 # "netexec" | "serve-hostname" | "pause"
    http_port: int | None = 8080          # None: no HTTP server
    udp_port: int | None = 8081           # None: no UDP server (agnhost's --udp-port=-1)
    http_override: str | None = None      # path and query answered for every request
    udp_listen_addresses: tuple[str, ...] = field(default_factory=tuple)  # empty: any address
    close_each_request: bool = False      # serve-hostname --close

    @property
    def serves(self) -> bool:
        """True when the container listens on at least one port."""
        return self.kind != "pause" and (self.http_port is not None or self.udp_port is not None)

    @property
    def ports(self) -> list[tuple[str, int]]:
        """(protocol, port) pairs the container listens on, e.g. [("TCP", 8080), ("UDP", 8081)]."""
        out: list[tuple[str, int]] = []
        if self.kind != "pause":
            if self.http_port is not None:
                out.append(("TCP", self.http_port))
            if self.udp_port is not None:
                out.append(("UDP", self.udp_port))
        return out


def _split_flags(argv: list[str], known: set[str], field_: str | None) -> dict[str, str]:
    """`--a=1 --b 2 --flag` -> {"a": "1", "b": "2", "flag": "true"}; unknown flags are errors."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg in ("-", "--"):
            raise WorkloadArgsError(f"unexpected argument {arg!r}", field=field_)
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in known:
            raise WorkloadArgsError(f"unknown flag --{name} (kubemu knows: "
                                    f"{', '.join(sorted(known))})", field=field_)
        if not eq:
            if name in _BOOL_FLAGS:
                value = "true"
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise WorkloadArgsError(f"flag --{name} needs a value", field=field_)
        out[name] = value
        i += 1
    return out


def _port(flags: dict[str, str], name: str, default: int, field_: str | None) -> int | None:
    """A port flag's value; -1 means disabled (None)."""
    raw = flags.get(name)
    if raw is None:
        return default if default >= 0 else None
    try:
        port = int(raw)
    except ValueError:
        raise WorkloadArgsError(f"--{name}={raw!r} is not an integer", field=field_) from None
    if port == -1:
        return None
    if not 0 <= port <= 65535:
        raise WorkloadArgsError(f"--{name}={port} is out of range 0..65535", field=field_)
    return port


def _bool(raw: str, name: str, field_: str | None) -> bool:
    """Go's strconv.ParseBool subset used by pflag."""
    if raw.lower() in ("1", "t", "true"):
        return True
    if raw.lower() in ("0", "f", "false"):
        return False
    raise WorkloadArgsError(f"--{name}={raw!r} is not a boolean", field=field_)


def parse_netexec_args(args: list[str], field: str | None = None) -> NetexecConfig:
    """Parse an agnhost command line (`[/agnhost] netexec --http-port=8080 ...`, `pause`, ...).

    `field` names where the arguments came from (e.g. `spec.containers[0].args`) for errors.
    """
    argv = list(args)
    if argv and os.path.basename(argv[0]) == "agnhost":
        argv = argv[1:]
    if not argv:
        raise WorkloadArgsError("agnhost needs a subcommand (netexec, serve-hostname or pause)",
                                field=field)
    sub, rest = argv[0], argv[1:]
    if sub == "pause":
        if rest:
            raise WorkloadArgsError(f"pause takes no arguments, got {rest}", field=field)
        return NetexecConfig(kind="pause", http_port=None, udp_port=None)
    if sub == "netexec":
        flags = _split_flags(rest, NETEXEC_FLAGS, field)
        if flags.get("tls-cert-file"):
            raise WorkloadArgsError("netexec --tls-cert-file (HTTPS) is not supported by kubemu",
                                    field=field)
        if _port(flags, "sctp-port", -1, field) is not None:
            raise WorkloadArgsError("netexec --sctp-port is not supported by kubemu", field=field)
        addrs = tuple(a.strip() for a in flags.get("udp-listen-addresses", "").split(",") if a.strip())
        return NetexecConfig(kind="netexec", http_port=_port(flags, "http-port", 8080, field),
                             udp_port=_port(flags, "udp-port", 8081, field),
                             http_override=flags.get("http-override") or None,
                             udp_listen_addresses=tuple(sorted(set(addrs))))
    if sub == "serve-hostname":
        flags = _split_flags(rest, SERVE_HOSTNAME_FLAGS, field)
        if _bool(flags.get("tcp", "false"), "tcp", field) or _bool(flags.get("udp", "false"), "udp", field):
            raise WorkloadArgsError("serve-hostname --tcp/--udp is not supported by kubemu "
                                    "(only --http)", field=field)
        return NetexecConfig(kind="serve-hostname", http_port=_port(flags, "port", 9376, field),
                             udp_port=None, http_override="/hostname",
                             close_each_request=_bool(flags.get("close", "false"), "close", field))
    raise WorkloadArgsError(f"agnhost subcommand {sub!r} is not supported by kubemu "
                            "(netexec, serve-hostname, pause)", field=field)
