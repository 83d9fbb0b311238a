"""Load generators of a traffic step other than the model shell: pacing, tcp, udp, ping, iperf3.

`Pacing` holds what every request/probe generator shares (how many, for how long, how
fast); each load model adds where the traffic goes. Targets are `HOST:PORT` strings
that may hold placeholders (`{clusterip:web}:80`, `{node:n1}:{nodeport:web}`) and DNS
names; `target_problems` checks them against the scenario like HTTP URLs.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from emulator.config import limits
from emulator.config.templates import render_dummy
from emulator.config.topology import StrictModel
from emulator.config.types import Duration, NoBool, WholeNumber

PositiveInt = Annotated[int, WholeNumber, Field(ge=1)]
PositiveFloat = Annotated[float, NoBool, Field(gt=0)]
DEFAULT_REQUESTS = 100


_HOST_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$")
_URL_RE = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+$")   # RFC 3986 characters only


def host_problem(host: str) -> str | None:
    """Why `host` (placeholders rendered) is not a DNS name or an IP address, or None.

    Targets end up as arguments of real tools (ping, iperf3): a value starting with '-',
    holding whitespace or shell characters is refused here, not passed on.
    """
    if not host:
        return "has no host"
    if host.startswith("-"):
        return f"host {host!r} starts with '-' (it would be read as an option)"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if len(host) > 253 or not _HOST_RE.match(host):
        return (f"host {host!r} is not a DNS name, an IP address or a placeholder "
                "(letters, digits, '-', '_' and '.' only)")
    return None


def url_problem(text: str) -> str | None:
    """Why `text` (placeholders allowed) is not a plain http(s) URL to a valid host, or None."""
    url = render_dummy(text)
    if len(url) > limits.MAX_TARGET_CHARS:
        return f"url is longer than {limits.MAX_TARGET_CHARS} characters (MAX_TARGET_CHARS)"
    if not _URL_RE.match(url):
        bad = next((c for c in url if not _URL_RE.match(c)), url[:1])
        return f"url {text!r} holds {bad!r}: whitespace, quotes and shell characters are not allowed (write %XX)"
    try:
        parts = urlsplit(url)
        parts.port   # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        return f"url {text!r} is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"url {text!r} must be http:// or https:// with a host"
    problem = host_problem(parts.hostname)
    return f"url {text!r}: {problem}" if problem else None


def split_target(text: str, default_port: int | None = None) -> tuple[str, int]:
    """`HOST:PORT` (placeholders already rendered) -> (host, port); ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, ""
    if not port and default_port is not None:
        port = str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {text!r} must be HOST:PORT with a port in 1..65535")
    return host.strip("[]"), int(port)


def target_problem(text: str, default_port: int | None = None) -> str | None:
    """Why a `HOST:PORT` target (placeholders allowed) is not usable, or None."""
    if len(text) > limits.MAX_TARGET_CHARS:
        return f"target is longer than {limits.MAX_TARGET_CHARS} characters (MAX_TARGET_CHARS)"
    try:
        host, _ = split_target(render_dummy(text), default_port)
    except ValueError:
        return f"target {text!r} must be HOST:PORT with a port in 1..65535"
    problem = host_problem(host)
    return f"target {text!r}: {problem}" if problem else None


