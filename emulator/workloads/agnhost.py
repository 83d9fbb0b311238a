"""Read a container's agnhost command line into a typed workload config.

Manifests that use the real agnhost image (`registry.k8s.io/e2e-test-images/agnhost`),
as `args` or as a `command` starting with `/agnhost`, run kubemu's built-in server
instead; this module decides what that server must do. Subcommands: netexec,
serve-hostname, porter, pause (servers) and connect (a one-shot check, connect.py).
Flags follow agnhost's Cobra/pflag syntax (`--flag=value` or `--flag value`).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

from emulator.errors import ConfigError

log = logging.getLogger(__name__)

NETEXEC_FLAGS = {"http-port", "udp-port", "sctp-port", "http-override", "udp-listen-addresses",
                 "tls-cert-file", "tls-private-key-file", "delay-shutdown"}
SERVE_HOSTNAME_FLAGS = {"port", "http", "udp", "tcp", "close"}
CONNECT_FLAGS = {"timeout", "protocol", "udp-data", "sctp-data"}
SERVE_HOSTNAME_SHUTDOWN_DELAY = 60   # serve-hostname keeps serving 60 s after SIGTERM
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
    tcp_port: int | None = None           # serve-hostname --tcp: the hostname, raw, then close
    udp_hostname: bool = False            # serve-hostname --udp: every datagram gets the hostname
    porter: tuple[tuple[int, str], ...] = ()   # porter: (port, body) from SERVE_PORT_<port>
    delay_shutdown: int = 0               # seconds served after SIGTERM (/readyz failing)
    fixed_body: str | None = None         # every HTTP request answered with this (one porter port)

    @property
    def serves(self) -> bool:
        """True when the container listens on at least one port."""
        return bool(self.ports)

    @property
    def ports(self) -> list[tuple[str, int]]:
        """(protocol, port) pairs the container listens on, e.g. [("TCP", 8080), ("UDP", 8081)]."""
        out: list[tuple[str, int]] = []
        if self.kind != "pause":
            if self.http_port is not None:
                out.append(("TCP", self.http_port))
            if self.tcp_port is not None:
                out.append(("TCP", self.tcp_port))
            if self.udp_port is not None:
                out.append(("UDP", self.udp_port))
            out.extend(("TCP", port) for port, _ in self.porter)
        return out


@dataclass(frozen=True)
class ConnectConfig:
    """`agnhost connect HOST:PORT [--timeout D] [--protocol tcp|udp|sctp] [--udp-data S]`."""

    dest: str
    timeout: float = 0.0                  # 0: no timeout of its own (the caller's)
    protocol: str = "tcp"
    udp_data: str = "hostname"


def agnhost_argv(container: dict) -> list[str] | None:
    """The agnhost arguments (subcommand first) when the container runs agnhost, else None:
    `command: [/agnhost, ...]` (or `agnhost`) with any image, or the agnhost image with args only."""
    cmd = [str(a) for a in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if cmd:
        return cmd[1:] + args if os.path.basename(cmd[0]) == "agnhost" else None
    return args if "agnhost" in container.get("image", "") else None


def go_duration(raw: str, name: str, field_: str | None) -> float:
    """Go's time.ParseDuration for the usual forms (`5s`, `500ms`, `1m30s`, `0`) in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    if raw in ("0", ""):
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise WorkloadArgsError(f"--{name}={raw!r} is not a Go duration (e.g. 5s, 500ms)", field=field_)
    return sum(float(n) * units[u] for n, u in parts)


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


def parse_netexec_args(args: list[str], field: str | None = None,
                       env: dict[str, str] | None = None) -> NetexecConfig:
    """Parse an agnhost server command line (`[/agnhost] netexec --http-port=8080 ...`,
    `serve-hostname`, `porter` (ports from `env`), `pause`).

    `field` names where the arguments came from (e.g. `spec.containers[0].args`) for errors.
    """
    argv = list(args)
    if argv and os.path.basename(argv[0]) == "agnhost":
        argv = argv[1:]
    if not argv:
        raise WorkloadArgsError("agnhost needs a subcommand (netexec, serve-hostname, porter, "
                                "connect or pause)", field=field)
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
            log.info("netexec --sctp-port ignored: kubemu serves no SCTP")
        addrs = tuple(a.strip() for a in flags.get("udp-listen-addresses", "").split(",") if a.strip())
        delay = _int(flags.get("delay-shutdown", "0"), "delay-shutdown", field)
        return NetexecConfig(kind="netexec", http_port=_port(flags, "http-port", 8080, field),
                             udp_port=_port(flags, "udp-port", 8081, field),
                             http_override=flags.get("http-override") or None,
                             udp_listen_addresses=tuple(sorted(set(addrs))),
                             delay_shutdown=max(0, delay))
    if sub == "serve-hostname":
        return _serve_hostname(rest, field)
    if sub == "porter":
        return _porter(rest, env or {}, field)
    if sub == "connect":
        raise WorkloadArgsError("agnhost connect is a one-shot command, not a server", field=field)
    raise WorkloadArgsError(f"agnhost subcommand {sub!r} is not supported by kubemu "
                            "(netexec, serve-hostname, porter, connect, pause)", field=field)


