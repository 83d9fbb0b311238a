"""Per-request records shared by the generators: outcomes, error classification, output.

Standard library only (generators start in a fresh interpreter per flow).
"""
from __future__ import annotations

import asyncio
import errno as errno_mod
import ipaddress
import json
import socket
import sys
import time
from typing import IO, Any

OUTCOMES = ("ok", "http_error", "refused", "timeout", "reset", "dns_error", "error")


class EarlyClose(ConnectionError):
    """The peer closed the connection before a complete response arrived."""


def classify(exc: BaseException, phase: str) -> tuple[str, str | None, str]:
    """(outcome, errno name or None, short text) for an exception raised during `phase`."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timeout", "ETIMEDOUT", f"timeout during {phase}"
    if isinstance(exc, socket.gaierror):
        return "dns_error", None, f"{phase}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "ECONNREFUSED", f"{phase}: connection refused"
    if isinstance(exc, EarlyClose):
        return "reset", None, f"{phase}: {exc}"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                        asyncio.IncompleteReadError)):
        name = errno_mod.errorcode.get(getattr(exc, "errno", None) or 0)
        return "reset", name, f"{phase}: {exc.__class__.__name__}"
    if isinstance(exc, OSError) and exc.errno:
        if exc.errno == errno_mod.ETIMEDOUT:
            return "timeout", "ETIMEDOUT", f"{phase}: {exc.strerror}"
        name = errno_mod.errorcode.get(exc.errno, str(exc.errno))
        return "error", name, f"{phase}: {name} {exc.strerror}"
    return "error", None, f"{phase}: {exc.__class__.__name__}: {exc}"[:200]


def ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds rounded to microseconds; None stays None."""
    return None if seconds is None else round(seconds * 1000.0, 3)


class RecordWriter:
    """Writes one JSON line per request and keeps counts for the final summary."""

    def __init__(self, path: str) -> None:
        self._file: IO[str] = sys.stdout if path == "-" else open(path, "w", encoding="utf-8")
        self.counts: dict[str, int] = {}
        self.ok_total_ms: list[float] = []
        self.first_start: float | None = None
        self.last_end: float | None = None

    def write(self, rec: dict[str, Any]) -> None:
        """Append one record."""
        self._file.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.counts[rec["outcome"]] = self.counts.get(rec["outcome"], 0) + 1
        start, total = rec["t_start"], rec.get("total_ms") or 0.0
        self.first_start = start if self.first_start is None else min(self.first_start, start)
        end = start + total / 1000.0
        self.last_end = end if self.last_end is None else max(self.last_end, end)
        if rec["outcome"] == "ok" and rec.get("total_ms") is not None:
            self.ok_total_ms.append(rec["total_ms"])

    def close(self) -> None:
        """Flush and close the output."""
        if self._file is sys.stdout:
            self._file.flush()
        else:
            self._file.close()

    def summary(self, **extra: Any) -> dict[str, Any]:
        """A one-line overview printed at the end (the records are the real data)."""
        n = sum(self.counts.values())
        ok = self.counts.get("ok", 0)
        wall = (self.last_end - self.first_start) if n and self.last_end and self.first_start else 0.0
        lat = sorted(self.ok_total_ms)

        def pct(q: float) -> float | None:
            return lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))] if lat else None
        return {**extra, "requests": n, "ok": ok, "outcomes": dict(sorted(self.counts.items())),
                "success_ratio": round(ok / n, 6) if n else None, "wall_s": round(wall, 3),
                "ok_per_s": round(ok / wall, 1) if wall > 0 else None,
                "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def print_summary(summary: dict[str, Any], out: str) -> None:
    """The one-line JSON summary: on stdout, or on stderr when the records go to stdout."""
    print(json.dumps(summary), file=sys.stderr if out == "-" else sys.stdout, flush=True)


class CachedResolver:
    """`host:port` to (family, sockaddr) for each request of a flow: a name is resolved
    (and timed into the record's `dns_ms`) every time, an IP literal once and untimed."""

    def __init__(self, host: str, port: int, socktype: int) -> None:
        self.host, self.port, self.socktype = host, port, socktype
        self._addr: tuple | None = None
        try:
            ipaddress.ip_address(host)
            self._is_ip = True
        except ValueError:
            self._is_ip = False

    async def resolve(self, rec: dict, state: dict) -> tuple:
        """(family, sockaddr); sets `state["phase"]` to "dns" while a resolution runs."""
        if self._addr is not None:
            return self._addr
        state["phase"] = "dns"
        t1 = time.perf_counter()
        infos = await asyncio.get_running_loop().getaddrinfo(self.host, self.port, type=self.socktype)
        family, _, _, _, addr = infos[0]
        if self._is_ip:
            self._addr = (family, addr)
        else:
            rec["dns_ms"] = ms(time.perf_counter() - t1)
        return family, addr