class Pacing(StrictModel):
    """How many requests, for how long and how fast: closed loop (concurrency) or open loop (rate)."""

    requests: Annotated[PositiveInt, Field(le=limits.MAX_REQUESTS)] | None = Field(
        default=None, description=f"number of requests ({DEFAULT_REQUESTS} when neither requests nor duration)")
    duration: Duration | None = Field(default=None, description="stop starting requests after this long")
    concurrency: Annotated[PositiveInt, Field(le=limits.MAX_CONCURRENCY)] | None = Field(default=None, description="requests in flight (closed loop; default 1)")
    rate: Annotated[PositiveFloat, Field(le=limits.MAX_RATE)] | None = Field(default=None, description="requests started per second (open loop)")
    timeout: Duration = 2.0

    @model_validator(mode="after")
    def _pacing(self) -> "Pacing":
        """rate excludes concurrency; a duration must be > 0; a count when nothing bounds the flow."""
        if self.rate is not None and self.concurrency is not None:
            raise ValueError("give rate (requests per second) or concurrency (requests in flight), not both")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be > 0")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        if self.requests is None and self.duration is None:
            object.__setattr__(self, "requests", DEFAULT_REQUESTS)
        return self

    def pacing(self) -> dict[str, Any]:
        """Keyword arguments of the generators' pacing options."""
        return {"requests": self.requests, "duration": self.duration, "concurrency": self.concurrency,
                "rate": self.rate, "timeout": self.timeout}


class _Targeted(StrictModel):
    """A load that goes to one `HOST:PORT`."""

    DEFAULT_PORT: ClassVar[int | None] = None
    target: str = Field(description="HOST:PORT; HOST a name, an IP or a placeholder such as {clusterip:web}")

    @model_validator(mode="after")
    def _target_ok(self) -> "_Targeted":
        """The target (with placeholders replaced by sample values) is HOST:PORT."""
        problem = target_problem(self.target, self.DEFAULT_PORT)
        if problem:
            raise ValueError(problem)
        return self


class TcpLoad(_Targeted, Pacing):
    """TCP connects to HOST:PORT; optionally send a line and wait for a reply."""

    send: str | None = Field(default=None, description="text sent once connected (e.g. 'GET / HTTP/1.0\\r\\n\\r\\n')")


class UdpLoad(_Targeted, Pacing):
    """UDP request/response to an agnhost netexec UDP port (`kubemu`, `hostname`, `clientip`, `echo X`)."""

    message: str = Field(default="kubemu", min_length=1,
                         description="datagram sent; `kubemu` makes the built-in netexec name pod, node and client")
    reuse_socket: bool = False


class PingLoad(StrictModel):
    """ICMP echo requests with the real `ping` binary."""

    host: str = Field(description="name, IP or placeholder ({pod:P}, {node:N}, ...)")
    count: Annotated[PositiveInt, Field(le=limits.MAX_PING_COUNT)] = 10
    interval: Duration = Field(default=0.2, description="between echo requests (>= 0.002 s)")
    timeout: Duration = Field(default=1.0, description="how long to wait for each reply")

    @model_validator(mode="after")
    def _bounds(self) -> "PingLoad":
        """A valid host; the interval is at least 2 ms, the timeout positive."""
        problem = host_problem(render_dummy(self.host)) if len(self.host) <= limits.MAX_TARGET_CHARS \
            else f"host is longer than {limits.MAX_TARGET_CHARS} characters (MAX_TARGET_CHARS)"
        if problem:
            raise ValueError(problem)
        if self.interval < 0.002:
            raise ValueError("interval must be >= 2ms")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        return self


class Iperf3Load(_Targeted):
    """A real iperf3 client test against an iperf3 server (`iperf3 -s` in a pod)."""

    DEFAULT_PORT: ClassVar[int | None] = 5201
    duration: Duration = Field(default=2.0, description="seconds of the test (iperf3 -t)")
    parallel: Annotated[PositiveInt, Field(le=limits.MAX_IPERF3_PARALLEL)] = Field(default=1, description="parallel streams (iperf3 -P)")
    reverse: bool = Field(default=False, description="the server sends (iperf3 -R)")
    timeout: Duration = Field(default=5.0, description="connect timeout")

    @model_validator(mode="after")
    def _bounds(self) -> "Iperf3Load":
        """Test length of at least 1 s."""
        if self.duration < 1:
            raise ValueError("duration must be >= 1s")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        return self


def target_text(load: Any) -> str:
    """The field that names where a load goes (target, host or url)."""
    for name in ("target", "host", "url"):
        if hasattr(load, name):
            return getattr(load, name)
    raise TypeError(f"no target in {type(load).__name__}")