def _int(raw: str, name: str, field_: str | None) -> int:
    """An integer flag's value."""
    try:
        return int(raw)
    except ValueError:
        raise WorkloadArgsError(f"--{name}={raw!r} is not an integer", field=field_) from None


def _serve_hostname(rest: list[str], field_: str | None) -> NetexecConfig:
    """serve-hostname: the hostname over HTTP (default) or raw TCP and/or UDP, on --port."""
    flags = _split_flags(rest, SERVE_HOSTNAME_FLAGS, field_)
    tcp = _bool(flags.get("tcp", "false"), "tcp", field_)
    udp = _bool(flags.get("udp", "false"), "udp", field_)
    http = _bool(flags.get("http", "true"), "http", field_)
    if http and (tcp or udp):
        raise WorkloadArgsError("serve-hostname cannot serve TCP/UDP mode and HTTP mode at the "
                                "same time (add --http=false)", field=field_)
    port = _port(flags, "port", 9376, field_)
    return NetexecConfig(kind="serve-hostname", http_port=port if http else None,
                         udp_port=port if udp else None, tcp_port=port if tcp else None,
                         udp_hostname=udp, http_override="/hostname" if http else None,
                         close_each_request=_bool(flags.get("close", "false"), "close", field_),
                         delay_shutdown=SERVE_HOSTNAME_SHUTDOWN_DELAY)


def _porter(rest: list[str], env: dict[str, str], field_: str | None) -> NetexecConfig:
    """porter: HTTP on every port named by an env var SERVE_PORT_<port>, answering its value."""
    if rest:
        raise WorkloadArgsError(f"porter takes no arguments, got {rest}", field=field_)
    ports = []
    for k, v in sorted(env.items()):
        if k.startswith("SERVE_TLS_PORT_"):
            raise WorkloadArgsError(f"porter {k} (HTTPS) is not supported by kubemu", field=field_)
        if k.startswith("SERVE_SCTP_PORT_"):
            log.info("porter %s ignored: kubemu serves no SCTP", k)
        elif k.startswith("SERVE_PORT_"):
            num = k[len("SERVE_PORT_"):]
            if not num.isdigit() or not 0 < int(num) <= 65535:
                raise WorkloadArgsError(f"porter env {k}: not a port number", field=field_)
            ports.append((int(num), v))
    if not ports:
        raise WorkloadArgsError("porter needs env SERVE_PORT_<port>=<answer>", field=field_)
    return NetexecConfig(kind="porter", http_port=None, udp_port=None, porter=tuple(ports))


def parse_connect_args(args: list[str], field: str | None = None) -> ConnectConfig:
    """Parse `[/agnhost] connect HOST:PORT [--timeout D] [--protocol P] [--udp-data S]`."""
    argv = list(args)
    if argv and os.path.basename(argv[0]) == "agnhost":
        argv = argv[1:]
    if not argv or argv[0] != "connect":
        raise WorkloadArgsError("not an agnhost connect command", field=field)
    positional = [a for a in argv[1:] if not a.startswith("-")]
    flag_args, dest, skip = [], None, False
    for i, a in enumerate(argv[1:]):   # the one positional may sit among the flags
        if skip:
            flag_args.append(a)
            skip = False
        elif a.startswith("-"):
            flag_args.append(a)
            skip = "=" not in a
        elif dest is None:
            dest = a
        else:
            raise WorkloadArgsError(f"connect takes one HOST:PORT, got {positional}", field=field)
    if dest is None:
        raise WorkloadArgsError("connect needs HOST:PORT", field=field)
    flags = _split_flags(flag_args, CONNECT_FLAGS, field)
    protocol = flags.get("protocol", "tcp") or "tcp"
    if protocol not in ("tcp", "udp", "sctp"):
        raise WorkloadArgsError(f"connect --protocol={protocol!r}: tcp, udp or sctp", field=field)
    return ConnectConfig(dest=dest, timeout=go_duration(flags.get("timeout", "0"), "timeout", field),
                         protocol=protocol, udp_data=flags.get("udp-data", "hostname"))
