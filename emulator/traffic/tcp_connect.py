"""TCP connects (optionally send a line and read the reply), run inside a client's namespace.

    ip netns exec NS python -m emulator.traffic.tcp_connect --host HOST --port PORT [--send TEXT] \
        --requests 100 [--duration S] [--concurrency C | --rate R] [--timeout S] --out FILE.jsonl

Each request opens a NEW TCP connection (a new source port: a fresh kube-proxy / load
balancer choice). Without `--send` the request is done once the handshake completes;
with it, TEXT is sent and the first chunk of the reply read (the peer closing without a
byte is a reset; an HTTP reply's X-Kubemu-* headers name the pod, node and client IP).
Outcomes: ok, refused (RST to the SYN: no listener, or a REJECT rule), timeout (no
answer: dropped), reset, dns_error, error. Records have http_load's shape (status null)
plus `reply` (the first 256 characters).
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from typing import Any

from emulator.traffic.pacing import add_pacing_args, drive, paced_main
from emulator.traffic.records import CachedResolver, EarlyClose, RecordWriter, classify, ms

MAX_REPLY = 65536


def kubemu_headers(reply: bytes) -> dict[str, Any]:
    """pod, node and client_ip_seen from the X-Kubemu-* headers of an HTTP reply (built-in netexec)."""
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    if not head.startswith("HTTP/"):
        return {}
    fields = {"x-kubemu-pod": "pod", "x-kubemu-node": "node", "x-kubemu-client-ip": "client_ip_seen"}
    out = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() in fields:
            out[fields[name.strip().lower()]] = value.strip()
    return out


class TcpConnect:
    """Opens the connections of one flow and writes one record per connection."""

    def __init__(self, host: str, port: int, send: str | None, writer: RecordWriter, timeout: float) -> None:
        self.host, self.port, self.out, self.timeout = host, port, writer, timeout
        self.payload = None if send is None else send.encode()
        self._resolver = CachedResolver(host, port, socket.SOCK_STREAM)

    async def one(self, seq: int) -> None:
        """Open connection `seq` (send, read) and record what happened."""
        rec: dict[str, Any] = {"seq": seq, "t_start": time.time(), "dns_ms": None, "connect_ms": None,
                               "ttfb_ms": None, "total_ms": None, "outcome": None, "status": None,
                               "pod": None, "node": None, "client_ip_seen": None, "client_port_seen": None,
                               "remote_ip": None, "remote_port": None, "local_ip": None, "local_port": None,
                               "reply": None, "errno": None, "error": None}
        t0 = time.perf_counter()
        state = {"phase": "connect"}
        loop = asyncio.get_running_loop()
        sock: socket.socket | None = None
        try:
            async with asyncio.timeout(self.timeout):
                family, addr = await self._resolver.resolve(rec, state)
                state["phase"] = "connect"
                rec["remote_ip"], rec["remote_port"] = addr[0], addr[1]
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                t2 = time.perf_counter()
                await loop.sock_connect(sock, addr)
                rec["connect_ms"] = ms(time.perf_counter() - t2)
                rec["local_ip"], rec["local_port"] = sock.getsockname()[:2]
                if self.payload is not None:
                    state["phase"] = "send"
                    await loop.sock_sendall(sock, self.payload)
                    state["phase"] = "response"
                    data = await loop.sock_recv(sock, MAX_REPLY)
                    if not data:
                        raise EarlyClose("connection closed before any reply byte")
                    rec["ttfb_ms"] = ms(time.perf_counter() - t0)
                    rec["reply"] = data.decode("utf-8", "replace")[:256]
                    rec.update(kubemu_headers(data))
            rec["outcome"] = "ok"
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            outcome, errno_name, text = classify(exc, state["phase"])
            rec.update(outcome=outcome, errno=errno_name, error=text)
        finally:
            if sock is not None:
                sock.close()
        rec["total_ms"] = ms(time.perf_counter() - t0)
        self.out.write(rec)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m emulator.traffic.tcp_connect", description=__doc__.split("\n")[0])
    p.add_argument("--host", required=True, help="name or IP to connect to")
    p.add_argument("--port", type=int, required=True, help="TCP port")
    p.add_argument("--send", default=None, help="text to send once connected; then one reply is read")
    add_pacing_args(p)
    return p


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one flow; returns the summary."""
    out = RecordWriter(args.out)
    conn = TcpConnect(args.host, args.port, args.send, out, args.timeout)
    try:
        await drive(conn.one, args.requests, args.duration, args.concurrency, args.rate)
    finally:
        out.close()
    return out.summary(kind="tcp", target=f"{args.host}:{args.port}", out=args.out)


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 when the flow ran (whatever its outcomes), 2 on bad usage."""
    return paced_main(build_parser(), run, "tcp", argv)


if __name__ == "__main__":
    sys.exit(main())
