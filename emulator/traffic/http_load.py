"""A real HTTP/1.1 load generator, run inside a client's network namespace.

    ip netns exec NS python -m emulator.traffic.http_load --url http://web.default.svc.cluster.local:8080/hostname \
        --requests 1000 [--duration S] [--concurrency C | --rate R] [--timeout S] [--keepalive] --out FILE.jsonl

By default every request opens a NEW TCP connection (like curl: a load balancer or
kube-proxy chooses per connection); `--keepalive` reuses idle connections (a reused
connection that the server had closed is retried once on a new one, as real clients do).

The client is a minimal HTTP/1.1 client on raw asyncio streams rather than aiohttp:
each phase is timed at the exact await that completes it (resolution, connect(),
first response byte), errors keep their errno (ECONNREFUSED vs a timeout vs RST), the
connected address comes from the socket itself, and only the standard library is
imported so the process starts in ~50 ms in every namespace. Names resolve with the
system resolver (getaddrinfo in a thread), so `ip netns exec` makes the namespace's
/etc/netns/NS/resolv.conf apply.

One JSON line per request (times in ms, from `time.perf_counter`):
  seq, t_start (epoch s when the request began, before resolution),
  dns_ms (resolution; null for an IP literal or a reused connection),
  connect_ms (TCP handshake only: connect() to established; null when reused),
  ttfb_ms (t_start to the first response byte, like curl's time_starttransfer),
  total_ms (t_start to the last body byte; for failures, time until the failure),
  outcome (ok | http_error | refused | timeout | reset | dns_error | error), status,
  pod / node / client_ip_seen / client_port_seen (X-Kubemu-* headers; for a server
  without them, the body of /hostname and /clientip), remote_ip, remote_port,
  local_ip, local_port, reused, retried, body_bytes, errno (e.g. "ECONNREFUSED"), error.
The process exits 0 even when requests fail (failures are data) and prints one JSON
summary line on stdout (on stderr when records go to stdout).
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import ssl
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from emulator.traffic.pacing import add_pacing_args, check_pacing_args, drive
from emulator.traffic.records import EarlyClose, RecordWriter, classify, ms

USER_AGENT = "kubemu-http-load/1"
MAX_HEADER_BYTES = 65536


@dataclass(frozen=True)
class Target:
    """Where requests go: host (name or IP), port, request target and Host header."""

    url: str
    host: str
    port: int
    path: str
    host_header: str
    is_ip: bool
    tls: bool = False


def parse_target(url: str) -> Target:
    """Split an `http(s)://host[:port]/path?query` URL; raises ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"only http:// and https:// URLs are supported, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        ipaddress.ip_address(parts.hostname)
        is_ip = True
    except ValueError:
        is_ip = False
    host_header = parts.netloc.rpartition("@")[2]
    return Target(url, parts.hostname, port, path, host_header, is_ip, parts.scheme == "https")


def parse_headers(lines: list[str] | None) -> dict[str, str]:
    """`Name: value` strings as a dict; ValueError for a line without a name."""
    out: dict[str, str] = {}
    for line in lines or []:
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or any(c in line for c in "\r\n"):
            raise ValueError(f"bad header {line!r}: write 'Name: value'")
        out[name.strip()] = value.strip()
    return out


