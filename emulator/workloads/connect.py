"""agnhost `connect`, built in: one TCP/UDP connection attempt from a pod's namespace.

As upstream's agnhost connect: exit 0 on success; on failure exit 1 with a line on
stderr starting with a fixed category a test can check: `UNKNOWN` (bad arguments),
`TIMEOUT`, `DNS`, `REFUSED`, `OTHER`. Names resolve through the pod's own resolv.conf
(the cluster DNS), from inside the pod's namespace.
"""
from __future__ import annotations

import errno
import ipaddress
import socket

import dns.exception
import dns.resolver

from emulator.kernel import netns
from emulator.workloads.agnhost import ConnectConfig

DEFAULT_CAP = 30.0   # no --timeout: bounded by the caller's (probe or exec) timeout, else this


def split_host_port(dest: str) -> tuple[str, int]:
    """Go's net.SplitHostPort plus a numeric port; ValueError with Go-like text otherwise."""
    if dest.startswith("["):
        host, sep, port = dest[1:].partition("]:")
        if not sep:
            raise ValueError(f"address {dest}: missing port in address")
    else:
        host, sep, port = dest.rpartition(":")
        if not sep:
            raise ValueError(f"address {dest}: missing port in address")
        if ":" in host:
            raise ValueError(f"address {dest}: too many colons in address")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address {dest}: invalid port")
    return host, int(port)


def read_resolv_conf(path: str | None) -> tuple[list[str], list[str]]:
    """(nameservers, search domains) of a resolv.conf; empty when unreadable."""
    servers, search = [], []
    try:
        with open(path or "/nonexistent") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    servers.append(words[1])
                elif words and words[0] in ("search", "domain"):
                    search = words[1:]
    except OSError:
        pass
    return servers, search


def resolve(host: str, resolv_conf: str | None, timeout: float) -> str:
    """An IPv4 address for `host` (an address, or a name through the pod's DNS); OSError on failure."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host in ("", "localhost"):
        return "127.0.0.1"
    servers, search = read_resolv_conf(resolv_conf)
    if not servers:
        raise OSError(f"lookup {host}: no nameserver in the pod's resolv.conf")
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.lifetime, r.timeout = servers, timeout, min(timeout, 2.0)
    names = [host] if host.endswith(".") or host.count(".") >= 5 else \
        [f"{host}.{d}" for d in search] + [host]
    for name in names:
        try:
            return str(r.resolve(name, "A", search=False)[0])
        except (dns.exception.DNSException, ValueError):
            continue
    raise OSError(f"lookup {host} on {servers[0]}:53: no such host")


def connect(cfg: ConnectConfig, netns_path: str | None, resolv_conf: str | None,
            cap: float = DEFAULT_CAP) -> tuple[int, str]:
    """Run the connection attempt (in `netns_path` when given): (exit code, stderr text)."""
    timeout = min(cfg.timeout, cap) if cfg.timeout > 0 else cap
    if cfg.protocol == "sctp":
        return 1, "OTHER: kubemu has no SCTP\n"
    try:
        host, port = split_host_port(cfg.dest)
    except ValueError as e:
        return 1, f"UNKNOWN: {e}\n"
    if netns_path is None:
        return _attempt(cfg, host, port, resolv_conf, timeout)
    with netns.entered(netns_path):
        return _attempt(cfg, host, port, resolv_conf, timeout)


def _attempt(cfg: ConnectConfig, host: str, port: int, resolv_conf: str | None,
             timeout: float) -> tuple[int, str]:
    """The attempt itself, in the current thread's namespace."""
    try:
        ip = resolve(host, resolv_conf, timeout)
    except OSError as e:
        return 1, f"DNS: {e}\n"
    kind = socket.SOCK_STREAM if cfg.protocol == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.settimeout(timeout)
        try:
            s.connect((ip, port))
            if cfg.protocol == "tcp":
                return 0, ""
            s.send(f"{cfg.udp_data}\n".encode())
            if not s.recv(1024):
                return 1, ("OTHER: No data received from the server. Cannot guarantee the server "
                           "received the request.\n")
            return 0, ""
        except socket.timeout:
            return 1, "TIMEOUT\n" if cfg.protocol == "tcp" else f"TIMEOUT: read udp {ip}:{port}: i/o timeout\n"
        except ConnectionRefusedError as e:
            return 1, "REFUSED\n" if cfg.protocol == "tcp" else f"REFUSED: {e}\n"
        except OSError as e:
            if e.errno == errno.ECONNREFUSED:
                return 1, "REFUSED\n"
            return 1, (f"OTHER: dial tcp {ip}:{port}: {e.strerror or e}\n" if cfg.protocol == "tcp"
                       else f"UNKNOWN: {e}\n")