def tls_context(cafile: str | None) -> ssl.SSLContext:
    """Verify against `cafile`, or (no CA given) accept any certificate, like `curl -k`."""
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Conn:
    """One open TCP connection and its addresses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        sock = writer.get_extra_info("socket")
        self.peer = sock.getpeername()
        self.local = sock.getsockname()

    def close(self) -> None:
        """Close without waiting."""
        self.writer.close()


class HttpLoad:
    """Sends the requests of one flow and writes one record per request."""

    def __init__(self, target: Target, writer: RecordWriter, timeout: float, keepalive: bool,
                 resolve_once: bool = False, headers: dict[str, str] | None = None,
                 cafile: str | None = None) -> None:
        self.target, self.out, self.timeout, self.keepalive = target, writer, timeout, keepalive
        self.resolve_once = resolve_once
        self._addr: tuple | None = None
        self._idle: list[_Conn] = []
        extra = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}
        host = next((v for k, v in (headers or {}).items() if k.lower() == "host"), target.host_header)
        self._sni = host.rsplit(":", 1)[0] if host != target.host_header or not target.is_ip else None
        self._tls = tls_context(cafile) if target.tls else None
        self._request = (f"GET {target.path} HTTP/1.1\r\nHost: {host}\r\n"
                         + "".join(f"{k}: {v}\r\n" for k, v in extra.items()) +
                         f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\n"
                         f"Connection: {'keep-alive' if keepalive else 'close'}\r\n\r\n").encode("latin-1")

    async def one(self, seq: int) -> None:
        """Send request `seq` and record what happened."""
        rec: dict[str, Any] = {"seq": seq, "t_start": time.time(), "dns_ms": None, "connect_ms": None,
                               "ttfb_ms": None, "total_ms": None, "outcome": None, "status": None,
                               "pod": None, "node": None, "client_ip_seen": None, "client_port_seen": None,
                               "remote_ip": None, "remote_port": None, "local_ip": None, "local_port": None,
                               "reused": False, "retried": False, "body_bytes": None,
                               "errno": None, "error": None}
        t0 = time.perf_counter()
        state = {"phase": "connect"}
        conn: _Conn | None = None
        try:
            async with asyncio.timeout(self.timeout):
                conn = self._idle.pop() if self._idle else None
                try:
                    conn = await self._attempt(rec, t0, conn, state)
                except (ConnectionError, asyncio.IncompleteReadError):
                    if not rec["reused"] or state.get("got_byte"):
                        raise
                    rec.update(reused=False, retried=True)   # stale keep-alive connection: retry once
                    conn = await self._attempt(rec, t0, None, state)
            status = rec["status"]
            rec["outcome"] = "ok" if 100 <= status < 400 else "http_error"
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            outcome, errno_name, text = classify(exc, state["phase"])
            if isinstance(exc, asyncio.IncompleteReadError):
                outcome, text = "reset", f"{state['phase']}: connection closed mid-response"
            rec.update(outcome=outcome, errno=errno_name, error=text)
            if conn is not None:
                conn.close()
            conn = None
        rec["total_ms"] = ms(time.perf_counter() - t0)
        if conn is not None:
            if self.keepalive:
                self._idle.append(conn)
            else:
                conn.close()
        self.out.write(rec)

    async def _connect(self, rec: dict[str, Any], state: dict) -> _Conn:
        """Resolve (unless an IP or cached) and open a new TCP connection, timing both."""
        loop = asyncio.get_running_loop()
        t = self.target
        if self._addr is not None:
            family, addr = self._addr
        else:
            state["phase"] = "dns"
            t1 = time.perf_counter()
            infos = await loop.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
            if not t.is_ip:
                rec["dns_ms"] = ms(time.perf_counter() - t1)
            family, _, _, _, addr = infos[0]
            if t.is_ip or self.resolve_once:
                self._addr = (family, addr)
        state["phase"] = "connect"
        rec["remote_ip"], rec["remote_port"] = addr[0], addr[1]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t2 = time.perf_counter()
            await loop.sock_connect(sock, addr)
            rec["connect_ms"] = ms(time.perf_counter() - t2)
            reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_HEADER_BYTES, ssl=self._tls,
                                                           server_hostname=self._sni if self._tls else None)
        except BaseException:
            try:   # a connect that timed out or failed still names its source port (to trace it)
                rec["local_ip"], rec["local_port"] = sock.getsockname()[:2]
            except OSError:
                pass
            sock.close()
            raise
        return _Conn(reader, writer)

    async def _attempt(self, rec: dict[str, Any], t0: float, conn: _Conn | None, state: dict) -> _Conn | None:
        """One request/response on `conn` (or a new connection); returns the conn if reusable."""
        state["got_byte"] = False
        if conn is None:
            conn = await self._connect(rec, state)
        else:
            rec["reused"] = True
        try:
            rec["remote_ip"], rec["remote_port"] = conn.peer[0], conn.peer[1]
            rec["local_ip"], rec["local_port"] = conn.local[0], conn.local[1]
            state["phase"] = "send"
            conn.writer.write(self._request)
            await conn.writer.drain()
            state["phase"] = "response"
            first = await conn.reader.read(1)
            if not first:
                raise EarlyClose("connection closed before any response byte")
            state["got_byte"] = True
            rec["ttfb_ms"] = ms(time.perf_counter() - t0)
            head = first + await conn.reader.readuntil(b"\r\n\r\n")
            reusable = await self._read_response(conn, head, rec)
        except BaseException:
            conn.close()
            raise
        if reusable and self.keepalive:
            return conn
        conn.close()
        return None

    async def _read_response(self, conn: _Conn, head: bytes, rec: dict[str, Any]) -> bool:
        """Parse status and headers, read the body, fill the record; True if the conn is reusable."""
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/"):
            raise ValueError(f"not an HTTP response: {lines[0][:60]!r}")
        status = int(rest.split(" ", 1)[0])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        reader = conn.reader
        if status in (204, 304) or 100 <= status < 200:
            body, delimited = b"", True
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body, delimited = b"".join(parts), True
        elif "content-length" in headers:
            body, delimited = await reader.readexactly(int(headers["content-length"])), True
        else:
            body, delimited = await reader.read(), False
        rec["status"], rec["body_bytes"] = status, len(body)
        rec["pod"] = headers.get("x-kubemu-pod")
        rec["node"] = headers.get("x-kubemu-node")
        rec["client_ip_seen"] = headers.get("x-kubemu-client-ip")
        port = headers.get("x-kubemu-client-port")
        rec["client_port_seen"] = int(port) if port and port.isdigit() else None
        path = self.target.path.split("?", 1)[0].rstrip("/").lower()
        if status == 200 and rec["pod"] is None and path.endswith("/hostname"):
            rec["pod"] = body.decode("utf-8", "replace").strip()[:253] or None
        if status == 200 and rec["client_ip_seen"] is None and path.endswith("/clientip"):
            host, _, cport = body.decode("utf-8", "replace").strip().rpartition(":")
            rec["client_ip_seen"] = host.strip("[]") or None
            rec["client_port_seen"] = int(cport) if cport.isdigit() else None
        return (delimited and version == "HTTP/1.1"
                and headers.get("connection", "").lower() != "close")

    def close(self) -> None:
        """Close idle keep-alive connections."""
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m emulator.traffic.http_load", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, action="append",
                   help="http://HOST[:PORT]/PATH; repeat for interleaved arms (with --schedule)")
    p.add_argument("--schedule", default=None,
                   help="with several --url: one digit per request, the index of its URL (record field `arm`)")
    p.add_argument("--keepalive", action="store_true", help="reuse connections instead of one per request")
    p.add_argument("--resolve-once", action="store_true", help="resolve the host once, not per connection")
    p.add_argument("--header", action="append", default=[], help="'Name: value' (repeat; Host replaces the URL's)")
    p.add_argument("--cacert", help="https: verify the server against this CA file (default: accept any)")
    add_pacing_args(p)
    return p


class _ArmWriter:
    """Tags each record with the index of the URL (arm) it went to."""

    def __init__(self, out: RecordWriter, arm: int) -> None:
        self.out, self.arm = out, arm

    def write(self, rec: dict[str, Any]) -> None:
        self.out.write({**rec, "arm": self.arm})


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one flow (several URLs: request `seq` goes to URL `schedule[seq]`); returns the summary."""
    out = RecordWriter(args.out)
    headers = parse_headers(args.header)
    if len(args.url) == 1:
        loads = [HttpLoad(parse_target(args.url[0]), out, args.timeout, args.keepalive, args.resolve_once,
                          headers, args.cacert)]
        one = loads[0].one
    else:
        loads = [HttpLoad(parse_target(u), _ArmWriter(out, i), args.timeout, args.keepalive,  # type: ignore[arg-type]
                          args.resolve_once, headers, args.cacert) for i, u in enumerate(args.url)]

        async def one(seq: int) -> None:
            await loads[int(args.schedule[seq])].one(seq)
    try:
        await drive(one, args.requests, args.duration, args.concurrency, args.rate)
    finally:
        for load in loads:
            load.close()
        out.close()
    return out.summary(kind="http", url=" ".join(args.url), out=args.out)


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 when the flow ran (whatever its outcomes), 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_pacing_args(parser, args)
    try:
        for url in args.url:
            parse_target(url)
        parse_headers(args.header)
    except ValueError as exc:
        parser.error(str(exc))
    if len(args.url) > 1:
        sched = args.schedule or ""
        if not sched.isdigit() or any(int(c) >= len(args.url) for c in sched):
            parser.error("several --url need --schedule: digits 0..N-1, one per request")
        if args.requests is None or args.requests > len(sched):
            parser.error("--schedule must hold --requests entries")
    elif args.schedule:
        parser.error("--schedule needs several --url")
    try:
        summary = asyncio.run(run(args))
    except OSError as exc:
        print(json.dumps({"kind": "http", "url": args.url, "fatal": str(exc)}), file=sys.stderr)
        return 1
    print(json.dumps(summary), file=sys.stderr if args.out == "-" else sys.stdout, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
